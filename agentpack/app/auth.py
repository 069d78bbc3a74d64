"""Who may call the agent: API keys (bearer tokens) and a pluggable verifier.

Off unless asked for — ``AgentApp(api_keys=[...])``, ``AGENTPACK_API_KEYS`` (comma-separated)
or ``AgentApp(auth=verifier)`` — so the local quick start stays as it is and an app without
auth pays nothing: no middleware is installed.

When on, one ASGI middleware guards every route of the app, whoever added it (the agent's
routes, ``@app.endpoint``/``@app.task``, the protocol front-ends, the user's own FastAPI
routes): it is *closed by default*, so a route added tomorrow is protected without anyone
remembering to.  A route is open only when it was marked open here — the probes, the docs
pages, the A2A card and the chat page's HTML (whose front-ends name them in ``public_paths()``),
and routes declared with ``auth=False``.  To tell which route a request reaches, the guard asks
the routes in the router's own order (``route.matches``), so it agrees with the router, root
paths included; a method the open route does not serve stays protected.

A request is let through when its ``Authorization: Bearer <key>`` (or ``X-Agentpack-Api-Key:
<key>``, for when a platform's request signing owns ``Authorization``) equals one of the keys —
compared with :func:`hmac.compare_digest` against every key, so the time taken does not tell
which key came close — or when the verifier returns a principal.  Otherwise: 401 with
``WWW-Authenticate: Bearer``.  The principal is in ``request.state.principal`` and, anywhere in
the request's code (the query handler included), :func:`current_principal`.  Keys and tokens
are never logged: nothing here formats a header, and a verifier's exception is reported by its
type only.  docs/auth.md is the user's guide.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import logging
import operator
import os
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger("agentpack.auth")

#: Comma-separated API keys (``agentpack deploy`` may set it as the platform's secret).
KEYS_ENV = "AGENTPACK_API_KEYS"
#: Where a key may travel when ``Authorization`` is taken by a platform's request signing.
KEY_HEADER = "X-Agentpack-Api-Key"

#: ``auth=``: given the request, returns the principal (any value but None) or None / raises.
Verifier = Callable[[Request], Any]

_principal: ContextVar[Any] = ContextVar("agentpack_principal", default=None)


def current_principal() -> Any:
    """The authenticated principal of the request being served (None without auth)."""
    return _principal.get()


def principal_id(principal: Any) -> str:
    """The principal as a user id: itself if text, else its ``sub`` (key or attribute), else ``str()``."""
    if isinstance(principal, str):
        return principal
    sub = principal.get("sub") if isinstance(principal, Mapping) else getattr(principal, "sub", None)
    return str(sub if sub is not None else principal)


def owner_key(principal: Any) -> str | None:
    """Who a stored result belongs to, as the stores keep it (None: nobody, without auth).

    The principal's id (:func:`principal_id`: its ``sub`` for JWT claims, so a renewed token
    still reads what the old one submitted) hashed with SHA-256, because stores such as a
    Celery result backend keep it in the clear and a user name or e-mail has no business there."""
    if principal is None:
        return None
    return hashlib.sha256(b"agentpack-owner\0" + principal_id(principal).encode("utf-8", "surrogatepass")).hexdigest()


def _keys_from(api_keys: Sequence[str] | Mapping[str, str] | None, environ: Mapping[str, str]) -> dict[str, bytes]:
    """principal -> key: a mapping's names, else ``key-1``, ``key-2``… in order (the environment's last)."""
    if isinstance(api_keys, str):
        raise TypeError("AgentApp(api_keys=...) takes a list of keys (or {principal: key}), not one string")
    named: list[tuple[str | None, Any]] = (
        list(api_keys.items()) if isinstance(api_keys, Mapping) else [(None, k) for k in (api_keys or ())]
    )
    named += [(None, k.strip()) for k in environ.get(KEYS_ENV, "").split(",") if k.strip()]
    keys: dict[str, bytes] = {}
    for number, (name, key) in enumerate(named, start=1):
        if not isinstance(key, str) or not key or "," in key or any(c.isspace() for c in key):
            raise ValueError(
                f"API key number {number} is empty or has spaces or commas; use keys such as "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'` prints"
            )
        keys[str(name) if name is not None else f"key-{number}"] = key.encode()
    return keys


class Authentication:
    """The app's auth settings and the open routes; :meth:`middleware` is what enforces them."""

    def __init__(
        self,
        api_keys: Sequence[str] | Mapping[str, str] | None = None,
        verifier: Verifier | None = None,
        bind_user_to_principal: bool = False,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if verifier is not None and not callable(verifier):
            raise TypeError(f"AgentApp(auth=...) must be a callable taking the request, got {type(verifier).__name__}")
        self._keys = _keys_from(api_keys, os.environ if environ is None else environ)
        self._verifier = verifier
        self.enabled = bool(self._keys) or verifier is not None
        if bind_user_to_principal and not self.enabled:
            raise ValueError(
                "bind_user_to_principal=True needs authentication: pass api_keys=, auth= or set AGENTPACK_API_KEYS"
            )
        self.bind_user = bind_user_to_principal
        self._open: dict[int, weakref.ref[BaseRoute]] = {}
        self._seen: list[BaseRoute] = []  # the routes self._decided was learnt from
        self._decided: dict[tuple[str, str, str], bool] = {}

    # -- which routes are open ---------------------------------------------------------------
    def mark_open(self, routes: Iterable[BaseRoute]) -> None:
        """Serve these routes to anyone (probes, docs, the card, ``auth=False`` routes)."""
        for route in routes:
            self._open[id(route)] = weakref.ref(route)
        self._decided = {}

    def is_open(self, route: BaseRoute) -> bool:
        ref = self._open.get(id(route))
        return ref is not None and ref() is route

    def reaches_open_route(self, routes: Sequence[BaseRoute], scope: Scope) -> bool:
        """Whether the route the router will pick for ``scope`` is open (the first full match).

        Asking every route costs ~0.5 us each, so the answer for a path without parameters
        (``/process``, ``/a2a``) is remembered while the route list holds the very same route
        objects (kept referenced, so no id is reused) and the open set is unchanged."""
        if len(routes) != len(self._seen) or not all(map(operator.is_, routes, self._seen)):
            self._seen, self._decided = list(routes), {}
        key = (scope["method"] if scope["type"] == "http" else "", scope.get("root_path", ""), scope["path"])
        decided = self._decided.get(key)
        if decided is not None:
            return decided
        for route in routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                is_open = self.is_open(route)
                if not child.get("path_params") and getattr(route, "methods", None) and len(self._decided) < 512:
                    self._decided[key] = is_open
                return is_open
        return False  # a 404 or 405 answers only after auth: a stranger learns no paths

    # -- who is calling ----------------------------------------------------------------------
    def _key_principal(self, token: bytes) -> str | None:
        found = None
        for principal, key in self._keys.items():  # every key, every time: no early exit
            if hmac.compare_digest(token, key):
                found = principal
        return found

    async def authenticate(self, scope: Scope) -> Any:
        """The principal, or None.  A verifier's ``HTTPException`` goes through as raised."""
        token = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                token = value[7:].strip()
            elif name == b"x-agentpack-api-key" and not token:
                token = value.strip()
        if token and self._keys:
            principal = self._key_principal(token)
            if principal is not None:
                return principal
        if self._verifier is None:
            return None
        try:
            principal = self._verifier(Request(scope))
            if inspect.isawaitable(principal):
                principal = await principal
        except HTTPException:
            raise
        except Exception as exc:  # a rejected token: 401; by type only, the message may quote it
            logger.info("the auth verifier refused a request: %s", type(exc).__name__)
            return None
        return principal

    def card_security(self) -> dict[str, Any] | None:
        """What the A2A card declares: HTTP bearer (RFC 6750), required on every call."""
        if not self.enabled:
            return None
        scheme = {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <API key or token>"}
        return {"security_schemes": {"bearer": scheme}, "security": [{"bearer": []}]}

    def owner(self) -> str | None:
        """The current request's :func:`owner_key`: what results read by id are bound to
        (background tasks, A2A tasks); None without auth or on a route opened with ``auth=False``."""
        return owner_key(current_principal()) if self.enabled else None

    # -- a run's user ------------------------------------------------------------------------
    def bound_user(self, user_id: str | None) -> str | None:
        """The user id a request may run or stop as: with ``bind_user_to_principal``, the
        principal's (filled in when missing); raises :class:`NotYourSession` for another's."""
        principal = current_principal()
        if not self.bind_user or principal is None:
            return user_id
        own = principal_id(principal)
        if user_id is not None and user_id != own:
            raise NotYourSession(
                f"user_id {user_id!r} is not the authenticated principal's: this app binds a run's user_id to "
                f"who is calling (bind_user_to_principal=True); leave user_id out or send {own!r}"
            )
        return own

    def bind_request(self, request: Any) -> Any:
        """An ``AgentRequest`` with its ``user_id`` bound as :meth:`bound_user` says."""
        user_id = self.bound_user(request.user_id)
        return request if user_id == request.user_id else request.model_copy(update={"user_id": user_id})


class NotYourSession(PermissionError):
    """A run or stop named another principal's user id (403)."""


async def not_your_session(request: Request, exc: Exception) -> Response:
    """The app's answer to :class:`NotYourSession`: 403 saying what to send instead."""
    return JSONResponse({"detail": str(exc)}, status_code=403)


class AuthMiddleware:
    """Pure ASGI, so a stream passes through untouched; see the module doc."""

    def __init__(self, app: ASGIApp, auth: Authentication, router: Any) -> None:
        self.app, self.auth, self.router = app, auth, router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.auth.reaches_open_route(self.router.routes, scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http" and scope["method"] == "OPTIONS" and _is_preflight(scope):
            await self.app(scope, receive, send)  # a CORS preflight carries no credentials by design
            return
        try:
            principal = await self.auth.authenticate(scope)
        except HTTPException as exc:
            await _refuse(scope, receive, send, exc.status_code, str(exc.detail), exc.headers)
            return
        if principal is None:
            wrong = any(name in (b"authorization", b"x-agentpack-api-key") for name, _ in scope.get("headers", ()))
            challenge = 'Bearer realm="agentpack", error="invalid_token"' if wrong else 'Bearer realm="agentpack"'
            detail = (
                "the API key or token is not valid"
                if wrong
                else "this route needs an API key: send Authorization: Bearer <key>"
            )
            await _refuse(scope, receive, send, 401, detail, {"WWW-Authenticate": challenge})
            return
        scope.setdefault("state", {})["principal"] = principal
        token = _principal.set(principal)
        try:
            await self.app(scope, receive, send)
        finally:
            _principal.reset(token)


def _is_preflight(scope: Scope) -> bool:
    return any(name == b"access-control-request-method" for name, _ in scope.get("headers", ()))


async def _refuse(
    scope: Scope, receive: Receive, send: Send, status: int, detail: str, headers: Mapping[str, str] | None
) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
        return
    await JSONResponse({"detail": detail}, status_code=status, headers=dict(headers or {}))(scope, receive, send)


__all__ = [
    "KEYS_ENV",
    "KEY_HEADER",
    "AuthMiddleware",
    "Authentication",
    "NotYourSession",
    "Verifier",
    "current_principal",
    "not_your_session",
    "owner_key",
    "principal_id",
]
