"""``app.run()``: serve an AgentApp with uvicorn, taking AgentScope Runtime's ``run()`` keywords
so its scripts start unchanged, and passing uvicorn only what uvicorn understands.

``web_ui=True`` serves agentpack's chat page at ``/ui`` from the app itself (AgentScope Runtime
starts a separate Node app instead); see docs/ui.md."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from agentpack import logs
from agentpack.addresses import announce_serving
from agentpack.app import agent_routes, compat
from agentpack.app.protocols import UI_ENV

if TYPE_CHECKING:
    from agentpack.app.agent_app import AgentApp

logger = logging.getLogger("agentpack")


def serve(app: AgentApp, host: str | None, port: int | None, web_ui: bool, kwargs: dict[str, Any]) -> None:
    from agentpack.loader import loading_for_cli

    if loading_for_cli():
        logger.info("app.run() called while `agentpack run` imports the app; the CLI serves it instead")
        if web_ui:  # the app asks for its page wherever it is served
            app.protocols.enable_ui()
        return
    import uvicorn

    host = host or os.environ.get("HOST", "127.0.0.1")
    port = int(port if port is not None else os.environ.get("PORT", 8090))
    if "endpoint_path" in kwargs:
        agent_routes.move(app, kwargs.pop("endpoint_path"))
    if "protocol_adapters" in kwargs:
        app.protocols.replace(kwargs.pop("protocol_adapters") or [])
    options = {"timeout_graceful_shutdown": 10, **compat.uvicorn_options(kwargs)}
    if "log_config" not in options:  # the ids in every line, JSON off a terminal (docs/logs.md)
        options["log_config"] = logs.log_config(str(options.get("log_level") or "info"))
    announce_serving(host, port)
    if web_ui:
        # AgentScope Runtime starts a separate Node app here; agentpack's page is served by the
        # app itself.  The variable reaches whatever else this process starts (workers, reloads).
        os.environ[UI_ENV] = "1"
        app.protocols.enable_ui()
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        page = app.protocols.endpoints().get("ui")
        if page:
            logger.warning(
                "web_ui=True: chat page at http://%s:%s%s, talking to the agent at http://%s:%s%s "
                '(from a terminal: `agentpack run APP --ask "hello"`)',
                shown,
                port,
                page,
                shown,
                port,
                app.endpoint_path,
            )
        else:
            logger.warning(
                'web_ui=True: no chat page (%s); talk to the agent with `agentpack run APP --ask "hello"` or POST to http://%s:%s%s',
                "the app has no @app.query handler" if app.query_handler is None else "this installation has none",
                shown,
                port,
                app.endpoint_path,
            )
    uvicorn.run(app, host=host, port=port, **options)
