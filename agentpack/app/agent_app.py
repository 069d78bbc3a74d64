"""``AgentApp``: a FastAPI application that serves an agent over the Agent API.

The public surface mirrors AgentScope Runtime's ``AgentApp`` (same constructor keywords,
decorators and methods) so existing apps move over by changing their imports; see
docs/migrating.md for every point, including what behaves better here.  This class is a
facade: routes live in :mod:`~agentpack.app.agent_routes` (the query handler's group),
:mod:`~agentpack.app.endpoints`, :mod:`~agentpack.app.task_routes` and
:mod:`~agentpack.app.probes`; ``run()`` is :mod:`~agentpack.app.serving`; what the app runs
on (interrupt backend, session guard, task queue, readiness) is its :class:`Runtime`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.routing import BaseRoute

from agentpack._version import __version__
from agentpack.app import agent_routes, checks, compat, errors, limits
from agentpack.app import lifespan as lifespan_module
from agentpack.app.auth import Authentication, AuthMiddleware, NotYourSession, Verifier, not_your_session
from agentpack.app.bodies import documented_routes
from agentpack.app.probes import add_probes
from agentpack.app.process import AppRuns
from agentpack.app.protocols import Protocols
from agentpack.app.runtime import ReadinessCheck, Runtime
from agentpack.frameworks import get_framework
from agentpack.interrupt.base import BaseInterruptBackend, session_key
from agentpack.logs import RequestIds
from agentpack.run.handler import QueryHandler

if TYPE_CHECKING:
    from agentpack.tasks.base import TaskQueue

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

#: ``0`` turns ``/docs``, ``/redoc`` and ``/openapi.json`` off; an artifact's entry point sets it
#: unless its environment does (agentpack.targets.DOCS_ENV), so they are on locally, off deployed.
DOCS_ENV = "AGENTPACK_DOCS"


def docs_keywords(fastapi_kwargs: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's keywords with the docs pages off when ``AGENTPACK_DOCS=0`` — unless the app names
    ``docs_url``, ``redoc_url`` or ``openapi_url`` itself, which then decide.  A public deployment
    need not hand anyone a map of its routes; a bad value is a ``ValueError`` naming the variable."""
    if {"docs_url", "redoc_url", "openapi_url"} & fastapi_kwargs.keys():
        return fastapi_kwargs
    value = os.environ.get(DOCS_ENV, "").strip().lower()
    if value in ("", "1", "true", "yes", "on"):
        return fastapi_kwargs
    if value in ("0", "false", "no", "off"):
        return {**fastapi_kwargs, "docs_url": None, "redoc_url": None, "openapi_url": None}
    raise ValueError(f"{DOCS_ENV}={value!r}: use 1 to serve /docs, /redoc and /openapi.json, or 0 not to")


class AgentApp(FastAPI):
    """A FastAPI app with agent routes: ``@app.query``, ``@app.endpoint``, ``@app.task``, probes and stop."""

    #: set while :meth:`openapi` runs: :attr:`routes` then gives the routes as they are described
    _documenting = False

    def __init__(
        self,
        *,
        app_name: str = "agentpack agent",
        app_description: str = "",
        endpoint_path: str = "/process",
        lifespan: Callable[[Any], Any] | None = None,
        before_start: Callable[..., Any] | None = None,
        after_finish: Callable[..., Any] | None = None,
        a2a_config: Any = None,
        agui_config: Any = None,
        protocol_adapters: list[Any] | None = None,
        broker_url: str | None = None,
        backend_url: str | None = None,
        interrupt_redis_url: str | None = None,
        interrupt_backend: BaseInterruptBackend | None = None,
        session_lease_seconds: float = 10.0,
        session_state_seconds: float = 600.0,
        enable_stream_task: bool = False,
        stream_task_queue: str = "stream_query",
        stream_task_wait_seconds: float = 300.0,
        stream_task_timeout: float | None = None,
        task_concurrency: int = 8,
        task_result_seconds: float = 3600.0,
        task_results_max: int = 1000,
        task_results_max_bytes: int = 64 * 1024 * 1024,
        max_body_bytes: int | None = None,
        max_concurrent_runs: int | None = None,
        run_timeout_seconds: float | None = None,
        cors_origins: list[str] | None = None,
        cors_allow_credentials: bool = False,
        api_keys: Sequence[str] | Mapping[str, str] | None = None,
        auth: Verifier | None = None,
        bind_user_to_principal: bool = False,
        **fastapi_kwargs: Any,
    ) -> None:
        fastapi_kwargs = docs_keywords(compat.constructor_keywords(fastapi_kwargs))
        if interrupt_redis_url is None and interrupt_backend is None:
            # set by `agentpack deploy` from [targets.<t>] redis_url, so instances share stops
            interrupt_redis_url = os.environ.get("AGENTPACK_REDIS_URL") or None
        self.endpoint_path = checks.check_endpoint_path(endpoint_path)
        checks.check_callables(lifespan=lifespan, before_start=before_start, after_finish=after_finish)
        backend_url = checks.task_urls(broker_url, backend_url)
        checks.interrupt_choice(interrupt_redis_url, interrupt_backend, BaseInterruptBackend)
        self.stream_task_wait_seconds = checks.check_seconds("stream_task_wait_seconds", stream_task_wait_seconds)
        #: a background run's time limit (upstream's keyword), besides ``run_timeout_seconds``
        self.stream_task_timeout = (
            None if stream_task_timeout is None else checks.check_seconds("stream_task_timeout", stream_task_timeout)
        )
        checks.check_a2a_config(a2a_config)
        #: who may call: API keys / ``AGENTPACK_API_KEYS`` and the ``auth=`` verifier (docs/auth.md)
        self.authentication = Authentication(api_keys, auth, bind_user_to_principal)

        #: functions of the deprecated ``@app.init`` / ``@app.shutdown``, run by the lifespan
        self.init_hooks: list[Callable[..., Any]] = []
        self.shutdown_hooks: list[Callable[..., Any]] = []
        fastapi_kwargs.setdefault("title", app_name)
        fastapi_kwargs.setdefault("description", app_description)
        fastapi_kwargs.setdefault("version", __version__)
        composed = lifespan_module.compose(lifespan, before_start, after_finish, self.init_hooks, self.shutdown_hooks)
        #: the app's limits (docs/limits.md); checked before anything is built
        self.limits = limits.AppLimits.resolve(max_body_bytes, max_concurrent_runs, run_timeout_seconds)
        cors_origins = limits.check_cors(cors_origins, cors_allow_credentials)
        super().__init__(lifespan=composed, **fastapi_kwargs)
        if self.authentication.enabled:  # without auth no middleware, nothing to pay per request
            self.add_middleware(AuthMiddleware, auth=self.authentication, router=self.router)
            self.add_exception_handler(NotYourSession, not_your_session)
        #: failed events carry the exception's text only then (``debug=True`` or AGENTPACK_DEBUG)
        self.debug_errors = limits.debug_from_env(self.debug)
        errors.install(self)
        limits.install(self, self.limits, cors_origins, cors_allow_credentials)

        self.app_name, self.app_description, self.a2a_config = app_name, app_description, a2a_config
        #: how long results stay readable: background tasks and A2A tasks
        self.task_result_seconds = task_result_seconds
        self.broker_url, self.backend_url, self.interrupt_redis_url = broker_url, backend_url, interrupt_redis_url
        self.runtime = Runtime.configure(
            app_name=app_name,
            interrupt_redis_url=interrupt_redis_url,
            interrupt_backend=interrupt_backend,
            lease_seconds=session_lease_seconds,
            state_seconds=session_state_seconds,
            broker_url=broker_url,
            backend_url=backend_url,
            task_concurrency=task_concurrency,
            task_result_seconds=task_result_seconds,
            task_results_max=task_results_max,
            task_results_max_bytes=task_results_max_bytes,
        )
        self.interrupt_backend = self.runtime.backend
        self.query_handler: QueryHandler | None = None
        #: where every run of the query handler starts, for /process and every protocol
        self.runs = AppRuns(self)
        #: A2A, the Responses API and AG-UI, served beside /process (see app/protocols.py)
        self.protocols = Protocols(self, protocol_adapters, a2a_config, agui_config)
        self.agui_config = agui_config
        self.custom_endpoints: list[dict[str, Any]] = []
        self.enable_stream_task = enable_stream_task
        self.stream_task_queue = stream_task_queue
        #: The task name of background runs; fixed here so a later move of endpoint_path
        #: (``run(endpoint_path=...)``) keeps web process and workers agreeing on it.
        self.stream_task_name = f"agentpack.agent_run:{self.endpoint_path}"
        add_probes(self)
        open_paths = {"/", "/health", "/readiness", "/liveness"}
        self.authentication.mark_open(r for r in self.router.routes if getattr(r, "path", None) in open_paths)

    def build_middleware_stack(self) -> Any:
        """Starlette's stack inside :class:`~agentpack.logs.RequestIds`, so that every answer
        carries its request id: a 401, 413 or CORS answer of a middleware, and also the 500 of
        Starlette's outermost error middleware (docs/logs.md)."""
        return RequestIds(super().build_middleware_stack())

    @property
    def routes(self) -> list[BaseRoute]:
        """Every route of the app, the default protocols' too: made now if they were waiting for
        their first request (app/protocols.py), so whoever looks at the routes (the OpenAPI
        schema, a route listing, a router including them) finds them all."""
        protocols: Protocols | None = getattr(self, "protocols", None)  # None while FastAPI sets up
        if protocols is not None:
            protocols.make_routes()
        if self._documenting:
            return documented_routes(self.router.routes)
        return self.router.routes

    def openapi(self) -> dict[str, Any]:
        """FastAPI's schema, with the routes that read their own bodies described as FastAPI
        describes a body parameter (app/bodies.py): the same document as if they had one."""
        if not self.openapi_schema:
            self._documenting = True
            try:
                super().openapi()
            finally:
                self._documenting = False
        return self.openapi_schema  # type: ignore[return-value]

    @property
    def stop_path(self) -> str:
        """The built-in stop route, ``{endpoint_path}/stop``."""
        return f"{self.endpoint_path.rstrip('/')}/stop"

    @property
    def task_queue(self) -> TaskQueue:
        """Where ``@app.task`` jobs run (Celery with ``broker_url``, else in this process)."""
        return self.runtime.task_queue

    @property
    def celery_app(self) -> Any:
        """The Celery application when ``broker_url`` is set (for workers and Celery tooling), else ``None``."""
        return getattr(self.task_queue, "celery", None)

    def registered_endpoints(self) -> dict[str, Any]:
        """What ``GET /`` advertises: only routes that exist right now."""
        endpoints: dict[str, Any] = {}
        if self.query_handler is not None:
            endpoints.update(process=self.endpoint_path, stop=self.stop_path)
            if self.enable_stream_task:
                endpoints.update(
                    task=f"{self.endpoint_path}/task", task_status=f"{self.endpoint_path}/task/{{task_id}}"
                )
        if self.query_handler is not None:
            endpoints.update(self.protocols.endpoints())
        endpoints.update(health="/health", readiness="/readiness", liveness="/liveness")
        endpoints["custom"] = [{"path": e["path"], "methods": e["methods"]} for e in self.custom_endpoints]
        return endpoints

    def add_readiness_check(self, check: ReadinessCheck) -> ReadinessCheck:
        """Make ``/readiness`` depend on ``check`` (e.g. a database ping); usable as a decorator."""
        self.runtime.readiness_checks.append(check)
        return check

    async def readiness_problem(self) -> str | None:
        """``None`` when the app can take work; else why it cannot (start-up, a backend down)."""
        return await self.runtime.readiness_problem()

    # -- decorators --------------------------------------------------------------------
    def query(self, framework: str = "agentscope") -> Decorator:
        """Register the agent's handler and create ``POST {endpoint_path}``.

        ``framework`` says what the handler yields: ``"text"`` (strings) or
        ``"agentscope"`` (``(msg, last)`` tuples).  Decorating again replaces the handler.
        """
        converter = get_framework(framework)

        def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
            self.query_handler = QueryHandler.inspect(func, converter)
            agent_routes.install(self)
            return func

        return decorator

    def endpoint(self, path: str, methods: list[str] | None = None, auth: bool = True) -> Decorator:
        """Expose ``func`` at ``path``: returns become JSON, generators become SSE streams.

        With authentication on, the route needs a key like every other; ``auth=False`` opens it."""
        path = checks.check_path("path", path)
        verbs = [m.upper() for m in (methods or ["POST"])]

        def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
            from agentpack.app import endpoints  # imported by the first @app.endpoint, not by every app

            self.add_api_route(
                path,
                endpoints.make_endpoint(func, self.debug_errors),
                methods=verbs,
                tags=["custom"],
                response_model=None,
            )
            if not auth:
                self.authentication.mark_open(self.router.routes[-1:])
            self.custom_endpoints.append({"path": path, "methods": verbs, "handler": func})
            return func

        return decorator

    def task(self, path: str, queue: str = "celery", name: str | None = None, auth: bool = True) -> Decorator:
        """Run ``func`` in the background behind ``POST path`` (200 ``submitted`` + task id).

        ``GET path/{task_id}`` reports ``pending``/``running``/``finished``/``error``/
        ``canceled`` with the result or the error (an unknown id answers
        ``{"error": "Task <id> not found"}``); ``DELETE path/{task_id}`` cancels.  With
        ``broker_url`` the job runs on Celery workers (``agentpack worker APP``), else in
        this process.  ``func`` may be sync or async and takes no argument or one, the
        JSON body.  ``name`` overrides the stable task name (``module.function``); ``auth=False``
        opens the three routes when authentication is on.
        """
        from agentpack.app.task_routes import add_task_routes, submit_endpoint
        from agentpack.tasks.base import TaskSpec, stable_name

        path = checks.check_path("path", path)

        def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
            spec = TaskSpec(name or stable_name(func, checks.script_name()), func, queue)
            self.task_queue.register(spec)
            before = len(self.router.routes)
            add_task_routes(self, self.runtime, path, spec.name, submit_endpoint(self.runtime, spec.name, queue))
            if not auth:
                self.authentication.mark_open(self.router.routes[before:])
            self.custom_endpoints.append({"path": path, "methods": ["POST"], "handler": func, "task": spec.name})
            return func

        return decorator

    def init(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Deprecated: run ``func`` at start-up.  Use ``lifespan=`` or ``before_start=``."""
        return compat.deprecated_hook("init", "before_start", self.init_hooks, func)

    def shutdown(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Deprecated: run ``func`` at shutdown.  Use ``lifespan=`` or ``after_finish=``."""
        return compat.deprecated_hook("shutdown", "after_finish", self.shutdown_hooks, func)

    # -- interrupts --------------------------------------------------------------------
    async def stop_chat(self, user_id: str | None, session_id: str | None, *, reason: str | None = None) -> bool:
        """Stop the session's running query, in this process or any other sharing the backend.

        Returns ``True`` if a run was holding the session and has been signalled; the
        stream of that run then ends with a ``canceled`` response event (saying ``reason``
        when the run is in this process, e.g. the platform adapter's function timeout).  Raises
        :class:`~agentpack.interrupt.BackendUnavailable` when the backend cannot be reached.
        """
        key = session_key(user_id, session_id)
        return await (self.runtime.guard.stop(key, reason) if reason else self.runtime.guard.stop(key))

    async def get_chat_state(self, user_id: str | None, session_id: str | None) -> str | None:
        """``RUNNING``, ``STOPPED``, ``FINISHED``, ``ERROR``, or ``None`` for an unknown session."""
        state = await self.runtime.guard.state(session_key(user_id, session_id))
        return state.value if state is not None else None

    # -- serving -----------------------------------------------------------------------
    def run(self, host: str | None = None, port: int | None = None, web_ui: bool = False, **kwargs: Any) -> None:
        """Serve the app with uvicorn (blocking).

        Takes AgentScope Runtime's ``run()`` keywords: ``endpoint_path`` moves the agent's
        routes, ``web_ui=True`` serves the chat page at ``/ui`` (docs/ui.md),
        ``protocol_adapters`` replaces the protocols served; ``stream``,
        ``embed_task_processor``, ``mode``, ``runner`` and ``custom_endpoints`` are accepted and
        change nothing (a warning says so).  Any other keyword that is a ``uvicorn.Config``
        option goes to uvicorn; anything else is dropped with a warning.
        """
        from agentpack.app import serving  # only app.run() needs it

        serving.serve(self, host, port, web_ui, kwargs)

    async def deploy(self, deployer: Any, **kwargs: Any) -> Any:
        """Hand the app to a deployer, e.g. ``await app.deploy(LocalDeployManager(port=8090))``."""
        return await deployer.deploy(self, **kwargs)
