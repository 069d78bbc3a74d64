"""The protocols an AgentApp serves beside ``/process`` — A2A, the OpenAI Responses API and
AG-UI — installed, replaced and started as one group.

By default an app serves all three, as AgentScope Runtime's does, with two differences that
keep apps light: A2A and AG-UI are served only where their extra is installed
(``agentpack[a2a]``, ``agentpack[agui]``), and their packages are imported on their first
request, never at import or start-up — unless the app configures them (``a2a_config=``,
``agui_config=``), which also makes a missing extra an error at construction.  The default
routes themselves wait for the first request for one of their paths (:class:`FirstRequest`).
``AgentApp(protocol_adapters=[...])`` (or ``run(protocol_adapters=...)``) replaces the
defaults with the given adapters, as upstream's does; ``[]`` serves none.

The chat page (``GET /ui``, :mod:`agentpack.frontends.ui`) is one more front-end, served
only when asked for: ``AGENTPACK_UI=1`` in the environment (set by ``run(web_ui=True)``,
``agentpack run --ui`` and, for its instances, ``agentpack emulate --ui``), ``enable_ui()``, or
a ``ChatPageAdapter`` in ``protocol_adapters``.  An app that does not ask has no ``/ui`` route
and never imports the page's package; one that asks where the package is missing (an artifact
built without ``ui``) logs why and serves on without it.

Each adapter adds its routes with ``add_endpoint(app, app.runs)``: the app's run source, so
every run goes through the session guard like ``/process``.  The routes an adapter added are
remembered, so re-installing (a second ``@app.query``, a moved ``endpoint_path``, new
adapters) never leaves a stale route behind.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from agentpack.frontends.paths import DEFAULT_PATHS

if TYPE_CHECKING:
    from agentpack.app.agent_app import AgentApp

logger = logging.getLogger("agentpack.protocols")

#: protocol -> (the package its extra installs, the extra)
EXTRAS = {"a2a": ("a2a", "a2a"), "agui": ("ag_ui", "agui")}

#: The switch for the chat page at /ui ("1", "true", "yes" or "on"); processes that import the
#: app without knowing of the page (workers, platform adapters, emulated instances) read it.
UI_ENV = "AGENTPACK_UI"


def ui_requested() -> bool:
    """Whether the environment asks for the chat page."""
    return os.environ.get(UI_ENV, "").strip().lower() in ("1", "true", "yes", "on")


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


class FirstRequest(BaseRoute):
    """Where the default protocols' routes go, made by the first request for one of their
    paths (or the first look at the app's routes, its OpenAPI schema or ``GET /``).

    Making them imports the protocols' modules and builds five FastAPI routes: about a fifth
    of what an app's start-up costs beyond FastAPI's own, paid by every start although most
    agents are only ever asked over ``/process``.  This route never matches itself: when a request for one of
    the paths reaches it, it has the routes made and put right after it, where the router,
    going on down the list, finds them (so they keep their place among the app's routes).
    """

    def __init__(self, make: Callable[[FirstRequest], None]) -> None:
        self._make: Callable[[FirstRequest], None] | None = make

    def make_routes(self) -> None:
        """Have the routes made (once)."""
        make, self._make = self._make, None
        if make is not None:
            make(self)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if self._make is not None and scope.get("path", "").endswith(DEFAULT_PATHS):  # under any root_path
            self.make_routes()
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        self.make_routes()  # the router goes on to the routes just made
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:  # never matched
        raise RuntimeError("FirstRequest never matches a request")


class Protocols:
    """The app's protocol adapters and the routes each one added."""

    def __init__(self, app: AgentApp, adapters: Sequence[Any] | None, a2a_config: Any, agui_config: Any) -> None:
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
        self._page: Any = None  # the chat page's adapter, while installed
        self._ui_enabled = False
        self._ui_missing_told = False
        self._first_request: FirstRequest | None = None  # while the default routes are not made

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

    def _listed_ui(self) -> bool:
        """Whether an adapter given in ``protocol_adapters`` serves the page already."""
        for adapter in self.adapters:
            describe = getattr(adapter, "describe_endpoints", None)
            if callable(describe) and "ui" in describe():
                return True
        return False

    def _ui_adapter(self) -> Any:
        """The chat page's adapter when it is asked for (and not listed already), else None."""
        if not (self._ui_enabled or ui_requested()) or self._listed_ui():
            return None
        try:
            from agentpack.frontends.ui.adapter import ChatPageAdapter
        except ModuleNotFoundError as exc:
            if not (exc.name or "").startswith("agentpack.frontends.ui"):
                raise
            if not self._ui_missing_told:
                self._ui_missing_told = True
                logger.warning(
                    "the chat page was asked for (%s=1 or web_ui=True) but this installation has none: an artifact "
                    "leaves it out unless built with `agentpack build --ui` (or ui = true in agentpack.toml); serving without /ui",
                    UI_ENV,
                )
            return None
        return ChatPageAdapter()

    def _serving(self) -> list[Any]:
        """Every adapter of the app: the protocols, then the chat page while it is installed."""
        return [*self.adapters, self._page] if self._page is not None else list(self.adapters)

    def enable_ui(self) -> None:
        """Serve the chat page at /ui (``run(web_ui=True)``), whatever the environment says."""
        self._ui_enabled = True
        if self.app.query_handler is not None:
            self.install()

    def replace(self, adapters: Sequence[Any]) -> None:
        """Serve ``adapters`` instead of the current ones (``run(protocol_adapters=...)``)."""
        self.remove()
        self.adapters, self.explicit = list(adapters), True
        if self.app.query_handler is not None:
            self.install()

    def install(self) -> None:
        """(Re)add every adapter's routes for the app's query handler."""
        self.remove()
        self._page = self._ui_adapter()
        if self._may_wait():
            self._first_request = FirstRequest(self._make_defaults)
            self.app.router.routes.append(self._first_request)
            self._routes = [self._first_request]
        else:
            self._make_adapters()
            self._add_routes()
        self.app.openapi_schema = None

    def _may_wait(self) -> bool:
        """Whether the routes may wait for their first request: the default adapters, not made
        yet, none configured (a configured protocol starts with the app) and no chat page."""
        configured = self.a2a_config is not None or self.agui_config is not None
        return not (self.explicit or self._defaults_made or configured or self._page is not None)

    def _make_defaults(self, first_request: FirstRequest) -> None:
        """Make the default adapters' routes and put them right after ``first_request``."""
        self._make_adapters()
        routes = self.app.router.routes
        count = len(routes)
        self._add_routes()
        added = routes[count:]
        del routes[count:]
        at = next((i + 1 for i, route in enumerate(routes) if route is first_request), len(routes))
        routes[at:at] = added
        self.app.openapi_schema = None

    def _make_adapters(self) -> None:
        """The default adapters, made once, unless the app gave its own."""
        if not self.explicit and not self._defaults_made:
            self.adapters, self._defaults_made = self._default_adapters(), True

    def make_routes(self) -> None:
        """Make the routes now if they wait for a first request (the app's routes are looked at)."""
        if self._first_request is not None:
            self._first_request.make_routes()

    def _add_routes(self) -> None:
        routes = self.app.router.routes
        for adapter in self._serving():
            before = {id(route) for route in routes}
            adapter.add_endpoint(self.app, self.app.runs, managed_by_app=True)
            added = [route for route in routes if id(route) not in before]
            public = getattr(adapter, "public_paths", None)  # the card, the chat page's HTML: open to all
            if callable(public):
                paths = set(public())
                self.app.authentication.mark_open(r for r in added if getattr(r, "path", None) in paths)
            self._routes += added

    def remove(self) -> None:
        if self._routes:
            gone = {id(route) for route in self._routes}
            self.app.router.routes[:] = [r for r in self.app.router.routes if id(r) not in gone]
            self._routes = []
            self.app.openapi_schema = None
        self._page = None
        self._first_request = None

    def endpoints(self) -> dict[str, Any]:
        """What ``GET /`` lists for the protocols being served."""
        self.make_routes()
        found: dict[str, Any] = {}
        for adapter in self._serving():
            describe = getattr(adapter, "describe_endpoints", None)
            if callable(describe):
                found.update(describe())
        return found

    async def startup(self) -> None:
        for adapter in self._serving():
            hook = getattr(adapter, "startup", None)
            if hook is None:
                continue
            try:
                await hook(self.app)
            except Exception:  # one protocol's trouble must not keep the agent from serving
                logger.exception("starting %s failed; its routes may answer errors", type(adapter).__name__)

    async def shutdown(self) -> None:
        for adapter in reversed(self._serving()):
            hook = getattr(adapter, "shutdown", None)
            if hook is None:
                continue
            try:
                await hook(self.app)
            except Exception:
                logger.exception("stopping %s failed; continuing shutdown", type(adapter).__name__)


__all__ = ["EXTRAS", "FirstRequest", "Protocols", "UI_ENV", "installed", "require", "ui_requested"]
