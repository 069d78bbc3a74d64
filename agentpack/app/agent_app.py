"""``AgentApp``: a FastAPI application that serves an agent over the Agent API.

The public surface mirrors AgentScope Runtime's ``AgentApp`` (same constructor keywords,
decorators and methods) so existing apps move over by changing their imports; see
docs/migrating.md for every point, including what behaves better here.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute

from agentpack._version import __version__
from agentpack.app import errors, lifespan as lifespan_module
from agentpack.app.endpoints import make_endpoint
from agentpack.app.handler import QueryHandler
from agentpack.app.process import build_process_endpoint, build_stop_endpoint
from agentpack.app.runner import CLEANUP_GRACE
from agentpack.frameworks import get_framework
from agentpack.interrupt.base import BaseInterruptBackend, session_key
from agentpack.interrupt.guard import SessionGuard

if TYPE_CHECKING:
    from agentpack.tasks.base import TaskQueue

logger = logging.getLogger("agentpack")

#: A readiness check returns ``None`` when its dependency answers, else the reason it does not.
ReadinessCheck = Callable[[], Awaitable[Optional[str]]]

_BROKER_SCHEMES = {"redis", "rediss", "amqp", "amqps", "pyamqp", "sqs", "memory", "sentinel"}
_REDIS_SCHEMES = {"redis", "rediss", "unix"}
_SYSTEM_TAG = "system"

#: AgentScope Runtime keywords that are accepted so its apps construct unchanged, and why
#: they change nothing here.
_NO_EFFECT = {
    "response_type": "/process always streams SSE (or JSON with \"stream\": false)",
    "stream": "each request chooses with its own \"stream\" field",
    "request_model": "the body of /process is always AgentRequest",
    "mode": "deployment modes are chosen by `agentpack deploy --target`",
    "custom_endpoints": "routes are registered with @app.endpoint / @app.get",
    "protocol_adapters": "protocol adapters are not supported",
    "agui_config": "the AG-UI protocol is not supported",
    "enable_embedded_worker": "start workers with `agentpack worker APP`; without a broker, tasks run embedded",
    "stream_task_timeout": "stop a background run with stop_chat / POST {endpoint_path}/stop instead",
}
#: AgentScope Runtime keywords that have no equivalent; the message says what to do instead.
_UNSUPPORTED = {
    "runner": "register the handler with @app.query(framework=...) instead of passing runner=",
}


#: AgentScope Runtime ``run()`` keywords with no uvicorn meaning, and why they change nothing here.
_RUN_NO_EFFECT = {
    "stream": "each request chooses with its own \"stream\" field",
    "protocol_adapters": "protocol adapters are not supported",
    "embed_task_processor": "without a broker tasks run in this process; with one, start `agentpack worker APP`",
    "mode": "deployment modes are chosen by `agentpack deploy --target`",
    "runner": "the handler registered with @app.query is served",
    "custom_endpoints": "routes are registered with @app.endpoint / @app.get",
}


def _uvicorn_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keywords ``uvicorn.Config`` takes; warns about (and drops) every other one."""
    import inspect

    import uvicorn

    known = set(inspect.signature(uvicorn.Config.__init__).parameters) - {"self", "app", "host", "port"}
    options = {}
    for keyword, value in kwargs.items():
        if keyword in known:
            options[keyword] = value
        elif keyword in _RUN_NO_EFFECT:
            warnings.warn(f"app.run({keyword}=...) has no effect in agentpack: {_RUN_NO_EFFECT[keyword]}", UserWarning, stacklevel=3)
        else:
            warnings.warn(
                f"app.run({keyword}=...) is neither an AgentScope Runtime run() keyword nor a uvicorn option; ignored",
                UserWarning,
                stacklevel=3,
            )
    return options


def _check_url(keyword: str, value: Optional[str], schemes: set[str]) -> None:
    if value is None:
        return
    if not isinstance(value, str) or urlsplit(value).scheme not in schemes:
        allowed = ", ".join(f"{s}://" for s in sorted(schemes))
        raise ValueError(f"{keyword}={value!r} is not a URL agentpack can use; it must start with one of {allowed}")


def _script_name() -> Optional[str]:
    """The module name a script run as ``__main__`` gets when a worker imports it."""
    import sys

    main = sys.modules.get("__main__")
    file = getattr(main, "__file__", None)
    return os.path.splitext(os.path.basename(file))[0] if file else None


def _check_path(keyword: str, path: str) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"{keyword}={path!r} must be a path starting with '/', e.g. '/process'")
    return path.rstrip("/") or "/"


def _check_endpoint_path(endpoint_path: str) -> str:
    path = _check_path("endpoint_path", endpoint_path)
    if path in {"/", "/health", "/readiness", "/liveness"}:
        raise ValueError(f"endpoint_path={endpoint_path!r} collides with a built-in route; choose e.g. '/process'")
    return path


class AgentApp(FastAPI):
    """A FastAPI app with agent routes: ``@app.query``, ``@app.endpoint``, probes and stop."""

    def __init__(
        self,
        *,
        app_name: str = "agentpack agent",
        app_description: str = "",
        endpoint_path: str = "/process",
        lifespan: Optional[Callable[[Any], Any]] = None,
        before_start: Optional[Callable[..., Any]] = None,
        after_finish: Optional[Callable[..., Any]] = None,
        a2a_config: Any = None,
        broker_url: Optional[str] = None,
        backend_url: Optional[str] = None,
        interrupt_redis_url: Optional[str] = None,
        interrupt_backend: Optional[BaseInterruptBackend] = None,
        session_lease_seconds: float = 10.0,
        session_state_seconds: float = 600.0,
        enable_stream_task: bool = False,
        stream_task_queue: str = "stream_query",
        stream_task_wait_seconds: float = 300.0,
        task_concurrency: int = 8,
        task_result_seconds: float = 3600.0,
        **fastapi_kwargs: Any,
    ) -> None:
        for keyword, instead in _UNSUPPORTED.items():
            if keyword in fastapi_kwargs:
                raise TypeError(f"AgentApp({keyword}=...) is not supported: {instead}")
        ignored = {k: fastapi_kwargs.pop(k) for k in list(fastapi_kwargs) if k in _NO_EFFECT}
        for keyword in ignored:
            warnings.warn(f"AgentApp({keyword}=...) has no effect in agentpack: {_NO_EFFECT[keyword]}", UserWarning, stacklevel=2)
        self.endpoint_path = _check_endpoint_path(endpoint_path)
        for name, hook in (("lifespan", lifespan), ("before_start", before_start), ("after_finish", after_finish)):
            if hook is not None and not callable(hook):
                raise TypeError(f"{name} must be callable, got {type(hook).__name__}")
        _check_url("broker_url", broker_url, _BROKER_SCHEMES)
        _check_url("backend_url", backend_url, _BROKER_SCHEMES | {"db+postgresql", "db+sqlite", "rpc"})
        if backend_url and not broker_url:
            raise ValueError("backend_url is set without broker_url; tasks need a broker to be sent to (set broker_url=)")
        if broker_url and not backend_url:
            if urlsplit(broker_url).scheme not in ("redis", "rediss"):
                raise ValueError(
                    f"broker_url={broker_url!r} needs backend_url= to keep task results, e.g. backend_url='redis://localhost:6379/1'"
                )
            backend_url = broker_url
        _check_url("interrupt_redis_url", interrupt_redis_url, _REDIS_SCHEMES)
        if interrupt_backend is not None and interrupt_redis_url is not None:
            raise ValueError("give interrupt_redis_url= or interrupt_backend=, not both")
        if interrupt_backend is not None and not isinstance(interrupt_backend, BaseInterruptBackend):
            hint = "; pass a Redis URL as interrupt_redis_url=" if isinstance(interrupt_backend, str) else ""
            raise TypeError(f"interrupt_backend must be a BaseInterruptBackend instance, got {type(interrupt_backend).__name__}{hint}")
        if not isinstance(stream_task_wait_seconds, (int, float)) or stream_task_wait_seconds < 0:
            raise ValueError(f"stream_task_wait_seconds={stream_task_wait_seconds!r} must be a number of seconds >= 0")
        if a2a_config is not None and not (isinstance(a2a_config, dict) or hasattr(a2a_config, "model_dump")):
            raise TypeError("a2a_config must be a dict or an AgentCardWithRuntimeConfig-like pydantic model")

        fastapi_kwargs.setdefault("title", app_name)
        fastapi_kwargs.setdefault("description", app_description)
        fastapi_kwargs.setdefault("version", __version__)
        super().__init__(lifespan=lifespan_module.compose(lifespan, before_start, after_finish), **fastapi_kwargs)
        errors.install(self)

        self.app_name = app_name
        self.app_description = app_description
        self.a2a_config = a2a_config
        self.broker_url = broker_url
        self.backend_url = backend_url
        self.interrupt_redis_url = interrupt_redis_url
        if interrupt_backend is None:
            if interrupt_redis_url is not None:
                from agentpack.interrupt.redis import RedisInterruptBackend

                interrupt_backend = RedisInterruptBackend(interrupt_redis_url)
            else:
                from agentpack.interrupt.local import LocalInterruptBackend

                interrupt_backend = LocalInterruptBackend()
        self.interrupt_backend = interrupt_backend
        self._guard = SessionGuard(interrupt_backend, session_lease_seconds, session_state_seconds)
        self.query_handler: Optional[QueryHandler] = None
        self.custom_endpoints: list[dict[str, Any]] = []
        self._init_hooks: list[Callable[..., Any]] = []
        self._shutdown_hooks: list[Callable[..., Any]] = []
        self._readiness_checks: list[ReadinessCheck] = []
        self._not_ready_reason: Optional[str] = "start-up has not finished"
        self._runtime_started = False
        self._readiness_checks.append(interrupt_backend.problem)
        self._task_queue: Optional[TaskQueue] = None
        self._task_settings = (app_name, task_concurrency, task_result_seconds)
        if broker_url:  # workers import the app and need its Celery application right away
            self.task_queue  # noqa: B018 - builds it
        self.enable_stream_task = enable_stream_task
        self.stream_task_queue = stream_task_queue
        #: The task name of background runs; fixed here so a later move of endpoint_path
        #: (``run(endpoint_path=...)``) keeps web process and workers agreeing on it.
        self.stream_task_name = f"agentpack.agent_run:{self.endpoint_path}"
        #: How long a background run waits for its busy session before it fails.
        self.stream_task_wait_seconds = float(stream_task_wait_seconds)
        self._add_system_routes()

    @property
    def stop_path(self) -> str:
        """The built-in stop route, ``{endpoint_path}/stop``."""
        return f"{self.endpoint_path.rstrip('/')}/stop"

    # -- built-in routes ---------------------------------------------------------------
    def _add_system_routes(self) -> None:
        # response_model=None: these return plain dicts, and skipping FastAPI's response
        # model inference keeps AgentApp() as cheap to build as a bare FastAPI app.
        for path, endpoint, summary in (
            ("/", self._root, "Describe this agent and list its endpoints"),
            ("/health", self._health, "Health"),
            ("/readiness", self._readiness, "Readiness: 200 once started and its backends answer"),
            ("/liveness", self._liveness, "Liveness"),
        ):
            self.add_api_route(path, endpoint, methods=["GET"], tags=[_SYSTEM_TAG], summary=summary, response_model=None)

    def registered_endpoints(self) -> dict[str, Any]:
        """What ``GET /`` advertises: only routes that exist right now."""
        endpoints: dict[str, Any] = {}
        if self.query_handler is not None:
            endpoints["process"] = self.endpoint_path
            endpoints["stop"] = self.stop_path
            if self.enable_stream_task:
                endpoints["task"] = f"{self.endpoint_path}/task"
                endpoints["task_status"] = f"{self.endpoint_path}/task/{{task_id}}"
        endpoints.update(health="/health", readiness="/readiness", liveness="/liveness")
        endpoints["custom"] = [{"path": e["path"], "methods": e["methods"]} for e in self.custom_endpoints]
        return endpoints

    async def _root(self) -> dict[str, Any]:
        return {
            "service": self.app_name,
            "name": self.app_name,
            "description": self.app_description,
            "version": self.version,
            "agentpack_version": __version__,
            "endpoints": self.registered_endpoints(),
        }

    async def _health(self) -> dict[str, Any]:
        return {"status": "healthy", "timestamp": time.time(), "running_sessions": len(self._guard)}

    async def _liveness(self) -> dict[str, Any]:
        return {"status": "alive", "timestamp": time.time()}

    async def _readiness(self) -> JSONResponse:
        reason = await self.readiness_problem()
        if reason is None:
            return JSONResponse({"status": "ready", "timestamp": time.time()})
        return JSONResponse({"status": "not_ready", "reason": reason, "timestamp": time.time()}, status_code=503)

    def add_readiness_check(self, check: ReadinessCheck) -> ReadinessCheck:
        """Make ``/readiness`` depend on ``check`` (e.g. a database ping); usable as a decorator."""
        self._readiness_checks.append(check)
        return check

    async def readiness_problem(self) -> Optional[str]:
        """``None`` when the app can take work; else why it cannot (start-up, a backend down)."""
        if self._not_ready_reason is not None:
            return self._not_ready_reason
        for check in self._readiness_checks:
            reason = await check()
            if reason is not None:
                return reason
        return None

    def _mark_ready(self) -> None:
        self._not_ready_reason = None

    def _mark_not_ready(self, reason: str) -> None:
        self._not_ready_reason = reason

    # -- runtime start-up and shutdown (called by the composed lifespan) ----------------
    async def _start_runtime(self) -> None:
        self._guard.open()
        await self.interrupt_backend.start()
        if self._task_queue is not None:
            await self._task_queue.start()
        if self.query_handler is not None:
            await self.query_handler.framework.prepare()
        self._runtime_started = True

    async def _shutdown_runtime(self) -> None:
        self._runtime_started = False
        # Runs still going get their terminal event and give their sessions back before
        # the connections they need for that are closed.
        await self._guard.close(timeout=2 * CLEANUP_GRACE + self._guard.release_timeout)
        if self._task_queue is not None:
            await self._task_queue.aclose()
        await self.interrupt_backend.aclose()

    # -- decorators --------------------------------------------------------------------
    def query(self, framework: str = "agentscope") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register the agent's handler and create ``POST {endpoint_path}``.

        ``framework`` says what the handler yields: ``"text"`` (strings) or
        ``"agentscope"`` (``(msg, last)`` tuples).  Decorating again replaces the handler.
        """
        converter = get_framework(framework)

        def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
            self.query_handler = QueryHandler.inspect(func, converter)
            self._add_agent_routes()
            return func

        return decorator

    def _agent_route_paths(self) -> list[tuple[str, set[str]]]:
        paths = [(self.endpoint_path, {"POST"}), (self.stop_path, {"POST"})]
        if self.enable_stream_task:
            task_path = f"{self.endpoint_path}/task"
            paths += [(task_path, {"POST"}), (f"{task_path}/{{task_id}}", {"GET", "DELETE"})]
        return paths

    def _add_agent_routes(self) -> None:
        """(Re)create the routes of the query handler at ``endpoint_path``."""
        assert self.query_handler is not None
        for path, methods in self._agent_route_paths():
            self._remove_routes(path, methods)
        self.add_api_route(
            self.stop_path,
            build_stop_endpoint(self),
            methods=["POST"],
            tags=["agent-api"],
            response_model=None,
            summary="Stop a running session, wherever it runs",
            name="stop",
        )
        self.add_api_route(
            self.endpoint_path,
            build_process_endpoint(self, self.query_handler),
            methods=["POST"],
            tags=["agent-api"],
            response_model=None,
            summary="Run the agent and stream Agent API events",
            name="process",
        )
        if self.enable_stream_task:
            from agentpack.tasks.agent_task import add_agent_task

            add_agent_task(self)

    def _move_endpoint_path(self, endpoint_path: str) -> None:
        """Serve the handler's routes at another path (``run(endpoint_path=...)``)."""
        path = _check_endpoint_path(endpoint_path)
        if path == self.endpoint_path:
            return
        if self.query_handler is not None:
            for old, methods in self._agent_route_paths():
                self._remove_routes(old, methods)
        self.endpoint_path = path
        if self.query_handler is not None:
            self._add_agent_routes()

    def endpoint(self, path: str, methods: Optional[list[str]] = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Expose ``func`` at ``path``: returns become JSON, generators become SSE streams."""
        path = _check_path("path", path)
        verbs = [m.upper() for m in (methods or ["POST"])]

        def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
            self.add_api_route(path, make_endpoint(func), methods=verbs, tags=["custom"], response_model=None)
            self.custom_endpoints.append({"path": path, "methods": verbs, "handler": func})
            return func

        return decorator

    def task(self, path: str, queue: str = "celery", name: Optional[str] = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Run ``func`` in the background behind ``POST path`` (200 ``submitted`` + task id).

        ``GET path/{task_id}`` reports ``pending``/``running``/``finished``/``error``/
        ``canceled`` with the result or the error (an unknown id answers
        ``{"error": "Task <id> not found"}``); ``DELETE path/{task_id}`` cancels.  With
        ``broker_url`` the job runs on Celery workers (``agentpack worker APP``), else in
        this process.  ``func`` may be sync or async and takes no argument or one, the
        JSON body.  ``name`` overrides the stable task name (``module.function``).
        """
        from agentpack.tasks.base import TaskSpec, stable_name
        from agentpack.tasks.routes import add_task_routes, submit_endpoint

        path = _check_path("path", path)

        def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
            spec = TaskSpec(name or stable_name(func, _script_name()), func, queue)
            self.task_queue.register(spec)
            add_task_routes(self, path, spec.name, queue, submit_endpoint(self, spec.name, queue))
            self.custom_endpoints.append({"path": path, "methods": ["POST"], "handler": func, "task": spec.name})
            return func

        return decorator

    @property
    def task_queue(self) -> TaskQueue:
        """Where ``@app.task`` jobs run; built on first use, so apps without tasks never load it."""
        if self._task_queue is None:
            app_name, concurrency, result_seconds = self._task_settings
            if self.broker_url:
                from agentpack.tasks.celery_queue import CeleryQueue

                self._task_queue = CeleryQueue(app_name, self.broker_url, self.backend_url, result_seconds)
            else:
                from agentpack.tasks.embedded import EmbeddedQueue

                self._task_queue = EmbeddedQueue(concurrency, result_seconds)
            self._readiness_checks.append(self._task_queue.problem)
        return self._task_queue

    @property
    def celery_app(self) -> Any:
        """The Celery application when ``broker_url`` is set (for workers and Celery tooling), else ``None``."""
        return getattr(self.task_queue, "celery", None)

    def init(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Deprecated: run ``func`` at start-up.  Use ``lifespan=`` or ``before_start=``."""
        return self._deprecated_hook("init", "before_start", self._init_hooks, func)

    def shutdown(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Deprecated: run ``func`` at shutdown.  Use ``lifespan=`` or ``after_finish=``."""
        return self._deprecated_hook("shutdown", "after_finish", self._shutdown_hooks, func)

    @staticmethod
    def _deprecated_hook(name: str, instead: str, hooks: list, func: Callable[..., Any]) -> Callable[..., Any]:
        warnings.warn(
            f"@app.{name} is deprecated; pass lifespan= (or {instead}=) to AgentApp instead",
            DeprecationWarning,
            stacklevel=3,
        )
        hooks.append(func)
        return func

    def _remove_routes(self, path: str, methods: set[str]) -> None:
        def keep(route: BaseRoute) -> bool:
            return not (getattr(route, "path", None) == path and methods & set(getattr(route, "methods", None) or ()))

        self.router.routes[:] = [r for r in self.router.routes if keep(r)]
        self.openapi_schema = None

    # -- interrupts --------------------------------------------------------------------
    async def stop_chat(self, user_id: Optional[str], session_id: Optional[str]) -> bool:
        """Stop the session's running query, in this process or any other sharing the backend.

        Returns ``True`` if a run was holding the session and has been signalled; the
        stream of that run then ends with a ``canceled`` response event.  Raises
        :class:`~agentpack.interrupt.BackendUnavailable` when the backend cannot be reached.
        """
        return await self._guard.stop(session_key(user_id, session_id))

    async def get_chat_state(self, user_id: Optional[str], session_id: Optional[str]) -> Optional[str]:
        """``RUNNING``, ``STOPPED``, ``FINISHED``, ``ERROR``, or ``None`` for an unknown session."""
        state = await self._guard.state(session_key(user_id, session_id))
        return state.value if state is not None else None

    # -- serving -----------------------------------------------------------------------
    def run(
        self,
        host: Optional[str] = None,
        port: Optional[int] = None,
        web_ui: bool = False,
        **kwargs: Any,
    ) -> None:
        """Serve the app with uvicorn (blocking).

        Takes AgentScope Runtime's ``run()`` keywords: ``endpoint_path`` moves the agent's
        routes; ``web_ui``, ``stream``, ``protocol_adapters``, ``embed_task_processor``,
        ``mode``, ``runner`` and ``custom_endpoints`` are accepted and change nothing (a
        log line or warning says so).  Any other keyword that is a ``uvicorn.Config``
        option goes to uvicorn; anything else is dropped with a warning.
        """
        from agentpack.app.loader import loading_for_cli

        if loading_for_cli():
            logger.info("app.run() called while `agentpack run` imports the app; the CLI serves it instead")
            return
        import uvicorn

        host = host or os.environ.get("HOST", "127.0.0.1")
        port = int(port if port is not None else os.environ.get("PORT", 8090))
        endpoint_path = kwargs.pop("endpoint_path", None)
        if endpoint_path is not None:
            self._move_endpoint_path(endpoint_path)
        uvicorn_options = _uvicorn_options(kwargs)
        uvicorn_options.setdefault("timeout_graceful_shutdown", 10)
        if web_ui:
            shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
            logger.warning(
                "web_ui=True: agentpack serves no chat page yet; talk to the agent with "
                "`agentpack run APP --ask \"hello\"` or POST an AgentRequest to http://%s:%s%s",
                shown,
                port,
                self.endpoint_path,
            )
        uvicorn.run(self, host=host, port=port, **uvicorn_options)

    async def deploy(self, deployer: Any, **kwargs: Any) -> Any:
        """Hand the app to a deployer, e.g. ``await app.deploy(LocalDeployManager(port=8090))``."""
        return await deployer.deploy(self, **kwargs)
