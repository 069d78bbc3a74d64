"""The routes of the agent's query handler — ``POST {endpoint_path}``, its ``/stop`` and, with
``enable_stream_task``, its background runs — kept as one group so that decorating again, or
moving ``endpoint_path`` in ``run()``, replaces the whole group and never leaves a stale route.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute

from agentpack.app import checks
from agentpack.app.bodies import OwnBodyRoute
from agentpack.app.process import PROCESS_RESPONSES, STOP_RESPONSES, build_process_endpoint, build_stop_endpoint

if TYPE_CHECKING:
    from agentpack.app.agent_app import AgentApp


def route_paths(app: AgentApp) -> list[tuple[str, set[str]]]:
    """Every (path, methods) the group serves at the app's current ``endpoint_path``."""
    paths = [(app.endpoint_path, {"POST"}), (app.stop_path, {"POST"})]
    if app.enable_stream_task:
        task_path = f"{app.endpoint_path}/task"
        paths += [(task_path, {"POST"}), (f"{task_path}/{{task_id}}", {"GET", "DELETE"})]
    return paths


def install(app: AgentApp) -> None:
    """(Re)create the group for the app's query handler."""
    assert app.query_handler is not None
    remove(app)
    agent_api: dict[str, Any] = {
        "methods": ["POST"],
        "tags": ["agent-api"],
        "response_model": None,
        "route_class_override": OwnBodyRoute,  # the routes read their bodies (app/bodies.py)
    }
    app.router.add_api_route(
        app.stop_path,
        build_stop_endpoint(app),
        summary="Stop a running session, wherever it runs",
        name="stop",
        responses=STOP_RESPONSES,
        **agent_api,
    )
    process = build_process_endpoint(app, app.query_handler)
    app.router.add_api_route(
        app.endpoint_path,
        process,
        summary="Run the agent and stream Agent API events",
        name="process",
        responses=PROCESS_RESPONSES,
        **agent_api,
    )
    if app.enable_stream_task:
        from agentpack.app.background_runs import add_background_runs

        add_background_runs(app)
    app.protocols.install()


def move(app: AgentApp, endpoint_path: str) -> None:
    """Serve the group at another path (``run(endpoint_path=...)``)."""
    path = checks.check_endpoint_path(endpoint_path)
    if path == app.endpoint_path:
        return
    if app.query_handler is not None:
        remove(app)
    app.endpoint_path = path
    if app.query_handler is not None:
        install(app)


def remove(app: AgentApp) -> None:
    """Drop the group's routes at the current ``endpoint_path`` (other methods on them stay)."""
    app.protocols.remove()
    for path, methods in route_paths(app):

        def keep(route: BaseRoute, path: str = path, methods: set[str] = methods) -> bool:
            return not (getattr(route, "path", None) == path and methods & set(getattr(route, "methods", None) or ()))

        app.router.routes[:] = [r for r in app.router.routes if keep(r)]
    app.openapi_schema = None
