"""Pydantic models of the Agent API request: the body of ``POST /process``.

They validate input, so a bad body is a 422 with field paths before any stream starts.
The models of the streamed events live in :mod:`agentpack.protocol.event_models`; the
server never imports them (it builds plain dicts of the same shape), which keeps them off
the start-up path.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator


def new_id(prefix: str) -> str:
    """A collision-free id such as ``msg_3f2a…`` (uuid4 hex keeps ids URL- and key-safe)."""
    return f"{prefix}_{uuid.uuid4().hex}"


class RunStatus:
    """Status vocabulary shared by response, message and content objects."""

    CREATED = "created"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELED = "canceled"
    FAILED = "failed"
    REJECTED = "rejected"
    UNKNOWN = "unknown"
    QUEUED = "queued"
    INCOMPLETE = "incomplete"


class MessageType:
    """Kinds of output message; ``message`` is plain assistant text."""

    MESSAGE = "message"
    REASONING = "reasoning"
    PLUGIN_CALL = "plugin_call"
    PLUGIN_CALL_OUTPUT = "plugin_call_output"
    MCP_CALL = "mcp_call"
    MCP_CALL_OUTPUT = "mcp_call_output"
    FUNCTION_CALL = "function_call"
    FUNCTION_CALL_OUTPUT = "function_call_output"


class _ContentBase(BaseModel):
    model_config = ConfigDict(extra="allow")

    object: Literal["content"] = "content"
    index: Optional[int] = None
    delta: Optional[bool] = False
    msg_id: Optional[str] = None
    status: Optional[str] = None


class TextContent(_ContentBase):
    type: Literal["text"] = "text"
    text: Optional[str] = None


class ImageContent(_ContentBase):
    type: Literal["image"] = "image"
    image_url: Optional[str] = None


class DataContent(_ContentBase):
    type: Literal["data"] = "data"
    data: Optional[dict[str, Any]] = None


class AudioContent(_ContentBase):
    type: Literal["audio"] = "audio"
    data: Optional[str] = None
    format: Optional[str] = None


class VideoContent(_ContentBase):
    type: Literal["video"] = "video"
    video_url: Optional[str] = None


class FileContent(_ContentBase):
    type: Literal["file"] = "file"
    file_url: Optional[str] = None
    file_id: Optional[str] = None
    filename: Optional[str] = None
    file_data: Optional[str] = None


class RefusalContent(_ContentBase):
    type: Literal["refusal"] = "refusal"
    refusal: Optional[str] = None


Content = Annotated[
    Union[
        TextContent,
        ImageContent,
        DataContent,
        AudioContent,
        VideoContent,
        FileContent,
        RefusalContent,
    ],
    Field(discriminator="type"),
]


class Message(BaseModel):
    """One input message.  ``content`` may also be given as a plain string (a single text item)."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(default_factory=lambda: new_id("msg"))
    object: Literal["message"] = "message"
    type: str = MessageType.MESSAGE
    status: str = RunStatus.CREATED
    role: Literal["user", "assistant", "system", "tool"] = "user"
    content: list[Content] = Field(default_factory=list)
    code: Optional[str] = None
    message: Optional[str] = None
    usage: Optional[dict[str, Any]] = None
    metadata: Optional[dict[str, Any]] = None

    @field_validator("content", mode="before")
    @classmethod
    def _string_is_one_text_item(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [{"type": "text", "text": value}]
        return value

    def text(self) -> str:
        """The message's text items joined by newlines (what most agents want as the prompt)."""
        return "\n".join(c.text for c in self.content if isinstance(c, TextContent) and c.text)


class FunctionSpec(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    description: Optional[str] = None
    parameters: Optional[dict[str, Any]] = None


class Tool(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = "function"
    function: FunctionSpec


class AgentRequest(BaseModel):
    """Body of ``POST /process``.  Unknown keys are kept (protocol adapters put their own there)."""

    model_config = ConfigDict(extra="allow")

    input: list[Message]
    stream: bool = True
    id: Optional[str] = None
    session_id: Optional[str] = None
    user_id: Optional[str] = None
    model: Optional[str] = None
    top_p: Optional[float] = None
    temperature: Optional[float] = None
    frequency_penalty: Optional[float] = None
    presence_penalty: Optional[float] = None
    max_tokens: Optional[int] = None
    seed: Optional[int] = None
    stop: Optional[Union[str, list[str]]] = None
    n: int = Field(default=1, ge=1, le=5)
    tools: Optional[list[Union[Tool, dict[str, Any]]]] = None
