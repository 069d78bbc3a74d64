"""Pydantic models of the Agent API request: the body of ``POST /process``.

They validate input, so a bad body is a 422 with field paths before any stream starts.
The models of the streamed events live in :mod:`agentpack.protocol.event_models`; the
server never imports them (it builds plain dicts of the same shape), which keeps them off
the start-up path.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator


def new_id(prefix: str) -> str:
    """A collision-free id such as ``msg_3f2a…`` (uuid4 hex keeps ids URL- and key-safe)."""
    return f"{prefix}_{uuid.uuid4().hex}"


#: Longest id accepted (session, user, request ids): ids travel in headers and keys.
ID_MAX_LENGTH = 256
_NOT_IN_IDS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _describe(char: str) -> str:
    return f"a lone surrogate (U+{ord(char):04X})" if 0xD800 <= ord(char) <= 0xDFFF else f"the control character U+{ord(char):04X}"


def check_id(value: str) -> str:
    """An id may be any Unicode text (Chinese, emoji…) up to :data:`ID_MAX_LENGTH` characters,
    without control characters (CR, LF, NUL…) or lone surrogates."""
    if len(value) > ID_MAX_LENGTH:
        raise ValueError(f"is {len(value)} characters long; ids may have at most {ID_MAX_LENGTH}")
    bad = _NOT_IN_IDS.search(value)
    if bad is not None:
        raise ValueError(f"contains {_describe(bad.group())} at position {bad.start()}; remove it (ids may be any other Unicode text)")
    return value


#: A validated id (see :func:`check_id`).
Id = Annotated[str, AfterValidator(check_id)]
SessionId = Id
UserId = Optional[Id]


def _lone_surrogate(value: Any, path: tuple) -> Optional[tuple[tuple, str]]:
    """The first string under ``value`` holding a lone surrogate, with its path."""
    if isinstance(value, str):
        found = _LONE_SURROGATE.search(value)
        return (path, found.group()) if found else None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        if isinstance(key, str) and _LONE_SURROGATE.search(key):
            return (path, key)
        found = _lone_surrogate(item, (*path, key))
        if found is not None:
            return found
    return None


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
    id: Optional[Id] = None
    session_id: Optional[Id] = None
    user_id: Optional[Id] = None
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

    @model_validator(mode="before")
    @classmethod
    def _no_lone_surrogates(cls, data: Any) -> Any:
        # A "\ud800" escape in JSON parses into a string UTF-8 cannot encode: it would fail
        # mid-stream, so it is refused here, before anything runs, naming where it is.  The
        # ids are left to their own validators, which name the field in the error's loc.
        if isinstance(data, dict):
            data_without_ids = {k: v for k, v in data.items() if k not in ("id", "session_id", "user_id")}
        found = _lone_surrogate(data_without_ids if isinstance(data, dict) else data, ())
        if found is not None:
            path, char = found
            where = ".".join(str(part) for part in path) or "the body"
            raise ValueError(f"{where} contains {_describe(char)}; send text as valid UTF-8 (a surrogate must be half of a pair)")
        return data
