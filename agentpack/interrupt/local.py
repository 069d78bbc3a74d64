"""Session runs of one process: at most one run per ``user_id:session_id``, stoppable by key."""

from __future__ import annotations

import enum
import time
from typing import Optional, Protocol


class RunState(str, enum.Enum):
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    FINISHED = "FINISHED"
    ERROR = "ERROR"


class SessionBusy(RuntimeError):
    """Another run of the same session is in progress; the request is refused with 409."""

    def __init__(self, key: str) -> None:
        super().__init__(f"session {key!r} is already running; stop it or wait for it to finish")
        self.key = key


class Stoppable(Protocol):
    def stop(self, reason: str = ...) -> None: ...


def session_key(user_id: Optional[str], session_id: Optional[str]) -> str:
    return f"{user_id}:{session_id}"


class LocalRuns:
    """Runs of this process, keyed by session, with their last state kept for a while."""

    def __init__(self, state_ttl: float = 600.0) -> None:
        self.state_ttl = state_ttl
        self._running: dict[str, Stoppable] = {}
        self._states: dict[str, tuple[RunState, float]] = {}

    def reserve(self, key: str, run: Stoppable) -> None:
        """Mark ``key`` as run by ``run``; a second concurrent run of the session is refused."""
        if key in self._running:
            raise SessionBusy(key)
        self._running[key] = run
        self._states[key] = (RunState.RUNNING, float("inf"))

    def release(self, key: str, run: Stoppable, state: RunState) -> None:
        """End ``run``'s hold on ``key`` and record how it ended; a no-op when already released."""
        if self._running.get(key) is run:
            del self._running[key]
            self._states[key] = (state, time.monotonic() + self.state_ttl)

    def stop(self, key: str, reason: str) -> bool:
        run = self._running.get(key)
        if run is None:
            return False
        run.stop(reason)
        return True

    def state(self, key: str) -> Optional[RunState]:
        entry = self._states.get(key)
        if entry is None:
            return None
        if entry[1] < time.monotonic():
            del self._states[key]
            return None
        return entry[0]

    def __len__(self) -> int:
        return len(self._running)
