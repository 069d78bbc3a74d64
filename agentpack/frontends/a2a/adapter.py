"""A2A for an agent: the card at ``/.well-known/agent-card.json`` and JSON-RPC at ``/a2a``,
speaking A2A 1.0 and 0.3 on the same endpoint (a2a-sdk 1.x with its 0.3 compatibility).

``A2AFastAPIDefaultAdapter`` keeps AgentScope Runtime's constructor and methods
(``add_endpoint(app, func)``, ``get_agent_card(app)``); what differs is in
docs/migrating.md — chiefly that the card says it streams and where the agent really answers,
that tasks are real (streamed, gettable, cancelable from any instance), and that
``task_timeout`` / ``task_event_timeout`` are enforced.

This module does not import the SDK: the routes build the server on their first request
(:mod:`agentpack.frontends.a2a.server`), or at start-up when the app configured A2A, so an app
that never speaks A2A never loads it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from agentpack._aio import call, wait_bounded
from agentpack.frontends.a2a.config import (
    A2A_JSON_RPC_URL,
    DEFAULT_TASK_EVENT_TIMEOUT,
    DEFAULT_TASK_TIMEOUT,
    DEFAULT_TRANSPORT,
    DEFAULT_WELLKNOWN_PATH,
    PREVIOUS_WELLKNOWN_PATH,
    A2ARegistry,
    A2ATransportsProperties,
)
from agentpack.frontends.base import ProtocolAdapter, run_source
from agentpack.run.agent_run import RunLimits
from agentpack.run.json_response import json_response
from agentpack.run.stream import CLEANUP_GRACE

logger = logging.getLogger("agentpack.a2a")

#: Seconds a registry may take to register or deregister before it is given up on.
REGISTRY_TIMEOUT = 15.0
#: How long finished tasks stay readable by default (AgentApp's ``task_result_seconds``).
DEFAULT_RETENTION = 3600.0


def _limit(value: int | None, default: int) -> float | None:
    """``None`` means the default (as upstream reads it); ``0`` means no limit."""
    if value is None:
        return float(default)
    return float(value) if value > 0 else None


class A2AFastAPIDefaultAdapter(ProtocolAdapter):
    """Serves A2A for the agent; see the module doc.  ``json_rpc_path`` (keyword) moves the
    JSON-RPC endpoint from ``/a2a``."""

    def __init__(self, agent_name: str, agent_description: str, a2a_config: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._json_rpc_path: str = kwargs.get("json_rpc_path", A2A_JSON_RPC_URL)
        #: whether the app configured A2A (else the defaults serve, and no config model is built)
        self.configured = a2a_config is not None
        self._config: Any = None
        self._agent_name, self._agent_description = agent_name, agent_description
        self._host: str | None = None
        self._port: int | None = None
        self._registry: list[A2ARegistry] = []
        self._task_timeout: float | None = float(DEFAULT_TASK_TIMEOUT)
        self._task_event_timeout: float | None = float(DEFAULT_TASK_EVENT_TIMEOUT)
        self._wellknown_path = DEFAULT_WELLKNOWN_PATH
        if a2a_config is not None:
            from agentpack.frontends.a2a.runtime_config import AgentCardWithRuntimeConfig

            self._config = config = AgentCardWithRuntimeConfig.coerce(a2a_config)
            fields = self._card_fields()
            if fields.get("name") is not None:
                self._agent_name = fields["name"]
            if fields.get("description") is not None:
                self._agent_description = fields["description"]
            self._host, self._port = config.host, config.port
            registry = config.registry  # a list once validated; typed as given
            self._registry = [registry] if isinstance(registry, A2ARegistry) else list(registry or [])
            self._task_timeout = _limit(config.task_timeout, DEFAULT_TASK_TIMEOUT)
            self._task_event_timeout = _limit(config.task_event_timeout, DEFAULT_TASK_EVENT_TIMEOUT)
            self._wellknown_path = config.wellknown_path or DEFAULT_WELLKNOWN_PATH
        self._server: Any = None
        self._source: Any = None
        self._retention = DEFAULT_RETENTION
        self._registration: asyncio.Task[None] | None = None
        self._registered: list[tuple[A2ARegistry, Any, Any]] = []

    # -- the card --------------------------------------------------------------------------------
    @property
    def _a2a_config(self) -> Any:
        """The ``AgentCardWithRuntimeConfig`` (the defaults' is built on first use)."""
        if self._config is None:
            from agentpack.frontends.a2a.runtime_config import AgentCardWithRuntimeConfig

            self._config = AgentCardWithRuntimeConfig()
        return self._config

    def _card_fields(self) -> dict[str, Any]:
        card = self._a2a_config.agent_card
        if card is None:
            return {}
        if isinstance(card, dict):
            return {"name": card.get("name"), "description": card.get("description")}
        return {"name": getattr(card, "name", None), "description": getattr(card, "description", None)}

    def _url(self, app: Any, request_base: str | None = None, root_path: str | None = None) -> str:
        from agentpack.frontends.a2a.card import endpoint_url

        root = root_path if root_path is not None else getattr(app, "root_path", "") or ""
        return endpoint_url(self._a2a_config, self._json_rpc_path, root, request_base)

    def get_agent_card(self, app: Any = None, request_base: str | None = None, root_path: str | None = None) -> Any:
        """The card, as an a2a-sdk 0.3 ``AgentCard`` (the model AgentScope Runtime returns); the
        card served at the well-known path is its A2A 1.0 form with both protocol lines."""
        from agentpack.frontends.a2a.card import compat_card

        url = self._url(app, request_base, root_path)
        authentication = getattr(app, "authentication", None)  # an AgentApp's, when it asks for keys
        security = authentication.card_security() if authentication is not None else None
        return compat_card(self._a2a_config, self._agent_name, self._agent_description, url, security)

    def _served_card(self, app: Any, where: tuple[str | None, str | None]) -> dict[str, Any]:
        from agentpack.frontends.a2a.card import core_card, served_card

        return served_card(core_card(self.get_agent_card(app, *where)))

    def _build_a2a_transports_properties(self, app: Any) -> list[A2ATransportsProperties]:
        """Where the agent answers, for registries."""
        root = (getattr(app, "root_path", "") or "").rstrip("/")
        path = f"{root}/{self._json_rpc_path.lstrip('/')}"
        if self._host is not None:
            parts = urlsplit(self._host if "://" in self._host else f"//{self._host}")
            host, tls = parts.hostname or self._host, parts.scheme == "https"
            return [
                A2ATransportsProperties(
                    host=host, port=self._port, path=path, support_tls=tls, extra={}, transport_type=DEFAULT_TRANSPORT
                )
            ]
        url = urlsplit(self._url(app))
        port = url.port or ({"https": 443, "http": 80}.get(url.scheme) if url.hostname else None)
        return [
            A2ATransportsProperties(
                host=url.hostname,
                port=port,
                path=url.path or path,
                support_tls=url.scheme == "https",
                extra={},
                transport_type=DEFAULT_TRANSPORT,
            )
        ]

    def describe_endpoints(self) -> dict[str, str]:
        return {"a2a": self._json_rpc_path, "agent_card": self._wellknown_path}

    def public_paths(self) -> list[str]:
        """The card's paths: open with authentication on, since the card says how to authenticate."""
        paths = [self._wellknown_path]
        return [*paths, PREVIOUS_WELLKNOWN_PATH] if self._wellknown_path == DEFAULT_WELLKNOWN_PATH else paths

    # -- routes ----------------------------------------------------------------------------------
    def _ensure_server(self, app: Any) -> Any:
        if self._server is None:
            from agentpack.frontends.a2a.server import A2AServer

            limits = RunLimits(total=self._task_timeout, idle=self._task_event_timeout)
            # an AgentApp's auth says who is calling, so each task is shown only to who started it
            owner = getattr(getattr(app, "authentication", None), "owner", None)
            self._server = A2AServer(
                self._source,
                limits,
                self._retention,
                lambda base: self._served_card(app, base),
                owner if callable(owner) else None,
            )
        return self._server

    def add_endpoint(self, app: Any, func: Callable[..., Any], managed_by_app: bool = False, **kwargs: Any) -> Any:
        """Add the card and JSON-RPC routes.  Outside an AgentApp (which registers when it starts
        serving), registries are called now, as AgentScope Runtime does."""
        self._source = run_source(func)
        self._server = None
        self._retention = float(getattr(app, "task_result_seconds", DEFAULT_RETENTION))

        async def agent_card(request: Request) -> Response:
            from agentpack.frontends.a2a.card import request_base

            try:
                server = self._ensure_server(app)
            except ModuleNotFoundError as exc:
                return _missing_sdk(exc)
            base = request_base(request.headers, request.url.scheme, request.scope.get("server"))
            return json_response(server.card((base, request.scope.get("root_path") or None)))

        async def json_rpc(request: Request) -> Response:
            try:
                server = self._ensure_server(app)
            except ModuleNotFoundError as exc:
                return _missing_sdk(exc)
            response: Response = await server.rpc(request)
            return response

        card_paths = [self._wellknown_path]
        if self._wellknown_path == DEFAULT_WELLKNOWN_PATH:
            card_paths.append(PREVIOUS_WELLKNOWN_PATH)
        for path in card_paths:
            app.add_api_route(
                path, agent_card, methods=["GET"], tags=["a2a"], summary="A2A agent card", response_model=None
            )
        app.add_api_route(
            self._json_rpc_path,
            json_rpc,
            methods=["POST"],
            tags=["a2a"],
            summary="A2A JSON-RPC (1.0 and 0.3)",
            response_model=None,
        )
        if self._registry and not managed_by_app:
            card, transports = self.get_agent_card(app), self._build_a2a_transports_properties(app)
            for registry in self._registry:
                try:
                    _run_now_or_soon(registry.register(agent_card=card, a2a_transports_properties=transports))
                except Exception:
                    logger.warning(
                        "[A2A] registering with %s failed; the agent serves anyway",
                        registry.registry_name(),
                        exc_info=True,
                    )
        return app

    # -- lifespan (in an AgentApp) ---------------------------------------------------------------
    async def startup(self, app: Any) -> None:
        if self.configured or self._registry:
            self._ensure_server(app)  # the app uses A2A: pay the SDK's import now, not on a request
        if self._registry:
            self._registration = asyncio.get_running_loop().create_task(
                self._register(app), name="agentpack-a2a-registration"
            )

    async def _register(self, app: Any) -> None:
        card, transports = self.get_agent_card(app), self._build_a2a_transports_properties(app)
        for registry in self._registry:
            name = registry.registry_name()
            try:
                done, _ = await wait_bounded(call(registry.register, card, transports), REGISTRY_TIMEOUT)
                if done:
                    self._registered.append((registry, card, transports))
                    logger.info("[A2A] registered with %s", name)
                else:
                    logger.warning(
                        "[A2A] registering with %s took over %.0fs; gave up (the agent serves anyway)",
                        name,
                        REGISTRY_TIMEOUT,
                    )
            except Exception:
                logger.warning("[A2A] registering with %s failed; the agent serves anyway", name, exc_info=True)

    async def shutdown(self, app: Any) -> None:
        if self._registration is not None and not self._registration.done():
            self._registration.cancel()
            await asyncio.gather(self._registration, return_exceptions=True)
        for registry, card, transports in reversed(self._registered):
            deregister = getattr(registry, "deregister", None)
            if not callable(deregister):
                continue
            try:
                done, _ = await wait_bounded(call(deregister, card, transports), REGISTRY_TIMEOUT)
                if not done:
                    logger.warning(
                        "[A2A] deregistering from %s took over %.0fs; gave up",
                        registry.registry_name(),
                        REGISTRY_TIMEOUT,
                    )
            except Exception:
                logger.warning("[A2A] deregistering from %s failed", registry.registry_name(), exc_info=True)
        self._registered.clear()
        if self._server is not None:
            await self._server.handler.stop_all("the server is shutting down", 2 * CLEANUP_GRACE)


def _run_now_or_soon(result: Any) -> None:
    """An ``async`` registry's registration: in the running loop's background if there is one,
    else run to its end here (``add_endpoint`` is called from plain code, as upstream calls it)."""
    if not inspect.isawaitable(result):
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(wait_bounded(result, REGISTRY_TIMEOUT))
        return
    task = loop.create_task(wait_bounded(result, REGISTRY_TIMEOUT))
    task.add_done_callback(_report_registering)


def _report_registering(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("[A2A] registering failed: %s", task.exception())


def _missing_sdk(exc: ModuleNotFoundError) -> Response:
    return json_response({"detail": f"A2A needs the a2a extra ({exc}): pip install 'agentpack[a2a]'"}, 501)


__all__ = ["A2AFastAPIDefaultAdapter"]
