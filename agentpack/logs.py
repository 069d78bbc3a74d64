"""Logs you can follow: every line of a request carries its request id, and every line of a
run its session and user, as JSON lines for a platform's log service or as readable text
in a terminal.

The ids travel in one context variable, :data:`_context`, set twice per run and read only when
a line is written — nothing is done per event:

- :class:`RequestIds`, a pure ASGI middleware in front of the app, binds the request id when a
  request arrives: the one a platform adapter bound already (FC's ``x-fc-request-id``), else
  the Lambda invocation's (``scope["aws.context"]``), else a sane incoming ``X-Request-Id``,
  else a new one; it is answered back in ``X-Request-Id``;
- where a run opens (``AppRuns.open_run``), :func:`bind_run` adds the session and user.  The
  run's task and the user's handler are started after that, so they inherit it (asyncio
  copies the context into every task), and their ``logging`` calls carry the ids too.

:class:`RunContextFilter` copies the ids onto each record; :class:`JsonFormatter` and
:class:`TextFormatter` write them.  :func:`log_config` is the one ``logging`` configuration
(uvicorn's loggers, agentpack's and the root logger); :func:`log_format` picks JSON when the
stream is not a terminal, unless ``AGENTPACK_LOG_FORMAT`` says otherwise.

Standard library only, and imported by the server entry and the adapters as well as the app.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import IO, Any

#: ``json`` or ``text``; unset, JSON when the stream is not a terminal (docs/logs.md).
FORMAT_ENV = "AGENTPACK_LOG_FORMAT"
FORMATS = ("json", "text")
#: The header a request id arrives and is answered in.
REQUEST_ID_HEADER = "X-Request-Id"
#: An incoming request id longer than this, or with anything but visible ASCII, is replaced.
MAX_REQUEST_ID = 128

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class LogContext:
    """The ids a log line carries; ``route`` is the path the request came in on (a run's
    "started" line names it)."""

    __slots__ = ("request_id", "route", "session_id", "user_id")

    def __init__(
        self, request_id: str, route: str | None = None, session_id: str | None = None, user_id: str | None = None
    ) -> None:
        self.request_id = request_id
        self.route = route
        self.session_id = session_id
        self.user_id = user_id


_context: contextvars.ContextVar[LogContext | None] = contextvars.ContextVar("agentpack_log_context", default=None)


def current() -> LogContext | None:
    """The ids of the request or run being handled (``None`` outside one)."""
    return _context.get()


def new_request_id() -> str:
    """32 hex digits, as FC's adapter makes up when the platform sent none."""
    return os.urandom(16).hex()


def sane_request_id(value: str | None) -> str | None:
    """``value`` when it can go into a log line and a header as it is: 1 to
    :data:`MAX_REQUEST_ID` visible ASCII characters; else ``None``."""
    if not value or len(value) > MAX_REQUEST_ID:
        return None
    if not value.isascii() or not value.isprintable() or " " in value:
        return None
    return value


def bind_request(request_id: str, route: str | None = None) -> contextvars.Token[LogContext | None]:
    """Make ``request_id`` the one every line logged from here on carries (a platform adapter
    binds the platform's id this way before the app sees the request); reset with the token."""
    return _context.set(LogContext(request_id, route))


def reset(token: contextvars.Token[LogContext | None]) -> None:
    """Undo :func:`bind_request` (in the context it was bound in)."""
    _context.reset(token)


def bind_run(session_id: str | None, user_id: str | None) -> LogContext:
    """Add a run's session and user to the current ids (a run opened outside any request, a
    background job, gets a request id of its own).  Not reset: the context it is set in is the
    request's, or the job's task's, and ends with it."""
    outer = _context.get()
    if outer is None:
        bound = LogContext(new_request_id(), None, session_id, user_id)
    else:
        bound = LogContext(outer.request_id, outer.route, session_id, user_id)
    _context.set(bound)
    return bound


def _lambda_request_id(scope: Scope) -> str | None:
    context = scope.get("aws.context")  # Mangum puts the invocation's context object here
    request_id = getattr(context, "aws_request_id", None) if context is not None else None
    return request_id if isinstance(request_id, str) and request_id else None


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            return sane_request_id(value.decode("latin-1"))
    return None


class RequestIds:
    """ASGI middleware: binds each HTTP request's id for its log lines and answers it in
    ``X-Request-Id`` (unless the app set that header itself).

    The id is the one a platform adapter bound already, else the Lambda invocation's, else a
    sane incoming ``X-Request-Id`` (so a caller's or a gateway's id joins its logs to ours),
    else a new one.  The binding is undone when the request ends normally; after an exception
    it is left for the server's own "Exception in ASGI application" line, and ends with the
    request's task."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        outer = _context.get()
        if outer is not None:
            request_id = outer.request_id
        else:
            request_id = _lambda_request_id(scope) or _incoming_request_id(scope) or new_request_id()
        token = _context.set(LogContext(request_id, scope.get("path")))
        header = request_id.encode("latin-1", "replace")

        # A plain function handing back ``send``'s own awaitable: a body chunk costs one call,
        # no coroutine of its own (a stream sends one per event).
        def send_with_id(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if not any(name.lower() == b"x-request-id" for name, _ in headers):
                    headers.append((b"x-request-id", header))
                    message = {**message, "headers": headers}
            return send(message)

        await self.app(scope, receive, send_with_id)
        _context.reset(token)


class RunContextFilter(logging.Filter):
    """Gives every record ``request_id``, ``session_id`` and ``user_id`` (``None`` outside a
    request or run), whichever logger wrote it: agentpack's, uvicorn's or the app's."""

    def filter(self, record: logging.LogRecord) -> bool:
        bound = _context.get()
        if bound is None:
            record.request_id = record.session_id = record.user_id = None
        else:
            record.request_id, record.session_id, record.user_id = bound.request_id, bound.session_id, bound.user_id
        return True


#: What every LogRecord has; anything else on a record came from ``extra=`` and is written as a field.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "request_id",
    "session_id",
    "user_id",
    "color_message",  # uvicorn's colored copy of its message
    "taskName",
}
#: How many attributes a record has with nothing added but the ids (and uvicorn's color_message).
_PLAIN = len(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) + 3

#: Characters some line readers take as line ends (str.splitlines, JavaScript): escaped, so one
#: record stays one line for every reader.
_LINE_BREAKS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}


def _one_line(text: str) -> str:
    for char, escaped in _LINE_BREAKS.items():
        if char in text:
            text = text.replace(char, escaped)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ms), ``level``, ``logger``, ``message``, the
    ids, the fields a line added (``extra=``: a run's ``status``, ``duration_ms``…) and, for an
    exception, ``exception`` (the traceback as text)."""

    #: one encoder for every line: ``json.dumps`` with options builds a new one per call
    _encoder = json.JSONEncoder(ensure_ascii=False, default=str)
    #: the last whole second formatted, and its text (lines come many to a second)
    _second: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        if self._second[0] != seconds:
            self._second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
        line: dict[str, Any] = {
            "time": f"{self._second[1]}.{int((record.created - seconds) * 1000):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__
        if fields.get("request_id") is not None:
            line["request_id"] = fields["request_id"]
            if fields.get("session_id") is not None:
                line["session_id"], line["user_id"] = fields["session_id"], fields.get("user_id")
        if len(fields) > _PLAIN:  # ``extra=`` added fields (in the order given)
            for name, value in fields.items():
                if name not in _STANDARD and not name.startswith("_") and name not in line:
                    line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return _one_line(self._encoder.encode(line))


_COLORS = {"DEBUG": "\x1b[34m", "INFO": "\x1b[32m", "WARNING": "\x1b[33m", "ERROR": "\x1b[31m", "CRITICAL": "\x1b[91m"}


class TextFormatter(logging.Formatter):
    """uvicorn's look (``INFO:     message``) with the ids: ``[request id]`` before the message,
    ``(session …, user …)`` after it, while a run is on."""

    def __init__(self, use_colors: bool = False) -> None:
        super().__init__()
        self.use_colors = use_colors

    def format(self, record: logging.LogRecord) -> str:
        level = record.levelname
        prefix = f"{level}:".ljust(9)
        if self.use_colors and level in _COLORS:
            prefix = f"{_COLORS[level]}{level}\x1b[0m:".ljust(9 + len(_COLORS[level]) + 4)
        text = record.getMessage()
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            text = f"[{request_id}] {text}"
        session_id = getattr(record, "session_id", None)
        if session_id is not None:
            text = f"{text} (session {session_id}, user {getattr(record, 'user_id', None)})"
        line = f"{prefix} {text}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return line


_warned: list[str] = []


def log_format(stream: IO[str] | Any) -> str:
    """``json`` or ``text`` for lines written to ``stream``: ``AGENTPACK_LOG_FORMAT`` when set,
    else text on a terminal and JSON anywhere else (a pipe, a file, a platform's log agent).

    A value that names no format is reported once on stderr and ignored: a server should not
    fail to start, on a platform, over how it writes its logs."""
    chosen = os.environ.get(FORMAT_ENV, "").strip().lower()
    if chosen in FORMATS:
        return chosen
    if chosen and chosen not in _warned:
        _warned.append(chosen)
        print(f"agentpack: {FORMAT_ENV}={chosen!r} is not a log format (json or text); ignored", file=sys.stderr)
    isatty = getattr(stream, "isatty", None)
    try:
        return "text" if isatty is not None and isatty() else "json"
    except ValueError:  # a closed stream
        return "json"


def _formatter(stream: IO[str] | Any) -> dict[str, Any]:
    if log_format(stream) == "json":
        return {"()": JsonFormatter}
    isatty = getattr(stream, "isatty", None)
    return {"()": TextFormatter, "use_colors": bool(isatty is not None and isatty())}


def _level(log_level: str) -> str:
    level = log_level.upper()
    return level if level in ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG") else "INFO"


def capture_warnings() -> None:
    """A library's warning is a log line too (``py.warnings``): one JSON line on a platform,
    not raw text on stderr between them."""
    logging.captureWarnings(True)


def log_config(log_level: str = "info", root: bool | None = None) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` configuration a server runs with (uvicorn takes it as
    ``log_config``): uvicorn's loggers as uvicorn sets them (its own lines on stderr, access
    lines on stdout), agentpack's beside them, and — unless the app configured the root logger
    already (``root=None`` looks) — the root logger, so the app's own ``logging`` calls are
    written the same way, with the ids.  Every handler has :class:`RunContextFilter`.  Python's
    warnings are routed to logging here too (see :func:`capture_warnings`), for every server
    configured with this: ``agentpack run``/``serve``, ``app.run()``, the platform adapters."""
    capture_warnings()
    level = _level(log_level)
    if root is None:
        root = not logging.getLogger().handlers
    config: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"run_context": {"()": RunContextFilter}},
        "formatters": {"default": _formatter(sys.stderr), "access": _formatter(sys.stdout)},
        "handlers": {
            "default": {
                "formatter": "default",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "filters": ["run_context"],
            },
            "access": {
                "formatter": "access",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "filters": ["run_context"],
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
            "agentpack": {"handlers": ["default"], "level": level, "propagate": False},
        },
    }
    if root:
        config["root"] = {"handlers": ["default"], "level": level}
    return config


class _LineEnded(logging.Formatter):
    """``formatter``'s line with a line end: a runtime client's handler (awslambdaric's, on its
    plain stdout sink) writes what it is given as it is, so its own format ended in one."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__()
        self.inner = formatter

    def format(self, record: logging.LogRecord) -> str:
        return self.inner.format(record) + "\n"


def configure_root(log_level: str = "info", stream: IO[str] | None = None) -> None:
    """For a process no uvicorn configures (Lambda's runtimes): the root logger's handlers —
    the runtime client's own, or a new one on ``stream`` (stderr) if there is none — write
    this module's format with the ids, and the root logger takes ``log_level``."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(stream or sys.stderr))
    for handler in root.handlers:
        target = getattr(handler, "stream", None) or stream or sys.stderr
        formatter: logging.Formatter
        if log_format(target) == "json":
            formatter = JsonFormatter()
        else:
            isatty = getattr(target, "isatty", None)
            formatter = TextFormatter(use_colors=bool(isatty is not None and isatty()))
        previous = getattr(handler.formatter, "_fmt", None) or ""
        handler.setFormatter(_LineEnded(formatter) if previous.endswith("\n") else formatter)
        if not any(isinstance(f, RunContextFilter) for f in handler.filters):
            handler.addFilter(RunContextFilter())
    root.setLevel(_level(log_level))
    capture_warnings()


__all__ = [
    "FORMAT_ENV",
    "REQUEST_ID_HEADER",
    "JsonFormatter",
    "LogContext",
    "RequestIds",
    "RunContextFilter",
    "TextFormatter",
    "bind_request",
    "bind_run",
    "reset",
    "configure_root",
    "current",
    "log_config",
    "log_format",
    "new_request_id",
    "sane_request_id",
]
