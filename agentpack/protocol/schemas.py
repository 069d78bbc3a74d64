"""Pydantic models and vocabularies of the Agent API: requests, messages, contents, responses.

The names, fields and constant spellings are those of AgentScope Runtime's
``agentscope_runtime.engine.schemas.agent_schemas``, so code and tests written against it
work after ``from agentpack import ...`` replaces that import (docs/migrating.md lists
them).  The server validates the *request* with these models, so a bad body is a 422
with field paths before any stream starts; it builds the streamed *events* as plain
dicts of the same shapes (:mod:`agentpack.protocol.events`), which clients may read back
with :class:`AgentResponse`, :class:`Message` and the content models.

Every model but :class:`AgentRequest` is built on first use (``defer_build``), not at import:
a server needs only the request's validator, built at import in one go with the schemas of
the models it holds, and building every model's validator and serializer at import was a
quarter of ``import agentpack``.  (``AgentRequest`` itself is not deferred: FastAPI's body
field of a deferred model would be built by the first request instead.)
"""

import functools
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError, core_schema

from agentpack.protocol.status import RunStatus as RunStatus  # re-exported: one of the schema names

if TYPE_CHECKING:  # created on first use: see OUTPUT_MODELS
    from agentpack.protocol.output_models import (
        AgentResponse as AgentResponse,
    )
    from agentpack.protocol.output_models import (
        BaseResponse as BaseResponse,
    )
    from agentpack.protocol.output_models import (
        FunctionCall as FunctionCall,
    )
    from agentpack.protocol.output_models import (
        FunctionCallOutput as FunctionCallOutput,
    )
    from agentpack.protocol.output_models import (
        McpCall as McpCall,
    )
    from agentpack.protocol.output_models import (
        McpCallOutput as McpCallOutput,
    )
    from agentpack.protocol.output_models import (
        ToolCall as ToolCall,
    )
    from agentpack.protocol.output_models import (
        ToolCallOutput as ToolCallOutput,
    )
    from agentpack.protocol.output_models import (
        Usage as Usage,
    )


def _new_list() -> list[Any]:
    """``default_factory=list`` costs every process that builds these models ~5 ms at start:
    pydantic reads the factory's signature, which for a builtin means tokenizing its text
    signature, and the tokenizer compiles its one large regex.  A function of ours has a
    signature without that."""
    return []


def _new_dict() -> dict[str, Any]:
    """See :func:`_new_list`."""
    return {}


_UUID4_BITS = (0x4 << 76) | (0x2 << 62)  # the version (4) and the variant (RFC 9562) of a UUID
_UUID4_KEEP = ~((0xF << 76) | (0x3 << 62))


def uuid4_hex() -> str:
    """What ``uuid4().hex`` gives (32 digits, the same version and variant bits) at half the
    cost, with no UUID object: every run makes several of these before its first event."""
    return "%032x" % ((int.from_bytes(os.urandom(16), "big") & _UUID4_KEEP) | _UUID4_BITS)


def new_id(prefix: str) -> str:
    """A collision-free id such as ``msg_3f2a…`` (uuid4 hex keeps ids URL- and key-safe)."""
    return f"{prefix}_{uuid4_hex()}"


#: Longest id accepted (session, user, request ids): ids travel in headers and keys.
ID_MAX_LENGTH = 256
_NOT_IN_IDS = "[\x00-\x1f\x7f-\x9f\ud800-\udfff]"
_LONE_SURROGATE = "[\ud800-\udfff]"


@functools.cache
def _pattern(text: str) -> re.Pattern[str]:
    """A pattern compiled the first time text that is not ASCII needs it: ASCII text is decided
    by ``str`` flags alone, and compiling the two character classes above at import was ~3 % of
    ``import agentpack``."""
    return re.compile(text)


def _describe(char: str) -> str:
    return (
        f"a lone surrogate (U+{ord(char):04X})"
        if 0xD800 <= ord(char) <= 0xDFFF
        else f"the control character U+{ord(char):04X}"
    )


def check_id(value: str) -> str:
    """An id may be any Unicode text (Chinese, emoji…) up to :data:`ID_MAX_LENGTH` characters,
    without control characters (CR, LF, NUL…) or lone surrogates."""
    if len(value) > ID_MAX_LENGTH:
        raise ValueError(f"is {len(value)} characters long; ids may have at most {ID_MAX_LENGTH}")
    if value.isascii() and value.isprintable():  # the usual id: no control character, no surrogate
        return value
    bad = _pattern(_NOT_IN_IDS).search(value)
    if bad is not None:
        raise ValueError(
            f"contains {_describe(bad.group())} at position {bad.start()}; remove it (ids may be any other Unicode text)"
        )
    return value


#: What the OpenAPI schema says of an id: the same rules :func:`check_id` enforces.
ID_SCHEMA = {"type": "string", "maxLength": ID_MAX_LENGTH, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"}

#: A validated id (see :func:`check_id`).
Id = Annotated[str, AfterValidator(check_id), WithJsonSchema(ID_SCHEMA)]
SessionId = Id
UserId = Id | None


def _surrogate_in(text: str) -> re.Match[str] | None:
    """The first lone surrogate in ``text``; ASCII text has none (a flag of the string says so)."""
    return None if text.isascii() else _pattern(_LONE_SURROGATE).search(text)


def _lone_surrogate(value: Any, path: tuple[Any, ...]) -> tuple[tuple[Any, ...], str] | None:
    """The first string under ``value`` holding a lone surrogate, with its path."""
    if isinstance(value, str):
        found = _surrogate_in(value)
        return (path, found.group()) if found else None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        in_key = _surrogate_in(key) if isinstance(key, str) else None
        if in_key is not None:  # a key: named by where it is, since the key itself cannot be shown
            return (path, in_key.group())
        nested = _lone_surrogate(item, (*path, key))
        if nested is not None:
            return nested
    return None


def _json_integer(value: Any) -> Any:
    """JSON Schema's ``integer``: a whole number, ``4.0`` included (JSON has one number type),
    never a boolean or a string."""
    if isinstance(value, bool | str):
        raise PydanticCustomError(
            "int_type", "Input should be a valid integer, not a {kind}", {"kind": type(value).__name__}
        )
    return value


class _Schema:
    """``Annotated`` metadata that hands pydantic a finished core schema.

    The same as a ``BeforeValidator`` or ``Strict()`` — the same validation, errors and JSON
    schema — without the work pydantic does for each field that carries one (inspecting the
    validator's signature, resolving the annotations): the request's validator, which every
    start builds, has 17 such fields, and that work was ~2 ms of each start.  ``Field``'s
    constraints (``ge=``, ``le=``…) are not applied to a finished schema: it carries its own
    (:func:`_json_int`)."""

    __slots__ = ("_make",)

    def __init__(self, make: Callable[[], core_schema.CoreSchema]) -> None:
        self._make = make

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        return self._make()


def _json_int(ge: int | None = None, le: int | None = None) -> _Schema:
    """An integer as a JSON client sends one (see :func:`_json_integer`), within ``ge``..``le``;
    pydantic's own check of whole numbers (``4.5`` is refused) and of the bounds runs after."""

    def make() -> core_schema.CoreSchema:
        return core_schema.no_info_before_validator_function(_json_integer, core_schema.int_schema(ge=ge, le=le))

    return _Schema(make)


#: An integer as a JSON client sends one (see :func:`_json_int`).
JsonInt = Annotated[int, _json_int()]
#: ``true``, ``false`` or ``null``; never ``"yes"`` or ``1`` (``StrictBool | None``).
_StrictOptionalBool = Annotated[
    bool | None, _Schema(lambda: core_schema.nullable_schema(core_schema.bool_schema(strict=True)))
]


class MessageType:
    """Kinds of output message; ``message`` is plain assistant text."""

    MESSAGE = "message"
    FUNCTION_CALL = "function_call"
    FUNCTION_CALL_OUTPUT = "function_call_output"
    PLUGIN_CALL = "plugin_call"
    PLUGIN_CALL_OUTPUT = "plugin_call_output"
    COMPONENT_CALL = "component_call"
    COMPONENT_CALL_OUTPUT = "component_call_output"
    MCP_LIST_TOOLS = "mcp_list_tools"
    MCP_APPROVAL_REQUEST = "mcp_approval_request"
    MCP_TOOL_CALL = "mcp_call"
    MCP_TOOL_CALL_OUTPUT = "mcp_call_output"
    MCP_APPROVAL_RESPONSE = "mcp_approval_response"
    REASONING = "reasoning"
    HEARTBEAT = "heartbeat"
    ERROR = "error"

    MCP_CALL = MCP_TOOL_CALL
    MCP_CALL_OUTPUT = MCP_TOOL_CALL_OUTPUT

    @classmethod
    def all_values(cls) -> list[str]:
        """Every distinct message type value."""
        values: list[str] = []
        for name, value in vars(cls).items():
            if not name.startswith("_") and isinstance(value, str) and value not in values:
                values.append(value)
        return values


class ContentType:
    TEXT = "text"
    DATA = "data"
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    FILE = "file"
    REFUSAL = "refusal"


class Role:
    ASSISTANT = "assistant"
    USER = "user"
    SYSTEM = "system"
    TOOL = "tool"


AgentRole = Literal["assistant", "system", "user", "tool"]


class Error(BaseModel):
    model_config = ConfigDict(defer_build=True)

    code: str
    message: str


_E = TypeVar("_E", bound="Event")


class Event(BaseModel):
    """What every streamed object has: its place in the stream, kind, status and error."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    sequence_number: JsonInt | None = None
    object: str
    status: str | None = None
    error: Error | None = None

    def created(self: _E) -> _E:
        self.status = RunStatus.Created
        return self

    def in_progress(self: _E) -> _E:
        self.status = RunStatus.InProgress
        return self

    def completed(self: _E) -> _E:
        self.status = RunStatus.Completed
        return self

    def failed(self: _E, error: Error) -> _E:
        self.status = RunStatus.Failed
        self.error = error
        return self

    def rejected(self: _E) -> _E:
        self.status = RunStatus.Rejected
        return self

    def canceled(self: _E) -> _E:
        self.status = RunStatus.Canceled
        return self


class Content(Event):
    """Base of every content item; ``type`` says which payload field it carries."""

    type: str
    object: str = "content"
    index: JsonInt | None = None
    delta: _StrictOptionalBool = False
    msg_id: str | None = None


class TextContent(Content):
    type: Literal["text"] = "text"
    text: str | None = None


class ImageContent(Content):
    type: Literal["image"] = "image"
    image_url: str | None = None


class DataContent(Content):
    type: Literal["data"] = "data"
    data: dict[str, Any] | None = None


class AudioContent(Content):
    type: Literal["audio"] = "audio"
    data: str | None = None
    format: str | None = None


class VideoContent(Content):
    type: Literal["video"] = "video"
    video_url: str | None = None


class FileContent(Content):
    type: Literal["file"] = "file"
    file_url: str | None = None
    file_id: str | None = None
    filename: str | None = None
    file_data: str | None = None


class RefusalContent(Content):
    type: Literal["refusal"] = "refusal"
    refusal: str | None = None


#: Any content item, told apart by its ``type``.
AgentContent = Annotated[
    TextContent | ImageContent | DataContent | AudioContent | VideoContent | FileContent | RefusalContent,
    Field(discriminator="type"),
]


class Message(Event):
    """An input or output message.  Input ``content`` may also be a plain string (one text item)."""

    id: str = Field(default_factory=lambda: new_id("msg"))
    object: str = "message"
    type: str = MessageType.MESSAGE
    status: str = RunStatus.Created
    role: AgentRole = "user"
    content: list[AgentContent] | None = Field(default_factory=_new_list)
    code: str | None = None
    message: str | None = None
    usage: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _string_is_one_text_item(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [{"type": "text", "text": value}]
        return value

    def text(self) -> str:
        """The message's text items joined by newlines (what most agents want as the prompt)."""
        return "\n".join(c.text for c in self.content or [] if isinstance(c, TextContent) and c.text)

    def get_text_content(self) -> str | None:
        """The first text item's text, or ``None``."""
        for item in self.content or []:
            if isinstance(item, TextContent):
                return item.text
        return None

    def get_image_content(self) -> list[str]:
        """Every image item's URL (or ``data:`` URI)."""
        return [c.image_url for c in self.content or [] if isinstance(c, ImageContent) and c.image_url]

    def get_audio_content(self) -> list[str]:
        """Every audio item's data (URL or ``data:`` URI)."""
        return [c.data for c in self.content or [] if isinstance(c, AudioContent) and c.data]


class FunctionParameters(BaseModel):
    model_config = ConfigDict(extra="allow", defer_build=True)

    type: str = "object"
    properties: dict[str, Any] = Field(default_factory=_new_dict)
    required: list[str] | None = None


class FunctionTool(BaseModel):
    """A function the model may call.  Only ``name`` is required (the others are often omitted)."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    name: str
    description: str | None = None
    parameters: FunctionParameters | dict[str, Any] | None = None


#: agentpack's earlier name of :class:`FunctionTool`.
FunctionSpec = FunctionTool


class Tool(BaseModel):
    model_config = ConfigDict(extra="allow", defer_build=True)

    type: str | None = "function"
    function: FunctionTool | None = None


#: Most messages a request's ``input`` may hold (a long conversation has hundreds).
MAX_INPUT_MESSAGES = 1000
#: Most content items one input message may hold.
MAX_CONTENT_ITEMS = 256
#: Most characters of text one input message may carry, over all its items (text, URLs and
#: data URIs, data): 2 Mi, far more than any model's context in text, and an image of about
#: 1.5 MB as a data URI.  The body limit (``max_body_bytes``) bounds the request as a whole.
MAX_MESSAGE_CHARS = 2 * 1024 * 1024


def _chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_chars(k) + _chars(v) for k, v in value.items())
    if isinstance(value, list):
        return sum(_chars(v) for v in value)
    return 0


def check_input_message(message: Message) -> Message:
    """An input message within :data:`MAX_CONTENT_ITEMS` and :data:`MAX_MESSAGE_CHARS`."""
    items = message.content or []
    if len(items) > MAX_CONTENT_ITEMS:
        raise ValueError(f"has {len(items)} content items; a message may have at most {MAX_CONTENT_ITEMS}")
    size = sum(_chars(vars(item)) + _chars(item.__pydantic_extra__ or {}) for item in items)
    if size > MAX_MESSAGE_CHARS:
        raise ValueError(f"carries {size} characters; a message may carry at most {MAX_MESSAGE_CHARS}")
    return message


#: A message of a request's ``input``, within the limits above (a 422 names its index).
InputMessage = Annotated[Message, AfterValidator(check_input_message)]


class BaseRequest(BaseModel):
    """What every request has.  Scalars are strict (``"stream": "yes"`` is a 422, not ``true``):
    a client that sends the wrong type finds out, instead of getting a guess."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    input: list[InputMessage] = Field(max_length=MAX_INPUT_MESSAGES)
    stream: StrictBool = True
    id: Id | None = None


class AgentRequest(BaseRequest):
    """Body of ``POST /process``.  Unknown keys are kept (protocol adapters put their own there).

    The types are AgentScope Runtime's, held strictly: a number field takes any JSON number its
    type allows (``temperature: 1``, ``n: 2.0``), but never a string or a boolean."""

    model_config = ConfigDict(extra="allow", defer_build=False)  # built at import: see the module doc

    session_id: Id | None = None
    user_id: Id | None = None
    model: str | None = None
    top_p: StrictFloat | None = None
    temperature: StrictFloat | None = None
    frequency_penalty: StrictFloat | None = None
    presence_penalty: StrictFloat | None = None
    max_tokens: JsonInt | None = None
    seed: JsonInt | None = None
    stop: str | list[str] | None = None
    n: Annotated[int, _json_int(ge=1, le=5)] = 1
    tools: list[Tool | dict[str, Any]] | None = None

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
            raise ValueError(
                f"{where} contains {_describe(char)}; send text as valid UTF-8 (a surrogate must be half of a pair)"
            )
        return data


def fill_ids(request: AgentRequest) -> AgentRequest:
    """Give a request without ids fresh ones, so anonymous requests never share a session
    (the user defaults to the session, as everywhere in the Agent API)."""
    if not request.session_id:
        request.session_id = uuid4_hex()
    if not request.user_id:
        request.user_id = request.session_id
    return request


#: The models of what a run sends back, defined in :mod:`agentpack.protocol.output_models`
#: and created on first use (a server never needs them); importable from here as ever.
OUTPUT_MODELS = frozenset(
    {
        "AgentResponse",
        "BaseResponse",
        "FunctionCall",
        "FunctionCallOutput",
        "McpCall",
        "McpCallOutput",
        "ToolCall",
        "ToolCallOutput",
        "Usage",
    }
)


def __getattr__(name: str) -> Any:
    if name in OUTPUT_MODELS:
        from agentpack.protocol import output_models

        return getattr(output_models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
