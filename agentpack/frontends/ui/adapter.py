"""``GET /ui``: the chat page, served by the app it talks to.

The page is a static file: it finds the agent's routes itself, from the app's ``GET /``
(``endpoints.process`` and ``endpoints.stop``), so a moved ``endpoint_path`` needs nothing
here, and the same bytes work behind ``agentpack ui``, which serves them for a deployment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from agentpack.frontends.base import ProtocolAdapter
from agentpack.frontends.ui import PAGE_FILE

logger = logging.getLogger("agentpack.frontends.ui")

#: Where the page is served unless ``path=`` says otherwise.
UI_PATH = "/ui"

#: What the page's answer carries beside it (its Content-Security-Policy is in the page itself).
PAGE_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def page_bytes() -> bytes:
    """The page, as shipped in this package."""
    return resources.files(__package__).joinpath(PAGE_FILE).read_bytes()


class ChatPageAdapter(ProtocolAdapter):
    """Serves the chat page at ``path`` (default ``/ui``).  It opens no runs itself: the page's
    requests go to ``/process`` and its stop route like any other client's."""

    def __init__(self, path: str = UI_PATH, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not path.startswith("/") or path == "/":
            raise ValueError(f"ChatPageAdapter(path={path!r}): give a path such as '/ui'")
        self.path = path.rstrip("/")

    def describe_endpoints(self) -> dict[str, str]:
        return {"ui": self.path}

    def public_paths(self) -> list[str]:
        """The page's HTML is open with authentication on; its calls carry the key (docs/auth.md)."""
        return [self.path]

    def add_endpoint(self, app: Any, func: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            page: bytes | None = page_bytes()
        except OSError as exc:  # an installation without its package data: say so where the page would be
            logger.error("the chat page cannot be read (%s); reinstall agentpack", exc)
            page, problem = (
                None,
                f"agentpack's chat page is missing from this installation ({exc}); reinstall agentpack",
            )

        async def chat_page(request: Request) -> Response:
            if page is None:
                return Response(problem, status_code=500, media_type="text/plain; charset=utf-8")
            return Response(page, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

        app.add_api_route(
            self.path, chat_page, methods=["GET"], include_in_schema=False, response_model=None, name="chat_page"
        )
        return app


__all__ = ["ChatPageAdapter", "PAGE_HEADERS", "UI_PATH", "page_bytes"]
