"""What every service is: something the app starts and stops, that can say whether it works.

Named as in AgentScope Runtime 1.0 (``agentscope_runtime.engine.services.base``), so a
service written against those bases keeps working here.  Every service is also an async
context manager: ``async with RedisStateService(url) as states: ...`` starts it and stops
it again, which is how a lifespan holds one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class ServiceNotStarted(RuntimeError):
    """A service was used before :meth:`Service.start` (or after :meth:`Service.stop`)."""

    def __init__(self, service: str) -> None:
        super().__init__(
            f"{service} is not started: call `await service.start()` (or use `async with service:`) first, "
            "e.g. in the app's lifespan"
        )


class ServiceUnavailable(ConnectionError):
    """The store behind a service cannot be reached or did not answer in time.

    Raised instead of hanging: every command to the store has a bounded time.  The message
    names the service, the store and the time limit.
    """


class Service(ABC):
    """A resource with a lifecycle: :meth:`start`, :meth:`stop` and :meth:`health`."""

    @abstractmethod
    async def start(self) -> None:
        """Prepare the service (connections, stores).  Calling it again does nothing."""

    @abstractmethod
    async def stop(self) -> None:
        """Release what :meth:`start` took.  Calling it again (or before start) does nothing."""

    @abstractmethod
    async def health(self) -> bool:
        """Whether the service is started and its store answers; never raises."""


class ServiceLifecycleManagerMixin:
    """``async with service:`` starts the service on entry and stops it on exit."""

    async def __aenter__(self) -> Any:
        await self.start()  # type: ignore[attr-defined]
        return self

    async def __aexit__(self, exc_type: type | None, exc: BaseException | None, tb: Any) -> bool:
        await self.stop()  # type: ignore[attr-defined]
        return False


class ServiceWithLifecycleManager(Service, ServiceLifecycleManagerMixin):
    """The base of the state and session-history services: a :class:`Service` that is also
    an async context manager."""
