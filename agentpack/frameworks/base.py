"""The contract every framework converter fulfils."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Protocol

from agentpack.protocol.events import ResponseBuilder
from agentpack.protocol.schemas import AgentRequest


class Framework(Protocol):
    """Translates between the Agent API and one agent framework.

    ``to_msgs`` gives the handler its input in the framework's own message type;
    ``adapt`` turns the handler's yields into protocol events through the builder, so
    numbering and message bookkeeping stay in one place.  Messages the converter leaves
    open are completed by the runner when the handler ends normally.
    """

    name: str

    async def prepare(self) -> None:
        """Import heavy framework modules at start-up instead of on the first request."""

    def to_msgs(self, request: AgentRequest) -> Any: ...

    def adapt(self, items: AsyncIterator[Any], builder: ResponseBuilder) -> AsyncGenerator[dict[str, Any], None]:
        """Must be an async generator: the runner closes it (``aclose``) when the run ends early."""
        ...
