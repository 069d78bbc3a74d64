"""``SessionGuard``: holds a session for one run, keeps its lease alive, and delivers stops to it.

Every path that runs the query handler goes through :meth:`SessionGuard.begin` and
:meth:`SessionGuard.end`, so a session runs at most once across every process that shares
the backend, and ``stop_chat`` finds the run wherever it is.

A stop reaches a run three ways, fastest first: directly when the run is in this process;
by the backend's notice (pub/sub) when it is elsewhere; and by the durable stop flag, which
the run checks right after it starts listening, at every lease renewal, and at once when the
backend's connection comes back after an outage, so a stop is never lost.

Ending a run never waits without a bound: the lease renewer stops on a flag it checks after
every await (a cancellation alone is not enough — before Python 3.12 one can be swallowed
inside a Redis call), the wait for it is bounded, and the release happens whatever the
renewer does; a renewal still in flight cannot take the released session back (the backend
refuses to renew a run it has recorded as ended).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Protocol

from agentpack._aio import wait_bounded
from agentpack.interrupt.base import (
    BackendUnavailable,
    BaseInterruptBackend,
    Renewal,
    RunState,
    SessionBusy,
)

logger = logging.getLogger("agentpack.interrupt")

STOP_REASON = "stopped by a stop request"
SHUTDOWN_REASON = "the server is shutting down"


class Stoppable(Protocol):
    def stop(self, reason: str = ...) -> None: ...


class ActiveRun:
    """A run holding its session's lease in this process (a plain class: see ``OpenContent``)."""

    __slots__ = ("ended", "ending", "key", "lease_lost", "renewer", "run", "run_id")

    def __init__(self, key: str, run_id: str, run: Stoppable) -> None:
        self.key = key
        self.run_id = run_id
        self.run = run
        self.renewer: asyncio.Task[None] | None = None
        #: set when end() begins: the renewer must not renew again
        self.ending = False
        self.lease_lost = False
        #: set when end() has finished releasing
        self.ended = asyncio.Event()


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
    """One run per session, leases kept alive, stops delivered, every release bounded.

    ``release_timeout`` bounds each step of ending a run (waiting for the renewer, the
    backend's release); a backend that does not answer in time leaves a lease that
    expires by itself within ``lease_seconds``.
    """

    def __init__(
        self,
        backend: BaseInterruptBackend,
        lease_seconds: float = 10.0,
        state_seconds: float = 600.0,
        release_timeout: float = 2.0,
    ) -> None:
        if lease_seconds <= 0 or state_seconds <= 0 or release_timeout <= 0:
            raise ValueError("lease, state and release times must be positive numbers of seconds")
        self.backend = backend
        self.lease_seconds = lease_seconds
        self.state_seconds = state_seconds
        self.release_timeout = release_timeout
        self.runs: dict[str, ActiveRun] = {}
        self.closing: str | None = None
        self._recovery: asyncio.Task[None] | None = None
        backend.add_reconnect_listener(self._reconnected)

    # -- a run's life --------------------------------------------------------------------
    async def begin(self, key: str, run: Stoppable) -> ActiveRun:
        """Hold ``key`` for ``run``; raises :class:`SessionBusy` or :class:`BackendUnavailable`."""
        if self.closing is not None:
            raise BackendUnavailable(f"not taking new runs: {self.closing}")
        if key in self.runs:
            raise SessionBusy(key)
        run_id = os.urandom(16).hex()  # only compared, never parsed
        try:
            acquired = await self.backend.acquire(key, run_id, self.lease_seconds)
        except _backend_errors() as exc:
            raise BackendUnavailable(f"{self.backend.name} is unreachable: {exc or type(exc).__name__}") from exc
        if not acquired:
            raise SessionBusy(key)
        active = ActiveRun(key, run_id, run)
        self.runs[key] = active
        if self.closing is not None:  # close() began while we were taking the lease
            await asyncio.shield(self.end(active, RunState.STOPPED))
            raise BackendUnavailable(f"not taking new runs: {self.closing}")
        try:
            await self.backend.watch(key, lambda named: self._notice(key, named))
            if await self.backend.stop_requested(key, run_id):
                run.stop(STOP_REASON)
        except _backend_errors() as exc:  # the renewal loop keeps checking the flag
            logger.warning("could not listen for stops of %s yet: %s", key, exc)
        except BaseException:  # cancelled (or a bug) after taking the lease: give it back
            await asyncio.shield(self.end(active, RunState.STOPPED))
            raise
        active.renewer = asyncio.create_task(self._keep_alive(active), name=f"agentpack-lease-{key}")
        return active

    async def end(self, active: ActiveRun, state: RunState) -> None:
        """Release the session and record how the run ended; safe to call more than once.

        Every wait here is bounded, so a backend that hangs or a renewer that swallowed its
        cancellation cannot keep the caller — or a server's shutdown — waiting.  The renewer
        is not waited for at all: it stops at its next step (it checks ``ending``), and a
        renewal it already sent cannot take the session back (the backend refuses to renew a
        run it recorded as ended).
        """
        if active.ending:
            await wait_bounded(active.ended.wait(), 2 * self.release_timeout)
            return
        active.ending = True
        try:
            if self.runs.get(active.key) is active:
                del self.runs[active.key]
            if active.renewer is not None:
                active.renewer.cancel()
            await self._release(active, state)
        finally:
            active.ended.set()

    async def _release(self, active: ActiveRun, state: RunState) -> None:
        async def release() -> None:
            # the lease first: the session's next request must find it free as soon as possible
            await self.backend.release(active.key, active.run_id, state, self.state_seconds)
            await self.backend.unwatch(active.key)

        try:
            if self.backend.bounded:  # its calls end by themselves in bounded time: no task needed
                await release()
                released = True
            else:  # in a task of its own: a call that ignores cancellation cannot hold us here
                released, _ = await wait_bounded(release(), self.release_timeout)
        except _backend_errors() as exc:
            released = False
            logger.warning("could not release %s: %s", active.key, exc)
        if not released:
            logger.warning("%s was not released; its lease will expire within %.0fs", active.key, self.lease_seconds)

    def _notice(self, key: str, run_id: str) -> None:
        active = self.runs.get(key)
        if active is not None and active.run_id == run_id:
            active.run.stop(STOP_REASON)

    async def _keep_alive(self, active: ActiveRun) -> None:
        """Renew the lease at a third of its life, and check the stop flag each time."""
        interval = self.lease_seconds / 3
        while not active.ending:
            await asyncio.sleep(interval)
            if active.ending:
                return
            await self._renew(active)

    async def _renew(self, active: ActiveRun) -> None:
        try:
            renewal = await self.backend.renew(active.key, active.run_id, self.lease_seconds)
            if active.ending or renewal is Renewal.ENDED:
                return
            if renewal is Renewal.LOST and not active.lease_lost:
                active.lease_lost = True
                logger.error("session %s was taken by another run while this one was cut off", active.key)
            if await self.backend.stop_requested(active.key, active.run_id):
                active.run.stop(STOP_REASON)
        except _backend_errors() as exc:  # keep running; the backend may come back
            logger.warning("could not renew the lease of %s: %s", active.key, exc)

    # -- after an outage -----------------------------------------------------------------
    def _reconnected(self) -> None:
        """The backend is back: re-take every lease and re-read every stop flag now."""
        if not self.runs or (self._recovery is not None and not self._recovery.done()):
            return
        self._recovery = asyncio.get_running_loop().create_task(self._recover(), name="agentpack-lease-recovery")

    async def _recover(self) -> None:
        await asyncio.gather(*(self._renew(active) for active in list(self.runs.values())))

    # -- shutting down -------------------------------------------------------------------
    def open(self) -> None:
        """Take runs again (an app served, stopped and served again)."""
        self.closing = None

    async def close(self, reason: str = SHUTDOWN_REASON, timeout: float = 15.0) -> None:
        """Refuse new runs, stop every running one with ``reason`` and wait (bounded) until all
        are released; runs that do not end in time are released anyway."""
        self.closing = reason
        runs = list(self.runs.values())
        for active in runs:
            active.run.stop(reason)
        if runs:
            finished, _ = await wait_bounded(asyncio.gather(*(a.ended.wait() for a in runs)), timeout)
            if not finished:
                left = [a for a in runs if not a.ended.is_set()]
                logger.warning(
                    "%d run(s) did not end within %.0fs of shutdown; releasing their sessions", len(left), timeout
                )
                await asyncio.gather(*(self.end(a, RunState.STOPPED) for a in left))
        if self._recovery is not None:
            self._recovery.cancel()
            await wait_bounded(asyncio.gather(self._recovery, return_exceptions=True), self.release_timeout)

    # -- stopping and asking -------------------------------------------------------------
    async def stop(self, key: str, reason: str = STOP_REASON) -> bool:
        """Stop the run holding ``key``, wherever it is; ``True`` if one was running.  ``reason``
        ends a run in this process (its ``canceled`` event says it); a run elsewhere gets the flag."""
        active = self.runs.get(key)
        if active is not None:
            active.run.stop(reason)
            return True
        try:
            return await self.backend.request_stop(key, self.state_seconds, self.lease_seconds)
        except _backend_errors() as exc:
            raise BackendUnavailable(f"{self.backend.name} is unreachable: {exc or type(exc).__name__}") from exc

    async def state(self, key: str) -> RunState | None:
        if key in self.runs:
            return RunState.RUNNING
        try:
            return await self.backend.get_state(key)
        except _backend_errors() as exc:
            raise BackendUnavailable(f"{self.backend.name} is unreachable: {exc or type(exc).__name__}") from exc

    def __len__(self) -> int:
        return len(self.runs)
