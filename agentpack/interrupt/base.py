"""The interface every interrupt backend implements, and the vocabulary they share.

A backend stores three things per session (its key, :func:`session_key`):

- the **lease** of the run that holds the session: a run id with a short expiry that the
  running instance keeps renewing.  A crashed instance stops renewing, so its session
  frees itself within seconds instead of staying "RUNNING" for an hour;
- a **stop flag** naming the run it stops: durable, so a stop sent before the runner was
  listening, or while its connection blipped, is still found; scoped to one run id, so a
  stop meant for a finished run never kills the next one;
- the **final state** of the last run (STOPPED, FINISHED, ERROR) and that run's id, kept for a
  while; the id lets a renewal that was already on its way when the run ended see that it
  must not take the session back.

and it delivers stop notices to the process that runs the session (the fast path; the flag
is the safety net the runner also checks when it starts and every time it renews).
"""

from __future__ import annotations

import enum
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import unquote

from agentpack.headers import encode_id
from agentpack.protocol.status import RunState as RunState  # re-exported: agentpack.interrupt names it

if TYPE_CHECKING:
    from agentpack.interrupt.records import Records

logger = logging.getLogger("agentpack.interrupt")


class SessionBusy(RuntimeError):
    """Another run of the same session is in progress (here or elsewhere); answered with 409."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.user_id, _, self.session_id = (unquote(part) for part in key.partition(":"))
        super().__init__(
            f"session {self.session_id!r} of user {self.user_id!r} is already running; stop it or wait for it to finish"
        )


class BackendUnavailable(RuntimeError):
    """The backend cannot be reached; runs are refused with 503 rather than left hanging."""


class Renewal(enum.Enum):
    """What a lease renewal found."""

    HELD = "held"  #: the lease was ours and is extended
    RETAKEN = "retaken"  #: the lease had vanished (a restarted store) and is ours again
    LOST = "lost"  #: another run holds the session now
    ENDED = "ended"  #: this run was already released; it must not take the session back


def _part(value: str) -> str:
    # Percent-encoding every character but the unreserved ones makes the join injective:
    # ":" inside an id becomes "%3A", so ("a:b", "c") and ("a", "b:c") never meet; braces
    # are encoded too, so an id cannot move a key out of its Redis Cluster hash tag.
    return encode_id(value)


def session_key(user_id: str | None, session_id: str | None) -> str:
    """The key of a session: its user and session ids, each percent-encoded (UTF-8), joined by ``:``.

    ``user_id`` defaults to ``session_id``, as it does for requests.  Distinct pairs never
    share a key, whatever characters the ids contain.
    """
    return f"{_part(user_id or session_id or '')}:{_part(session_id or '')}"


#: Called with the run id named by a stop notice.
StopCallback = Callable[[str], None]


class BaseInterruptBackend(ABC):
    """Storage and signalling for session runs.  All methods are coroutines unless noted.

    Implementations must make :meth:`acquire`, :meth:`renew`, :meth:`release` and
    :meth:`request_stop` atomic per session, and must not scan keys on these paths.
    """

    #: Name used in readiness and error messages, e.g. ``"redis at 127.0.0.1:6379"``.
    name: str = "interrupt backend"
    #: Whether other processes (instances, machines) see the same sessions and stops.
    shared: bool = True
    #: Whether every call returns or raises within a bounded time by itself (no I/O, or I/O
    #: with timeouts).  Otherwise the guard runs releases in a task it can give up on.
    bounded: bool = False

    def add_reconnect_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever the connection to a shared store comes back after a loss.

        The guard uses it to re-take every local run's lease and re-read its stop flag at
        once, instead of at the next renewal: a restarted store has lost both.
        """
        # setdefault: subclasses written without calling super().__init__() keep working
        self.__dict__.setdefault("_reconnect_listeners", []).append(callback)

    def reconnected(self) -> None:
        """Tell the listeners that the store is back (for backends to call)."""
        for callback in list(self.__dict__.get("_reconnect_listeners", ())):
            try:
                callback()
            except Exception:  # one listener's bug must not stop the others
                logger.exception("reconnect listener failed")

    def records(self, namespace: str) -> Records:
        """Records every process sharing this backend sees (one store per namespace); this
        process's memory unless a backend shares more (see :mod:`agentpack.interrupt.records`)."""
        from agentpack.interrupt.records import MemoryRecords

        stores: dict[str, Records] = self.__dict__.setdefault("_records", {})
        if namespace not in stores:
            stores[namespace] = MemoryRecords()
        return stores[namespace]

    def clone(self) -> BaseInterruptBackend:
        """A backend with the same settings and no connections, for another event loop
        (a Celery worker runs each job in a loop of its own).  Stateless ones return self."""
        return self

    async def start(self) -> None:
        """Connect.  Must not raise when the service is down: report it through :meth:`problem`."""

    async def aclose(self) -> None:
        """Release connections and background tasks."""

    async def problem(self) -> str | None:
        """``None`` when the backend answers, else a reason naming it (used by ``/readiness``)."""
        return None

    @abstractmethod
    async def acquire(self, key: str, run_id: str, lease_seconds: float) -> bool:
        """Take the session for ``run_id`` unless a live lease exists; ``False`` means busy."""

    @abstractmethod
    async def renew(self, key: str, run_id: str, lease_seconds: float) -> Renewal:
        """Extend ``run_id``'s lease, re-taking it if it vanished — unless ``run_id`` was released."""

    @abstractmethod
    async def release(self, key: str, run_id: str, state: RunState, state_seconds: float) -> None:
        """End ``run_id``'s lease, clear its stop flag and record ``state`` (and ``run_id``) for ``state_seconds``."""

    @abstractmethod
    async def request_stop(self, key: str, ttl_seconds: float, lease_seconds: float = 10.0) -> bool:
        """Flag and notify the run holding ``key``; ``False`` (and nothing written) if none holds it.

        ``lease_seconds`` is the lease time runs use: a backend whose store has just lost
        its data may wait up to a renewal period for a live run to take its lease back.
        """

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
    async def get_state(self, key: str) -> RunState | None:
        """``RUNNING`` while a lease is held, else the last final state, or ``None``."""
