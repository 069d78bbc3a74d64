"""``SessionGuard``: holds a session for one run, keeps its lease alive, and delivers stops to it.

Every path that runs the query handler goes through :meth:`SessionGuard.begin` and
:meth:`SessionGuard.end`, so a session runs at most once across every process that shares
the backend, and ``stop_chat`` finds the run wherever it is.

A stop reaches a run three ways, fastest first: directly when the run is in this process;
by the backend's notice (pub/sub) when it is elsewhere; and by the durable stop flag, which
the run checks right after it starts listening and again at every lease renewal, so a stop
sent before it listened or during a connection blip is never lost.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid
from dataclasses import dataclass, field
from typing import Optional, Protocol

from agentpack.interrupt.base import (
    BackendUnavailable,
    BaseInterruptBackend,
    RunState,
    SessionBusy,
)

logger = logging.getLogger("agentpack.interrupt")

STOP_REASON = "stopped by stop_chat"


class Stoppable(Protocol):
    def stop(self, reason: str = ...) -> None: ...


@dataclass(eq=False)
class ActiveRun:
    """A run holding its session's lease in this process."""

    key: str
    run_id: str
    run: Stoppable
    renewer: Optional[asyncio.Task] = None
    ended: bool = False
    lease_lost: bool = field(default=False)


_BASE_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, OSError, asyncio.TimeoutError, BackendUnavailable)


def _backend_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the backend is unreachable" rather than a bug.

    redis-py's own connection errors count too, but only once something else imported
    redis: the guard must not pull redis into an app that does not use it.
    """
    redis_exceptions = sys.modules.get("redis.exceptions")
    if redis_exceptions is None:
        return _BASE_ERRORS
    return (*_BASE_ERRORS, redis_exceptions.ConnectionError, redis_exceptions.TimeoutError)


class SessionGuard:
    def __init__(
        self,
        backend: BaseInterruptBackend,
        lease_seconds: float = 10.0,
        state_seconds: float = 600.0,
    ) -> None:
        if lease_seconds <= 0 or state_seconds <= 0:
            raise ValueError("lease and state lifetimes must be positive numbers of seconds")
        self.backend = backend
        self.lease_seconds = lease_seconds
        self.state_seconds = state_seconds
        self.runs: dict[str, ActiveRun] = {}

    # -- a run's life --------------------------------------------------------------------
    async def begin(self, key: str, run: Stoppable) -> ActiveRun:
        """Hold ``key`` for ``run``; raises :class:`SessionBusy` or :class:`BackendUnavailable`."""
        if key in self.runs:
            raise SessionBusy(key)
        run_id = uuid.uuid4().hex
        try:
            acquired = await self.backend.acquire(key, run_id, self.lease_seconds)
        except _backend_errors() as exc:
            raise BackendUnavailable(f"{self.backend.name} is unreachable: {exc}") from exc
        if not acquired:
            raise SessionBusy(key)
        active = ActiveRun(key, run_id, run)
        self.runs[key] = active
        try:
            await self.backend.watch(key, lambda named: self._notice(key, named))
            if await self.backend.stop_requested(key, run_id):
                run.stop(STOP_REASON)
        except _backend_errors() as exc:  # the renewal loop keeps checking the flag
            logger.warning("could not listen for stops of %s yet: %s", key, exc)
        active.renewer = asyncio.create_task(self._keep_alive(active), name=f"agentpack-lease-{key}")
        return active

    async def end(self, active: ActiveRun, state: RunState) -> None:
        """Release the session and record how the run ended; safe to call more than once."""
        if active.ended:
            return
        active.ended = True
        if self.runs.get(active.key) is active:
            del self.runs[active.key]
        if active.renewer is not None:
            active.renewer.cancel()
            await asyncio.gather(active.renewer, return_exceptions=True)
        try:
            await self.backend.unwatch(active.key)
            await self.backend.release(active.key, active.run_id, state, self.state_seconds)
        except _backend_errors() as exc:  # the lease expires by itself within lease_seconds
            logger.warning("could not release %s (%s); its lease will expire in %.0fs", active.key, exc, self.lease_seconds)

    def _notice(self, key: str, run_id: str) -> None:
        active = self.runs.get(key)
        if active is not None and active.run_id == run_id:
            active.run.stop(STOP_REASON)

    async def _keep_alive(self, active: ActiveRun) -> None:
        """Renew the lease at a third of its life, and check the stop flag each time."""
        interval = self.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                held = await self.backend.renew(active.key, active.run_id, self.lease_seconds)
                if not held and not active.lease_lost:
                    active.lease_lost = True
                    logger.error("session %s was taken by another run while this one was cut off", active.key)
                if await self.backend.stop_requested(active.key, active.run_id):
                    active.run.stop(STOP_REASON)
            except _backend_errors() as exc:  # keep running; the backend may come back
                logger.warning("could not renew the lease of %s: %s", active.key, exc)

    # -- stopping and asking -------------------------------------------------------------
    async def stop(self, key: str) -> bool:
        """Stop the run holding ``key``, wherever it is; ``True`` if one was running."""
        active = self.runs.get(key)
        if active is not None:
            active.run.stop(STOP_REASON)
            return True
        try:
            return await self.backend.request_stop(key, self.state_seconds)
        except _backend_errors() as exc:
            raise BackendUnavailable(f"{self.backend.name} is unreachable: {exc}") from exc

    async def state(self, key: str) -> Optional[RunState]:
        if key in self.runs:
            return RunState.RUNNING
        try:
            return await self.backend.get_state(key)
        except _backend_errors() as exc:
            raise BackendUnavailable(f"{self.backend.name} is unreachable: {exc}") from exc

    def __len__(self) -> int:
        return len(self.runs)
