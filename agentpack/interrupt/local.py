"""``LocalInterruptBackend``: sessions and stops within one process, kept in memory.

The default.  It gives one process everything the Redis backend gives a fleet — one run
per session, leases, scoped stop flags, final states with expiry — so code and tests do
not change when a deployment moves to Redis.
"""

from __future__ import annotations

import time

from agentpack.interrupt.base import BaseInterruptBackend, Renewal, RunState, StopCallback

#: Expired entries are swept after this many writes, so idle sessions never accumulate.
_SWEEP_EVERY = 1024


class LocalInterruptBackend(BaseInterruptBackend):
    name = "local interrupt backend (this process only)"
    shared = False
    bounded = True  # memory only

    def __init__(self) -> None:
        self._leases: dict[str, tuple[str, float]] = {}
        self._flags: dict[str, tuple[str, float]] = {}
        self._states: dict[str, tuple[RunState, float, str]] = {}  # state, expiry, run id
        self._watchers: dict[str, StopCallback] = {}
        self._writes = 0

    @staticmethod
    def _live(entry: tuple[str, float] | None) -> str | None:
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]

    def _wrote(self) -> None:
        self._writes += 1
        if self._writes % _SWEEP_EVERY == 0:
            now = time.monotonic()
            for table in (self._leases, self._flags, self._states):
                for key in [k for k, entry in table.items() if entry[1] <= now]:
                    del table[key]

    async def acquire(self, key: str, run_id: str, lease_seconds: float) -> bool:
        if self._live(self._leases.get(key)) is not None:
            return False
        self._leases[key] = (run_id, time.monotonic() + lease_seconds)
        self._wrote()
        return True

    async def renew(self, key: str, run_id: str, lease_seconds: float) -> Renewal:
        holder = self._live(self._leases.get(key))
        if holder is not None and holder != run_id:
            return Renewal.LOST
        if holder is None and self._ended_run(key) == run_id:
            return Renewal.ENDED
        self._leases[key] = (run_id, time.monotonic() + lease_seconds)
        return Renewal.HELD if holder == run_id else Renewal.RETAKEN

    def _ended_run(self, key: str) -> str | None:
        entry = self._states.get(key)
        return entry[2] if entry is not None and entry[1] > time.monotonic() else None

    async def release(self, key: str, run_id: str, state: RunState, state_seconds: float) -> None:
        holder = self._live(self._leases.get(key))
        if holder == run_id:
            del self._leases[key]
        if self._live(self._flags.get(key)) == run_id:
            del self._flags[key]
        if holder in (None, run_id):
            self._states[key] = (state, time.monotonic() + state_seconds, run_id)
            self._wrote()

    async def request_stop(self, key: str, ttl_seconds: float, lease_seconds: float = 10.0) -> bool:
        holder = self._live(self._leases.get(key))
        if holder is None:
            return False
        self._flags[key] = (holder, time.monotonic() + ttl_seconds)
        self._wrote()
        callback = self._watchers.get(key)
        if callback is not None:
            callback(holder)
        return True

    async def stop_requested(self, key: str, run_id: str) -> bool:
        return self._live(self._flags.get(key)) == run_id

    async def watch(self, key: str, callback: StopCallback) -> None:
        self._watchers[key] = callback

    async def unwatch(self, key: str) -> None:
        self._watchers.pop(key, None)

    async def get_state(self, key: str) -> RunState | None:
        if self._live(self._leases.get(key)) is not None:
            return RunState.RUNNING
        entry = self._states.get(key)
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]
