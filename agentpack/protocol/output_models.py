"""The Agent API models of what a run sends back — responses, token usage, tool calls and
their outputs — for code that reads a stream back into objects or builds one by hand.

A server never needs them (it writes its events as plain dicts of these shapes, see
:mod:`agentpack.protocol.events`), so they are created on first use: every pydantic model a
module defines costs its import a third of a millisecond, and ``import agentpack`` is on
every cold start.  Import them from :mod:`agentpack.protocol.schemas` or ``agentpack`` as
ever; this module is where they live.
"""

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentpack.protocol.schemas import OUTPUT_MODELS, Event, Message, new_id
from agentpack.protocol.status import RunStatus

__all__ = sorted(OUTPUT_MODELS)  # the names schemas forwards here


class Usage(BaseModel):
    """Token usage of a message or a response; ``details`` holds one entry per model call."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    input_tokens: int | None = None
    output_tokens: int | None = None
    details: list[dict[str, Any]] | None = None


class FunctionCall(BaseModel):
    """The ``data`` of a ``function_call`` / ``plugin_call`` content."""

    model_config = ConfigDict(defer_build=True)

    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None


class FunctionCallOutput(BaseModel):
    """The ``data`` of a ``function_call_output`` / ``plugin_call_output`` content."""

    model_config = ConfigDict(defer_build=True)

    call_id: str
    name: str | None = None
    output: str


class McpCall(FunctionCall):
    server_label: str | None = None


class McpCallOutput(FunctionCallOutput):
    server_label: str | None = None


class ToolCall(BaseModel):
    model_config = ConfigDict(defer_build=True)

    arguments: str
    call_id: str
    name: str


class ToolCallOutput(BaseModel):
    model_config = ConfigDict(defer_build=True)

    call_id: str
    output: str


class BaseResponse(Event):
    id: str = Field(default_factory=lambda: new_id("response"))
    object: str = "response"
    status: str = RunStatus.Created
    created_at: int = Field(default_factory=lambda: int(time.time()))
    completed_at: int | None = None
    output: list[Message] | None = None
    usage: dict[str, Any] | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _missing_id_is_new(cls, value: Any) -> Any:
        return new_id("response") if value is None else value

    def add_new_message(self, message: Message) -> None:
        self.output = [*(self.output or []), message]


class AgentResponse(BaseResponse):
    """A ``response`` event: the terminal one carries ``output``, the list of messages."""

    session_id: str | None = None
