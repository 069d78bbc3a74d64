"""``framework="text"``: the handler yields strings, each one a text delta of one assistant message."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from agentpack.protocol.events import OpenContent, OpenMessage, ResponseBuilder
from agentpack.protocol.schemas import AgentRequest, Message


class TextFramework:
    name = "text"

    async def prepare(self) -> None:
        return None

    def to_msgs(self, request: AgentRequest) -> list[Message]:
        return request.input

    async def adapt(self, items: AsyncIterator[Any], builder: ResponseBuilder) -> AsyncGenerator[dict[str, Any], None]:
        msg: OpenMessage | None = None
        item: OpenContent | None = None
        async for chunk in items:
            if chunk is None:
                continue
            if isinstance(chunk, bytes):
                chunk = chunk.decode("utf-8")
            if not isinstance(chunk, str):
                hint = " (use framework='agentscope' for (msg, last) tuples)" if isinstance(chunk, tuple) else ""
                raise TypeError(f"a framework='text' handler must yield str, got {type(chunk).__name__}{hint}")
            if not chunk:
                continue
            if msg is None or item is None:
                msg, started = builder.open_message()
                yield started
                item = msg.new_content("text")
            yield builder.delta(msg, item, {"text": chunk})
