"""Loopback stand-in for an OpenAI Chat Completions endpoint, scripted by the test.

``POST /v1/chat/completions`` (``stream`` true or false) and ``GET /v1/models`` on a free loopback
port, so that any OpenAI-compatible client — the official ``openai`` package, agno's ``OpenAIChat``,
Agent Framework's ``OpenAIChatCompletionClient``, LangChain's ``ChatOpenAI`` — can be pointed at it
with ``base_url=stand_in.base_url`` and any API key.  What the model answers is decided by a
*script*: a function of the request (:class:`ChatRequest` -> :class:`Reply`) or a list of replies
used one per request.  Streams are written the way OpenAI writes them: ``data: <chat.completion.chunk>``
frames with the role first, text and reasoning in pieces, tool-call arguments split over several
chunks, a closing chunk with the finish reason, the usage chunk when the request asked for it,
then ``data: [DONE]``.  A reply can stop midway (``hold_after``) until the test calls
:meth:`OpenAIChatStandIn.release`, or the stand-in can wait between chunks (``chunk_delay``).

Every request is checked against the published API before it is answered, and refused the way the
API refuses it: HTTP 400 with ``{"error": {"message", "type", "param", "code"}}``.  Every request is
recorded (:attr:`OpenAIChatStandIn.calls`), with what was sent back.

Sources, by tag (the same as README.md's section 8):

* [API-CREATE] https://platform.openai.com/docs/api-reference/chat/create — the request body.
* [API-CHUNK] https://platform.openai.com/docs/api-reference/chat/streaming — the chunk object.
* [API-OBJECT] https://platform.openai.com/docs/api-reference/chat/object — the non-streamed answer.
* [API-MODELS] https://platform.openai.com/docs/api-reference/models/list — the model list.
* [API-ERRORS] https://platform.openai.com/docs/guides/error-codes and
  https://platform.openai.com/docs/api-reference/introduction (authentication: ``Authorization: Bearer``).
* [GUIDE-FC] https://platform.openai.com/docs/guides/function-calling — tool calls, tool results,
  streamed arguments.
* [SDK] the official client, openai-python 3.60 (site-packages ``openai/``): the request TypedDicts in
  ``types/chat/`` (``completion_create_params.py``, ``chat_completion_*_message_param.py``,
  ``chat_completion_content_part_*``), the chunk model ``types/chat/chat_completion_chunk.py``, and
  ``_client.py`` ``_make_status_error`` / ``_exceptions.py`` ``APIError`` (how an error body is read).
* [DEEPSEEK] https://api-docs.deepseek.com/guides/reasoning_model and DashScope's compatible mode,
  https://help.aliyun.com/zh/model-studio/deep-thinking — ``delta.reasoning_content``.
* [assumed] wording or behaviour not found in a public reference; chosen to be plausible and marked.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

from .loopback import LoopbackServer

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"

#: Top-level request parameters the API documents [API-CREATE; SDK completion_create_params.py].
#: Anything else is refused as OpenAI refuses it ("Unrecognized request argument supplied") [assumed
#: wording]; compatible-mode providers' own parameters (e.g. DashScope's ``enable_thinking``) are
#: allowed by ``OpenAIChatStandIn(extra_params=...)``.
REQUEST_PARAMS = frozenset({
    "messages", "model", "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
    "max_completion_tokens", "max_tokens", "metadata", "modalities", "moderation", "n", "parallel_tool_calls",
    "prediction", "presence_penalty", "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention",
    "reasoning_effort", "response_format", "safety_identifier", "seed", "service_tier", "stop", "store", "stream",
    "stream_options", "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity",
    "web_search_options",
})

#: Message roles [API-CREATE "messages"; SDK chat_completion_message_param.py].  The deprecated
#: ``function`` role is refused here on purpose: no client this stand-in serves sends it.
ROLES = ("developer", "system", "user", "assistant", "tool")

#: Content part types each role may send when ``content`` is a list [SDK: the ``content`` unions of
#: chat_completion_{developer,system,user,assistant,tool}_message_param.py].
PART_TYPES: dict[str, tuple[str, ...]] = {
    "developer": ("text",),
    "system": ("text",),
    "user": ("text", "image_url", "input_audio", "file"),
    "assistant": ("text", "refusal"),
    "tool": ("text",),
}

#: A function's name: "a-z, A-Z, 0-9, or contain underscores and dashes, with a maximum length of 64"
#: [API-CREATE tools.function.name].
FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


# -- what a script is given and returns --------------------------------------------------------------


@dataclass
class ToolCall:
    """One tool call the model makes.  ``arguments`` is a JSON string or a dict (sent as JSON)."""

    name: str
    arguments: Union[str, Mapping[str, Any]] = "{}"
    id: Optional[str] = None

    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(dict(self.arguments), ensure_ascii=False)


@dataclass
class Reply:
    """What the model answers to one request.

    ``text`` and ``reasoning`` are a string (streamed word by word, each word with the space before
    it) or the exact pieces to stream.  ``tool_calls`` are streamed after the text, each call's
    arguments split into ``argument_pieces`` chunks.  ``usage`` is ``{"prompt_tokens": …,
    "completion_tokens": …}`` (``total_tokens`` is added); by default the stand-in counts words.
    ``hold_after=N``: after N chunks of this reply have been written, the stream waits until the test
    calls :meth:`OpenAIChatStandIn.release` (``holding`` is set meanwhile).  ``error=(status, type,
    message)`` answers that error instead (e.g. ``(429, "rate_limit_exceeded", "slow down")``).
    """

    text: Union[None, str, Sequence[str]] = None
    reasoning: Union[None, str, Sequence[str]] = None
    tool_calls: Sequence[ToolCall] = ()
    usage: Optional[Mapping[str, int]] = None
    finish_reason: Optional[str] = None
    argument_pieces: int = 3
    hold_after: Optional[int] = None
    error: Optional[tuple[int, str, str]] = None


@dataclass
class ChatRequest:
    """A checked request, as a script sees it."""

    body: dict[str, Any]

    @property
    def model(self) -> str:
        return self.body["model"]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body["messages"]

    @property
    def last(self) -> dict[str, Any]:
        return self.messages[-1]

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def tool_names(self) -> list[str]:
        return [t["function"]["name"] for t in self.body.get("tools") or [] if t.get("type") == "function"]

    def tool_results(self) -> list[dict[str, Any]]:
        """The ``tool`` messages that follow the last ``user`` message (this turn's tool results)."""
        results: list[dict[str, Any]] = []
        for message in reversed(self.messages):
            if message["role"] == "user":
                break
            if message["role"] == "tool":
                results.insert(0, message)
        return results

    def text_of(self, message: Optional[dict[str, Any]] = None) -> str:
        """A message's text (the text parts joined when ``content`` is a list)."""
        content = (message or self.last).get("content")
        if isinstance(content, str):
            return content
        return "".join(part.get("text", "") for part in content or [] if part.get("type") == "text")


Script = Union[Callable[[ChatRequest], Reply], Sequence[Reply]]


def tool_then_answer(
    name: str,
    arguments: Union[str, Mapping[str, Any]],
    answer: Union[str, Sequence[str]],
    *,
    reasoning: Union[None, str, Sequence[str]] = None,
    call_id: Optional[str] = None,
    usage: Optional[Mapping[str, int]] = None,
) -> Callable[[ChatRequest], Reply]:
    """A ReAct turn: when the last message is a tool result, answer ``answer``; otherwise (think
    ``reasoning`` and) call tool ``name`` with ``arguments``."""

    def script(request: ChatRequest) -> Reply:
        if request.last["role"] == "tool":
            return Reply(text=answer, usage=usage)
        return Reply(reasoning=reasoning, tool_calls=[ToolCall(name, arguments, call_id)], usage=usage)

    return script


# -- what is recorded ------------------------------------------------------------------------------


@dataclass
class ChatCall:
    """One HTTP request as received, and what the stand-in did with it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # the parsed JSON body (None when there was none or it did not parse)
    status: int = 0
    error: Optional[dict[str, Any]] = None  # the ``error`` object of a refused request
    chunks: list[dict[str, Any]] = field(default_factory=list)  # the chunks written, in order
    answer: Optional[dict[str, Any]] = None  # the chat.completion object of a non-streamed answer
    done: bool = False  # the stream reached ``data: [DONE]``
    disconnected: bool = False  # the client went away mid-stream

    @property
    def request(self) -> ChatRequest:
        return ChatRequest(self.body)


class _Refused(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: Optional[str] = None, code: Optional[str] = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = {"message": message, "type": type_, "param": param, "code": code}


class _Gone(Exception):
    """The client closed the connection while the stream was being written."""


# -- the server --------------------------------------------------------------------------------------


class OpenAIChatStandIn(LoopbackServer):
    """OpenAI Chat Completions on a free loopback port.

    ``script``: a function ``ChatRequest -> Reply`` or a list of replies (one per completion request,
    in order; a request past the end is answered 500).  ``models``: the ids ``GET /v1/models`` lists
    and requests may name (another id is 404 ``model_not_found``); ``None`` accepts any.  ``api_key``:
    when set, the bearer token must equal it (401 otherwise); a missing token is always 401.
    ``chunk_delay``: seconds to wait before each chunk after the first.
    """

    thread_name = "openai-chat-stand-in"

    def __init__(
        self,
        script: Script,
        *,
        models: Optional[Sequence[str]] = ("stand-in-model",),
        api_key: Optional[str] = None,
        chunk_delay: float = 0.0,
        extra_params: Sequence[str] = (),
    ) -> None:
        self.script = script
        self.models = tuple(models) if models is not None else None
        self.api_key = api_key
        self.chunk_delay = chunk_delay
        self.extra_params = frozenset(extra_params)
        self.calls: list[ChatCall] = []
        #: set while a stream waits at its ``hold_after`` point
        self.holding = threading.Event()
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._turn = 0
        self._stopping = False

    # -- what tests read and do ------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """What an OpenAI client's ``base_url`` is set to."""
        return f"http://127.0.0.1:{self.port}/v1"

    def completions(self) -> list[ChatCall]:
        """The chat completion requests that were accepted, in order."""
        with self._lock:
            return [c for c in self.calls if c.path == CHAT_PATH and c.status == 200]

    def requests(self) -> list[ChatRequest]:
        """The accepted chat completion requests, as scripts saw them."""
        return [c.request for c in self.completions()]

    def release(self) -> None:
        """Let every held stream go on (and streams that reach their hold point later)."""
        self._released.set()

    def stop(self) -> None:
        self._stopping = True
        self._released.set()  # held streams end instead of waiting out their timeout
        super().stop()

    # -- request handling ----------------------------------------------------------------------------
    def _handle(self, http: BaseHTTPRequestHandler) -> None:
        path = http.path.partition("?")[0]
        length = int(http.headers.get("Content-Length") or 0)
        raw = http.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in http.headers.items()}
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        call = ChatCall(http.command, path, headers, body)
        with self._lock:
            self.calls.append(call)
        try:
            self._authenticate(headers)
            if path == MODELS_PATH and http.command == "GET":
                return self._send_json(http, call, 200, self._model_list())
            if path == CHAT_PATH and http.command == "POST":
                if raw and body is None:
                    # [assumed wording] of the API's answer to a body that is not JSON
                    raise _Refused(400, "We could not parse the JSON body of your request. (HINT: This likely means you "
                                   "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)")
                self._check(body)
                return self._complete(http, call, ChatRequest(body))
            # [assumed wording] the API's answer to a path it does not serve (404, invalid_request_error)
            raise _Refused(404, f"Invalid URL ({http.command} {path})")
        except _Refused as refused:
            call.error = refused.error
            self._send_json(http, call, refused.status, {"error": refused.error})
        except _Gone:
            call.disconnected = True
            http.close_connection = True

    def _authenticate(self, headers: Mapping[str, str]) -> None:
        """``Authorization: Bearer <key>`` on every request [API-ERRORS introduction]; 401
        ``invalid_request_error`` without one, ``invalid_api_key`` for a wrong one [API-ERRORS error-codes:
        "401 - Invalid Authentication" / "Incorrect API key provided"; exact messages assumed]."""
        value = headers.get("authorization", "")
        if not value.startswith("Bearer ") or not value[7:].strip():
            raise _Refused(401, "You didn't provide an API key. You need to provide your API key in an Authorization "
                           "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        if self.api_key is not None and value[7:].strip() != self.api_key:
            raise _Refused(401, "Incorrect API key provided.", code="invalid_api_key")

    def _model_list(self) -> dict[str, Any]:
        """``{"object": "list", "data": [{"id", "object": "model", "created", "owned_by"}]}`` [API-MODELS]."""
        ids = self.models if self.models is not None else ("stand-in-model",)
        return {"object": "list", "data": [{"id": m, "object": "model", "created": 1700000000, "owned_by": "stand-in"} for m in ids]}

    # -- the checks --------------------------------------------------------------------------------
    def _check(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise _Refused(400, "The request body must be a JSON object.")  # [assumed wording]
        unknown = sorted(set(body) - REQUEST_PARAMS - self.extra_params)
        if unknown:
            raise _Refused(400, f"Unrecognized request argument supplied: {unknown[0]}")  # [assumed wording]
        # model: required string [API-CREATE "model" Required]
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _Refused(400, "you must provide a model parameter", param="model")
        # messages: required, a non-empty array [API-CREATE "messages" Required]
        messages = body.get("messages")
        if not isinstance(messages, list):
            raise _Refused(400, "Missing required parameter: 'messages'.", param="messages", code="missing_required_parameter")
        if not messages:
            raise _Refused(400, "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty "
                           "array instead.", param="messages", code="empty_array")
        self._check_messages(messages)
        stream = body.get("stream")
        if stream is not None and not isinstance(stream, bool):
            raise _Refused(400, f"Invalid type for 'stream': expected a boolean, but got {type(stream).__name__} instead.",
                           param="stream", code="invalid_type")
        # stream_options: "Only set this when you set stream: true" [API-CREATE stream_options]
        if body.get("stream_options") is not None:
            if not stream:
                raise _Refused(400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                               param="stream_options", code="invalid_value")
            if not isinstance(body["stream_options"], dict):
                raise _Refused(400, "Invalid type for 'stream_options': expected an object.", param="stream_options", code="invalid_type")
        tools = self._check_tools(body.get("tools"))
        self._check_tool_choice(body.get("tool_choice"), tools)
        # n: "How many chat completion choices to generate" [API-CREATE]; this stand-in makes one (a
        # limit of the stand-in, not of the API)
        if body.get("n") not in (None, 1):
            raise _Refused(400, "this stand-in answers n=1 only", param="n")
        # then the model must exist [API-ERRORS "404 - model not found"; wording assumed]
        if self.models is not None and model not in self.models:
            raise _Refused(404, f"The model `{model}` does not exist or you do not have access to it.",
                           param="model", code="model_not_found")

    def _check_messages(self, messages: list[Any]) -> None:
        open_calls: dict[str, int] = {}  # tool_call_id -> index of the assistant message that made it
        for i, message in enumerate(messages):
            where = f"messages[{i}]"
            if not isinstance(message, dict):
                raise _Refused(400, f"Invalid type for '{where}': expected an object.", param=where, code="invalid_type")
            role = message.get("role")
            if role not in ROLES:
                supported = ", ".join(f"'{r}'" for r in ROLES)
                raise _Refused(400, f"Invalid value: {role!r}. Supported values are: {supported}.", param=f"{where}.role",
                               code="invalid_value")
            # A message answering tool calls must come right after them: every open call is answered
            # by ``tool`` messages before anything else [GUIDE-FC; the wording is the API's as widely
            # reported, assumed].
            if open_calls and role != "tool":
                missing = ", ".join(sorted(open_calls))
                raise _Refused(400, "An assistant message with 'tool_calls' must be followed by tool messages responding "
                               f"to each 'tool_call_id'. The following tool_call_ids did not have response messages: {missing}",
                               param="messages", code="invalid_value")
            content = message.get("content")
            if role == "assistant":
                # content "Required unless tool_calls or function_call is specified" [API-CREATE assistant message]
                tool_calls = message.get("tool_calls")
                if content is None and not tool_calls and not message.get("function_call"):
                    raise _Refused(400, f"Missing required parameter: '{where}.content'.", param=f"{where}.content",
                                   code="missing_required_parameter")
                for j, tool_call in enumerate(tool_calls or []):
                    call_id = self._check_assistant_tool_call(tool_call, f"{where}.tool_calls[{j}]")
                    open_calls[call_id] = i
            elif content is None:
                # content is Required for developer, system, user and tool messages [SDK message params]
                raise _Refused(400, f"Missing required parameter: '{where}.content'.", param=f"{where}.content",
                               code="missing_required_parameter")
            if content is not None:
                self._check_content(content, role, f"{where}.content")
            if role == "tool":
                # tool_call_id: Required [SDK chat_completion_tool_message_param.py], and it must answer a
                # call of the assistant message just before [GUIDE-FC]
                tool_call_id = message.get("tool_call_id")
                if not isinstance(tool_call_id, str) or not tool_call_id:
                    raise _Refused(400, f"Missing required parameter: '{where}.tool_call_id'.", param=f"{where}.tool_call_id",
                                   code="missing_required_parameter")
                if tool_call_id not in open_calls:
                    # [assumed wording: the API's message as widely reported, typo included]
                    raise _Refused(400, "Invalid parameter: messages with role 'tool' must be a response to a preceeding "
                                   "message with 'tool_calls'.", param=f"{where}.role")
                del open_calls[tool_call_id]
        if open_calls:
            missing = ", ".join(sorted(open_calls))
            raise _Refused(400, "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                           f"'tool_call_id'. The following tool_call_ids did not have response messages: {missing}",
                           param="messages", code="invalid_value")

    @staticmethod
    def _check_assistant_tool_call(tool_call: Any, where: str) -> str:
        """``{id, type: "function", function: {name, arguments (a string)}}``, all required
        [SDK chat_completion_message_function_tool_call_param.py]."""
        if not isinstance(tool_call, dict):
            raise _Refused(400, f"Invalid type for '{where}': expected an object.", param=where, code="invalid_type")
        for key in ("id", "type", "function"):
            if key not in tool_call:
                raise _Refused(400, f"Missing required parameter: '{where}.{key}'.", param=f"{where}.{key}",
                               code="missing_required_parameter")
        if tool_call["type"] != "function":
            raise _Refused(400, f"Invalid value: {tool_call['type']!r}. Supported values are: 'function' and 'custom'.",
                           param=f"{where}.type", code="invalid_value")
        function = tool_call["function"]
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _Refused(400, f"Missing required parameter: '{where}.function.name'.", param=f"{where}.function.name",
                           code="missing_required_parameter")
        if not isinstance(function.get("arguments"), str):
            raise _Refused(400, f"Invalid type for '{where}.function.arguments': expected a string.",
                           param=f"{where}.function.arguments", code="invalid_type")
        return tool_call["id"]

    @staticmethod
    def _check_content(content: Any, role: str, where: str) -> None:
        """A string, or a list of parts of the types the role allows (PART_TYPES) [SDK message params;
        API-CREATE]; a ``text`` part has a string ``text``, an ``image_url`` part an ``image_url.url``
        ("Either a URL of the image or the base64 encoded image data") with ``detail`` auto/low/high."""
        if isinstance(content, str):
            return
        if not isinstance(content, list):
            raise _Refused(400, f"Invalid type for '{where}': expected one of a string or array of objects.",
                           param=where, code="invalid_type")
        allowed = PART_TYPES[role]
        for k, part in enumerate(content):
            at = f"{where}[{k}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in allowed:
                supported = ", ".join(f"'{a}'" for a in allowed)
                raise _Refused(400, f"Invalid value: {kind!r}. Supported values are: {supported}.", param=f"{at}.type",
                               code="invalid_value")
            if kind == "text" and not isinstance(part.get("text"), str):
                raise _Refused(400, f"Missing required parameter: '{at}.text'.", param=f"{at}.text", code="missing_required_parameter")
            if kind == "image_url":
                image = part.get("image_url")
                if not isinstance(image, dict) or not isinstance(image.get("url"), str) or not image["url"]:
                    raise _Refused(400, f"Missing required parameter: '{at}.image_url.url'.", param=f"{at}.image_url.url",
                                   code="missing_required_parameter")
                if image.get("detail") not in (None, "auto", "low", "high"):
                    raise _Refused(400, f"Invalid value: {image['detail']!r}. Supported values are: 'auto', 'low', and 'high'.",
                                   param=f"{at}.image_url.detail", code="invalid_value")
                url = image["url"]
                if not (url.startswith(("http://", "https://")) or (url.startswith("data:image/") and ";base64," in url)):
                    # [assumed: the API fetches http(s) URLs and decodes base64 data URIs; nothing else is an image]
                    raise _Refused(400, "Invalid image URL: expected an http(s) URL or a base64 data URI.",
                                   param=f"{at}.image_url.url", code="invalid_image_url")

    @staticmethod
    def _check_tools(tools: Any) -> list[str]:
        """``tools``: an array of ``{type: "function", function: {name, description?, parameters?, strict?}}``
        or ``{type: "custom", custom: {name, …}}`` [API-CREATE tools; SDK chat_completion_tool_union_param.py];
        the function name matches FUNCTION_NAME; ``parameters`` is a JSON Schema object.  Returns the names."""
        if tools is None:
            return []
        if not isinstance(tools, list):
            raise _Refused(400, "Invalid type for 'tools': expected an array.", param="tools", code="invalid_type")
        names: list[str] = []
        for i, tool in enumerate(tools):
            where = f"tools[{i}]"
            kind = tool.get("type") if isinstance(tool, dict) else None
            if kind not in ("function", "custom"):
                raise _Refused(400, f"Invalid value: {kind!r}. Supported values are: 'function' and 'custom'.",
                               param=f"{where}.type", code="invalid_value")
            spec = tool.get(kind)
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
                raise _Refused(400, f"Missing required parameter: '{where}.{kind}.name'.", param=f"{where}.{kind}.name",
                               code="missing_required_parameter")
            if not FUNCTION_NAME.match(spec["name"]):
                raise _Refused(400, f"Invalid '{where}.{kind}.name': string does not match pattern. Expected a string that "
                               "matches the pattern '^[a-zA-Z0-9_-]+$'.", param=f"{where}.{kind}.name", code="invalid_value")
            if kind == "function" and spec.get("parameters") is not None and not isinstance(spec["parameters"], dict):
                raise _Refused(400, f"Invalid type for '{where}.function.parameters': expected an object.",
                               param=f"{where}.function.parameters", code="invalid_type")
            names.append(spec["name"])
        return names

    @staticmethod
    def _check_tool_choice(choice: Any, tools: list[str]) -> None:
        """``none`` | ``auto`` | ``required`` | ``{type: "function", function: {name}}`` naming a listed tool;
        anything but ``none`` needs ``tools`` [API-CREATE tool_choice]."""
        if choice is None:
            return
        if isinstance(choice, str):
            if choice not in ("none", "auto", "required"):
                raise _Refused(400, f"Invalid value: {choice!r}. Supported values are: 'none', 'auto', and 'required'.",
                               param="tool_choice", code="invalid_value")
            if choice != "none" and not tools:
                raise _Refused(400, "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
                               param="tool_choice")
            return
        if isinstance(choice, dict) and choice.get("type") == "function":
            name = (choice.get("function") or {}).get("name")
            if name not in tools:
                raise _Refused(400, f"Invalid value for 'tool_choice': no function named {name!r} was specified in the "
                               "'tools' parameter.", param="tool_choice")
            return
        if isinstance(choice, dict) and choice.get("type") in ("allowed_tools", "custom"):
            return
        raise _Refused(400, "Invalid value for 'tool_choice'.", param="tool_choice", code="invalid_value")

    # -- answering -----------------------------------------------------------------------------------
    def _next_reply(self, request: ChatRequest) -> Reply:
        if callable(self.script):
            try:
                return self.script(request)
            except Exception as exc:  # a broken script is the test's bug: say so in the answer
                raise _Refused(500, f"the stand-in's script raised {type(exc).__name__}: {exc}", type_="server_error") from exc
        with self._lock:
            turn = self._turn
            self._turn += 1
        if turn >= len(self.script):
            raise _Refused(500, f"the stand-in's script has {len(self.script)} replies; this is request {turn + 1}",
                           type_="server_error")
        return self.script[turn]

    def _complete(self, http: BaseHTTPRequestHandler, call: ChatCall, request: ChatRequest) -> None:
        reply = self._next_reply(request)
        if reply.error is not None:
            status, code, message = reply.error
            kind = "server_error" if status >= 500 else ("rate_limit_error" if status == 429 else "invalid_request_error")
            raise _Refused(status, message, type_=kind, code=code)
        calls = [(tc, tc.id or f"call_{uuid.uuid4().hex[:24]}") for tc in reply.tool_calls]
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:29]}"
        created = int(time.time())
        usage = self._usage(request, reply, calls)
        finish = reply.finish_reason or ("tool_calls" if calls else "stop")
        if not request.stream:
            return self._send_json(http, call, 200, self._completion(request, reply, calls, completion_id, created, usage, finish))
        self._stream(http, call, request, reply, calls, completion_id, created, usage, finish)

    @staticmethod
    def _pieces(value: Union[None, str, Sequence[str]]) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            return re.findall(r"\s*\S+\s*$|\s*\S+", value) or [value]
        return list(value)

    def _usage(self, request: ChatRequest, reply: Reply, calls: list[tuple[ToolCall, str]]) -> dict[str, Any]:
        """``{prompt_tokens, completion_tokens, total_tokens}`` [API-OBJECT usage]; reasoning tokens under
        ``completion_tokens_details.reasoning_tokens``.  Counted as words unless the reply says."""
        if reply.usage is not None:
            usage = {k: int(v) for k, v in reply.usage.items()}
        else:
            prompt = sum(len(json.dumps(m.get("content") or "").split()) for m in request.messages)
            reasoning = len(self._pieces(reply.reasoning))
            completion = len(self._pieces(reply.text)) + reasoning + sum(len(tc.arguments_json().split()) + 1 for tc, _ in calls)
            usage = {"prompt_tokens": prompt, "completion_tokens": completion}
            if reasoning:
                usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}  # type: ignore[assignment]
        usage.setdefault("total_tokens", usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0))
        return usage

    def _completion(self, request: ChatRequest, reply: Reply, calls: list[tuple[ToolCall, str]], completion_id: str,
                    created: int, usage: dict[str, Any], finish: str) -> dict[str, Any]:
        """The ``chat.completion`` object [API-OBJECT]: one choice whose ``message`` has role, content,
        refusal and ``tool_calls`` (``reasoning_content`` too, as DeepSeek/DashScope send it [DEEPSEEK])."""
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(self._pieces(reply.text)) if reply.text is not None else None,
            "refusal": None,
        }
        if reply.reasoning is not None:
            message["reasoning_content"] = "".join(self._pieces(reply.reasoning))
        if calls:
            message["tool_calls"] = [
                {"id": cid, "type": "function", "function": {"name": tc.name, "arguments": tc.arguments_json()}} for tc, cid in calls
            ]
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": request.model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": usage,
        }

    def _chunks(self, request: ChatRequest, reply: Reply, calls: list[tuple[ToolCall, str]], completion_id: str,
                created: int, usage: dict[str, Any], finish: str) -> Iterator[dict[str, Any]]:
        """The stream [API-CHUNK; GUIDE-FC "Streaming"]: every chunk has the same ``id``, ``created`` and
        ``model``, ``object: "chat.completion.chunk"`` and one choice ``{index, delta, logprobs,
        finish_reason}``.  The first delta carries ``role: "assistant"``; reasoning (``reasoning_content``,
        content null [DEEPSEEK]) comes before text; each tool call starts with a delta holding its
        ``index``, ``id``, ``type`` and ``function.name`` with empty ``arguments``, and its arguments follow
        in deltas holding only ``index`` and ``function.arguments``; a last chunk has an empty delta and the
        ``finish_reason``.  With ``stream_options.include_usage`` every chunk has ``usage: null`` and one
        more chunk with ``choices: []`` and the usage follows [API-CREATE stream_options]."""
        include_usage = bool((request.body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish_reason: Optional[str] = None) -> dict[str, Any]:
            frame: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": request.model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            if include_usage:
                frame["usage"] = None
            return frame

        first = True

        def opening(delta: dict[str, Any]) -> dict[str, Any]:
            nonlocal first
            if first:
                first = False
                return {"role": "assistant", **delta}
            return delta

        for piece in self._pieces(reply.reasoning):
            yield chunk(opening({"content": None, "reasoning_content": piece}))
        for piece in self._pieces(reply.text):
            yield chunk(opening({"content": piece}))
        for index, (tool_call, call_id) in enumerate(calls):
            head = {"index": index, "id": call_id, "type": "function", "function": {"name": tool_call.name, "arguments": ""}}
            yield chunk(opening({"content": None, "tool_calls": [head]}))
            arguments = tool_call.arguments_json()
            count = max(1, min(reply.argument_pieces, len(arguments)))
            size = -(-len(arguments) // count) if arguments else 0
            for start in range(0, len(arguments), size or 1):
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments[start:start + size]}}]})
        if first:  # nothing at all to say: still one delta with the role
            yield chunk(opening({"content": ""}))
        yield chunk({}, finish)
        if include_usage:
            yield {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": request.model,
                   "choices": [], "usage": usage}

    def _stream(self, http: BaseHTTPRequestHandler, call: ChatCall, request: ChatRequest, reply: Reply,
                calls: list[tuple[ToolCall, str]], completion_id: str, created: int, usage: dict[str, Any], finish: str) -> None:
        """``text/event-stream``, chunked, one ``data: <json>`` frame per chunk, ``data: [DONE]`` last [API-CHUNK]."""
        call.status = 200
        http.send_response(200)
        http.send_header("Content-Type", "text/event-stream; charset=utf-8")
        http.send_header("Cache-Control", "no-cache")
        http.send_header("Transfer-Encoding", "chunked")
        http.send_header("x-request-id", f"req_{uuid.uuid4().hex}")
        http.end_headers()
        for n, frame in enumerate(self._chunks(request, reply, calls, completion_id, created, usage, finish)):
            if n and reply.hold_after is not None and n == reply.hold_after:
                self._hold()
            elif n and self.chunk_delay:
                time.sleep(self.chunk_delay)
            self._write(http, f"data: {json.dumps(frame, ensure_ascii=False)}\n\n".encode())
            call.chunks.append(frame)
        self._write(http, b"data: [DONE]\n\n")
        call.done = True  # before the body's last chunk: a client that has read the whole body sees it set
        self._write(http, b"", last=True)

    def _hold(self) -> None:
        self.holding.set()
        self._released.wait(timeout=120)

    @staticmethod
    def _write(http: BaseHTTPRequestHandler, data: bytes, last: bool = False) -> None:
        try:
            if data:
                http.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            if last:
                http.wfile.write(b"0\r\n\r\n")
            http.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as exc:
            raise _Gone() from exc

    @staticmethod
    def _send_json(http: BaseHTTPRequestHandler, call: ChatCall, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        call.status = status
        if status == 200 and payload.get("object") == "chat.completion":
            call.answer = payload
        try:
            http.send_response(status)
            http.send_header("Content-Type", "application/json")
            http.send_header("Content-Length", str(len(data)))
            http.send_header("x-request-id", f"req_{uuid.uuid4().hex}")
            http.end_headers()
            http.wfile.write(data)
            http.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            call.disconnected = True


__all__ = [
    "CHAT_PATH", "MODELS_PATH", "ChatCall", "ChatRequest", "OpenAIChatStandIn", "Reply", "Script", "ToolCall",
    "tool_then_answer",
]
