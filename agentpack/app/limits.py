"""What one instance takes on, and the clear answer it gives when a request asks for more.

Every deploy target puts the app on a public URL, so the defaults are set for that: a body
larger than :data:`DEFAULT_MAX_BODY_BYTES` is a 413 before it is read, an instance already
running :data:`DEFAULT_MAX_CONCURRENT_RUNS` runs answers a new one 503 with ``Retry-After``,
and a run that goes on for longer than :data:`DEFAULT_RUN_TIMEOUT_SECONDS` ends ``failed``
with code ``timeout``.  Each is an ``AgentApp`` keyword and an environment variable (so a
deployed artifact can be tuned without a rebuild); ``0`` turns a limit off.  docs/limits.md
lists them all.

The body limit is an ASGI middleware rather than a check in the routes, so it covers every
route (``/process``, every protocol, ``@app.endpoint``, ``@app.task``) and never holds more
than the limit (and the chunk that passes it) in memory: a ``Content-Length`` over it is refused without reading a byte,
and a chunked body is counted as it arrives and refused the moment it passes the limit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from agentpack.headers import SESSION_HEADER, USER_HEADER
from agentpack.interrupt.base import BackendUnavailable
from agentpack.run.agent_run import debug_from_env as run_debug_from_env

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: 4 MiB: a conversation of hundreds of messages, or a few images as data URIs, fits; a body
#: that would make the process hold tens of MB per request does not.  FC's and API Gateway's
#: own caps on a synchronous request are larger (32 MB / 6 MB on Lambda), so this is the one
#: that answers first, with a message that says what happened.
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
#: Above the 200 sessions FC runs per instance with session affinity and the soak's 500
#: streams, below what an instance's memory and file descriptors allow (each run is a task, an
#: open connection and, with Redis, a lease renewal).
DEFAULT_MAX_CONCURRENT_RUNS = 1000
#: One hour: longer than any interactive turn, short enough that a stuck handler frees its
#: session and its run slot the same day.
DEFAULT_RUN_TIMEOUT_SECONDS = 3600.0
#: What a 503 for a full instance asks the client to wait, in seconds.
RETRY_AFTER_SECONDS = 1

ENV_MAX_BODY_BYTES = "AGENTPACK_MAX_BODY_BYTES"
ENV_MAX_CONCURRENT_RUNS = "AGENTPACK_MAX_CONCURRENT_RUNS"
ENV_RUN_TIMEOUT_SECONDS = "AGENTPACK_RUN_TIMEOUT_SECONDS"
ENV_CORS_ORIGINS = "AGENTPACK_CORS_ORIGINS"


def _from_env(keyword: str, value: float | None, variable: str, default: float, kind: type) -> float | None:
    """The keyword's value, else the environment's, else ``default``; ``0`` means no limit."""
    if value is None:
        raw = os.environ.get(variable, "").strip()
        if not raw:
            value = default
        else:
            try:
                value = kind(raw)
            except ValueError:
                raise ValueError(
                    f"{variable}={raw!r} is not a {'whole ' if kind is int else ''}number; "
                    f"set it to a limit such as {default:g}, or 0 for none"
                ) from None
            keyword = variable
    assert value is not None
    if isinstance(value, bool) or value < 0:
        raise ValueError(f"{keyword} must be a number >= 0 (0 turns the limit off), got {value!r}")
    return value or None


class AppLimits:
    """The limits of one app, resolved from its keywords and the environment (``None``: none).
    (A plain slotted class: a dataclass's generated methods cost every start ~0.5 ms to make.)"""

    __slots__ = ("max_body_bytes", "max_concurrent_runs", "run_timeout_seconds")

    def __init__(
        self, max_body_bytes: int | None, max_concurrent_runs: int | None, run_timeout_seconds: float | None
    ) -> None:
        self.max_body_bytes = max_body_bytes
        self.max_concurrent_runs = max_concurrent_runs
        self.run_timeout_seconds = run_timeout_seconds

    def __repr__(self) -> str:
        return (
            f"AppLimits(max_body_bytes={self.max_body_bytes!r}, max_concurrent_runs={self.max_concurrent_runs!r}, "
            f"run_timeout_seconds={self.run_timeout_seconds!r})"
        )

    @classmethod
    def resolve(
        cls, max_body_bytes: int | None, max_concurrent_runs: int | None, run_timeout_seconds: float | None
    ) -> AppLimits:
        body = _from_env("max_body_bytes", max_body_bytes, ENV_MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES, int)
        runs = _from_env(
            "max_concurrent_runs", max_concurrent_runs, ENV_MAX_CONCURRENT_RUNS, DEFAULT_MAX_CONCURRENT_RUNS, int
        )
        timeout = _from_env(
            "run_timeout_seconds", run_timeout_seconds, ENV_RUN_TIMEOUT_SECONDS, DEFAULT_RUN_TIMEOUT_SECONDS, float
        )
        return cls(
            None if body is None else int(body),
            None if runs is None else int(runs),
            None if timeout is None else timeout,
        )


def debug_from_env(debug: bool) -> bool:
    """``AgentApp(debug=True)`` or ``AGENTPACK_DEBUG=1``: failed events then carry the exception."""
    return debug or run_debug_from_env()


class RunsFull(BackendUnavailable):
    """The instance already runs its ``max_concurrent_runs``: a 503 with ``Retry-After``.

    A subclass of :class:`BackendUnavailable` because every front-end already answers that
    as "cannot take this run now" (503, a failed A2A task), which is what a full instance is.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(f"this instance is already running its limit of {limit} runs; retry in {RETRY_AFTER_SECONDS}s")
        self.retry_after = RETRY_AFTER_SECONDS


class RunSlots:
    """Counts the runs open on this instance against ``max_concurrent_runs``."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.active = 0

    def take(self) -> None:
        """Take a slot, or raise :class:`RunsFull`."""
        if self.limit is not None and self.active >= self.limit:
            raise RunsFull(self.limit)
        self.active += 1

    def give_back(self) -> None:
        self.active -= 1


def too_large_body(limit: int) -> bytes:
    return json.dumps(
        {"detail": f"the request body is larger than this server's limit of {limit} bytes; send a smaller body"}
    ).encode()


class BodyLimit:
    """ASGI middleware: a 413 for a request body over ``max_bytes``, holding at most that much
    plus the one chunk the server hands over as the body passes it.

    A ``Content-Length`` over the limit is answered before the app runs, one within it is let
    through as it is.  Otherwise (a chunked body) the body is counted as the app reads it; once
    it passes the limit, the read fails (the app's answer to that failure is dropped) and the
    client gets the 413 instead.  A response the app had already started before that is left
    alone.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    break  # the server refuses a malformed length itself
                if declared > limit:
                    await self._refuse(send)
                    return
                # Within the limit: HTTP/1.1 framing (the server's, the gateway's in front of an
                # adapter) delivers exactly this many bytes, so nothing needs counting -- and a
                # stream's every event is spared the wrapped send.
                await self.app(scope, receive, send)
                return
        received = 0
        exceeded = False
        started = False

        async def counted() -> Message:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge(limit)
            return message

        async def answer(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the app's answer to the failed read: the 413 below replaces it
            started = True
            await send(message)

        try:
            await self.app(scope, counted, answer)
        except Exception:
            if not exceeded or started:
                raise
        if exceeded and not started:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = too_large_body(self.max_bytes)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),  # the rest of the body is never read
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Exception):
    """Raised into the app when the body it reads passes the limit (the app answers nothing)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit} bytes")


def check_cors(origins: list[str] | None, allow_credentials: bool) -> list[str] | None:
    """The origins to allow (keyword, else ``AGENTPACK_CORS_ORIGINS``, comma-separated), refusing
    a wildcard together with credentials: that lets any web page act with a user's cookies."""
    if origins is None:
        raw = os.environ.get(ENV_CORS_ORIGINS, "").strip()
        origins = [o.strip() for o in raw.split(",") if o.strip()] if raw else None
    if isinstance(origins, str):
        raise ValueError(f"cors_origins must be a list of origins, e.g. [{origins!r}], not a string")
    if not origins:
        if allow_credentials:
            raise ValueError("cors_allow_credentials=True needs cors_origins=[...], the origins allowed")
        return None
    if allow_credentials and "*" in origins:
        raise ValueError(
            'cors_origins=["*"] together with cors_allow_credentials=True would let any web page call this '
            "app with its users' credentials; list the origins allowed, or turn credentials off"
        )
    return list(origins)


def install(app: Any, limits: AppLimits, cors_origins: list[str] | None, cors_allow_credentials: bool) -> None:
    """Add the body limit and, when origins are given, CORS to ``app`` (CORS is off otherwise:
    a browser then refuses every cross-origin call, as a same-origin API wants)."""
    if limits.max_body_bytes is not None:
        app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    if cors_origins:  # added last, so it is outermost: a 413 carries its headers too
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors_origins,
            allow_credentials=cors_allow_credentials,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=[SESSION_HEADER, USER_HEADER, "Retry-After"],
        )
