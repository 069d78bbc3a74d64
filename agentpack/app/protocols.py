"""The protocols an AgentApp serves beside ``/process`` — A2A, the OpenAI Responses API and
AG-UI — installed, replaced and started as one group.

By default an app serves all three, as AgentScope Runtime's does, with two differences that
keep apps light: A2A and AG-UI are served only where their extra is installed
(``agentpack[a2a]``, ``agentpack[agui]``), and their packages are imported on their first
request, never at import or start-up — unless the app configures them (``a2a_config=``,
``agui_config=``), which also makes a missing extra an error at construction.
``AgentApp(protocol_adapters=[...])`` (or ``run(protocol_adapters=...)``) replaces the
defaults with the given adapters, as upstream's does; ``[]`` serves none.

Each adapter adds its routes with ``add_endpoint(app, app.runs)``: the app's run source, so
every run goes through the session guard like ``/process``.  The routes an adapter added are
remembered, so re-installing (a second ``@app.query``, a moved ``endpoint_path``, new
adapters) never leaves a stale route behind.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import TYPE_CHECKING, Any, Optional, Sequence

from starlette.routing import BaseRoute

if TYPE_CHECKING:
    from agentpack.app.agent_app import AgentApp

logger = logging.getLogger("agentpack.protocols")

#: protocol -> (the package its extra installs, the extra)
EXTRAS = {"a2a": ("a2a", "a2a"), "agui": ("ag_ui", "agui")}


def installed(protocol: str) -> bool:
    """Whether the protocol's package can be imported (found, not imported: that costs nothing)."""
    package, _ = EXTRAS[protocol]
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def require(protocol: str, keyword: str) -> None:
    if not installed(protocol):
        package, extra = EXTRAS[protocol]
        raise ModuleNotFoundError(
            f"{keyword}= needs the {extra} extra, which is not installed: pip install 'agentpack[{extra}]'",
            name=package,
        )


class Protocols:
    """The app's protocol adapters and the routes each one added."""

    def __init__(self, app: "AgentApp", adapters: Optional[Sequence[Any]], a2a_config: Any, agui_config: Any) -> None:
        self.app = app
        self.a2a_config = a2a_config
        self.agui_config = agui_config
        self.explicit = adapters is not None
        if a2a_config is not None:
            require("a2a", "a2a_config")
        if agui_config is not None:
            require("agui", "agui_config")
        self.adapters: list[Any] = list(adapters) if adapters is not None else []
        self._routes: list[BaseRoute] = []
        self._defaults_made = False

    def _default_adapters(self) -> list[Any]:
        from agentpack.frontends.responses.adapter import ResponseAPIDefaultAdapter

        adapters: list[Any] = []
        if self.a2a_config is not None or installed("a2a"):
            from agentpack.frontends.a2a.adapter import A2AFastAPIDefaultAdapter

            adapters.append(
                A2AFastAPIDefaultAdapter(
                    agent_name=self.app.app_name, agent_description=self.app.app_description, a2a_config=self.a2a_config
                )
            )
        adapters.append(ResponseAPIDefaultAdapter())
        if self.agui_config is not None or installed("agui"):
            from agentpack.frontends.agui.adapter import AGUIDefaultAdapter

            adapters.append(AGUIDefaultAdapter(config=self.agui_config))
        return adapters

    def replace(self, adapters: Sequence[Any]) -> None:
        """Serve ``adapters`` instead of the current ones (``run(protocol_adapters=...)``)."""
        self.remove()
        self.adapters, self.explicit = list(adapters), True
        if self.app.query_handler is not None:
            self.install()

    def install(self) -> None:
        """(Re)add every adapter's routes for the app's query handler."""
        self.remove()
        if not self.explicit and not self._defaults_made:
            self.adapters, self._defaults_made = self._default_adapters(), True
        routes = self.app.router.routes
        for adapter in self.adapters:
            before = {id(route) for route in routes}
            adapter.add_endpoint(self.app, self.app.runs, managed_by_app=True)
            self._routes += [route for route in routes if id(route) not in before]
        self.app.openapi_schema = None

    def remove(self) -> None:
        if self._routes:
            gone = {id(route) for route in self._routes}
            self.app.router.routes[:] = [r for r in self.app.router.routes if id(r) not in gone]
            self._routes = []
            self.app.openapi_schema = None

    def endpoints(self) -> dict[str, Any]:
        """What ``GET /`` lists for the protocols being served."""
        found: dict[str, Any] = {}
        for adapter in self.adapters:
            describe = getattr(adapter, "describe_endpoints", None)
            if callable(describe):
                found.update(describe())
        return found

    async def startup(self) -> None:
        for adapter in self.adapters:
            hook = getattr(adapter, "startup", None)
            if hook is None:
                continue
            try:
                await hook(self.app)
            except Exception:  # one protocol's trouble must not keep the agent from serving
                logger.exception("starting %s failed; its routes may answer errors", type(adapter).__name__)

    async def shutdown(self) -> None:
        for adapter in reversed(self.adapters):
            hook = getattr(adapter, "shutdown", None)
            if hook is None:
                continue
            try:
                await hook(self.app)
            except Exception:
                logger.exception("stopping %s failed; continuing shutdown", type(adapter).__name__)


__all__ = ["EXTRAS", "Protocols", "installed", "require"]
