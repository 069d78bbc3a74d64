"""The contract every framework converter fulfils."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Protocol

from agentpack.protocol.events import OpenContent, OpenMessage, ResponseBuilder
from agentpack.protocol.schemas import AgentRequest, MessageType


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


class TextStream:
    """An open message and the text content being streamed into it."""

    __slots__ = ("item", "msg")

    def __init__(self, msg: OpenMessage, item: OpenContent) -> None:
        self.msg = msg
        self.item = item


class TextAndReasoning(Protocol):
    """A converter's state with at most one open text and one open reasoning stream."""

    text: TextStream | None
    reasoning: TextStream | None


def switch_text_stream(
    state: TextAndReasoning,
    reasoning: bool,
    open_message: Callable[[str], tuple[OpenMessage, dict[str, Any]]],
    builder: ResponseBuilder,
    events: list[dict[str, Any]],
) -> TextStream:
    """The open stream of one kind, completing the other kind's message first.

    Frameworks that interleave reasoning and text deltas in one model call (agno, Agent
    Framework) mean "the model moved on" when the kind changes; the client sees each run of
    one kind as its own message, in order."""
    other = state.text if reasoning else state.reasoning
    if other is not None:
        events.extend(builder.complete_message(other.msg))
        if reasoning:
            state.text = None
        else:
            state.reasoning = None
    stream = state.reasoning if reasoning else state.text
    if stream is None:
        msg, started = open_message(MessageType.REASONING if reasoning else MessageType.MESSAGE)
        events.append(started)
        stream = TextStream(msg, msg.new_content("text"))
        if reasoning:
            state.reasoning = stream
        else:
            state.text = stream
    return stream
