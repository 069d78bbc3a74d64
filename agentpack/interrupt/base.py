"""The interface every interrupt backend implements, and the vocabulary they share.

A backend stores three things per session (``user_id:session_id``):

- the **lease** of the run that holds the session: a run id with a short expiry that the
  running instance keeps renewing.  A crashed instance stops renewing, so its session
  frees itself within seconds instead of staying "RUNNING" for an hour;
- a **stop flag** naming the run it stops: durable, so a stop sent before the runner was
  listening, or while its connection blipped, is still found; scoped to one run id, so a
  stop meant for a finished run never kills the next one;
- the **final state** of the last run (STOPPED, FINISHED, ERROR), kept for a while.

and it delivers stop notices to the process that runs the session (the fast path; the flag
is the safety net the runner also checks when it starts and every time it renews).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from typing import Callable, Optional


class RunState(str, enum.Enum):
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    FINISHED = "FINISHED"
    ERROR = "ERROR"


class SessionBusy(RuntimeError):
    """Another run of the same session is in progress (here or elsewhere); answered with 409."""

    def __init__(self, key: str) -> None:
        super().__init__(f"session {key!r} is already running; stop it or wait for it to finish")
        self.key = key


class BackendUnavailable(RuntimeError):
    """The backend cannot be reached; runs are refused with 503 rather than left hanging."""


def session_key(user_id: Optional[str], session_id: Optional[str]) -> str:
    """The key of a session; ``user_id`` defaults to ``session_id`` as it does for requests."""
    return f"{user_id or session_id}:{session_id}"


#: Called with the run id named by a stop notice.
StopCallback = Callable[[str], None]


class BaseInterruptBackend(ABC):
    """Storage and signalling for session runs.  All methods are coroutines unless noted.

    Implementations must make :meth:`acquire`, :meth:`renew`, :meth:`release` and
    :meth:`request_stop` atomic per session, and must not scan keys on these paths.
    """

    #: Name used in readiness and error messages, e.g. ``"redis at 127.0.0.1:6379"``.
    name: str = "interrupt backend"

    def clone(self) -> "BaseInterruptBackend":
        """A backend with the same settings and no connections, for another event loop
        (a Celery worker runs each job in a loop of its own).  Stateless ones return self."""
        return self

    async def start(self) -> None:
        """Connect.  Must not raise when the service is down: report it through :meth:`problem`."""

    async def aclose(self) -> None:
        """Release connections and background tasks."""

    async def problem(self) -> Optional[str]:
        """``None`` when the backend answers, else a reason naming it (used by ``/readiness``)."""
        return None

    @abstractmethod
    async def acquire(self, key: str, run_id: str, lease_seconds: float) -> bool:
        """Take the session for ``run_id`` unless a live lease exists; ``False`` means busy."""

    @abstractmethod
    async def renew(self, key: str, run_id: str, lease_seconds: float) -> bool:
        """Extend ``run_id``'s lease (re-taking it if it vanished); ``False`` if another run holds it."""

    @abstractmethod
    async def release(self, key: str, run_id: str, state: RunState, state_seconds: float) -> None:
        """End ``run_id``'s lease, clear its stop flag and record ``state`` for ``state_seconds``."""

    @abstractmethod
    async def request_stop(self, key: str, ttl_seconds: float) -> bool:
        """Flag and notify the run holding ``key``; ``False`` (and nothing written) if none holds it."""

    @abstractmethod
    async def stop_requested(self, key: str, run_id: str) -> bool:
        """Whether a stop flag for ``run_id`` is set."""

    @abstractmethod
    async def watch(self, key: str, callback: StopCallback) -> None:
        """Deliver stop notices for ``key`` to ``callback`` until :meth:`unwatch`."""

    @abstractmethod
    async def unwatch(self, key: str) -> None:
        """Stop delivering notices for ``key``."""

    @abstractmethod
    async def get_state(self, key: str) -> Optional[RunState]:
        """``RUNNING`` while a lease is held, else the last final state, or ``None``."""
