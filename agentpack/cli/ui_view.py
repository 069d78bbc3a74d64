"""The chat page from the command line: ``agentpack run --ui`` (the switch the app reads) and
``agentpack ui NAME|URL``, which serves the page on this machine for a deployed agent.

A deployment's URL may need signed requests (Function Compute with function authentication,
Lambda function URLs with AWS_IAM), which a browser cannot make.  ``agentpack ui`` therefore
serves the page itself on 127.0.0.1 and forwards the page's two requests, ``POST /process``
and ``POST /process/stop``, to the deployment, signed exactly as ``agentpack invoke`` and
``agentpack stop`` sign them (``service.endpoint``'s ``httpx.Auth``) and streamed back as
they arrive.  The page is the same file the app serves (agentpack/frontends/ui/chat.html),
read as data: nothing of the runtime is imported.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import httpx

#: The variable that makes an app serve its chat page at /ui (read by agentpack/app/protocols.py).
UI_ENV = "AGENTPACK_UI"

logger = logging.getLogger("agentpack.ui")

#: Request headers the page sends that the deployment needs: the body's type, the session ids and
#: the affinity id the platforms' session affinity routes on (the relay adds it when the page could
#: not: see ``affinity_for``).
FORWARDED_REQUEST = ("content-type", "accept", "x-agentpack-session-id", "x-agentpack-user-id", "x-agentpack-affinity")
#: Response headers passed back: the stream's type and caching, the session ids, request ids.
FORWARDED_RESPONSE = (
    "content-type",
    "cache-control",
    "x-accel-buffering",
    "x-agentpack-session-id",
    "x-agentpack-user-id",
    "x-fc-request-id",
    "x-amzn-requestid",
)
PAGE_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def ask_for_ui() -> None:
    """Make apps loaded from now on (and the processes this one starts) serve the chat page."""
    os.environ[UI_ENV] = "1"


def serves_ui(asgi_app: Any) -> str | None:
    """The path of the app's chat page, or None when it has none (not an AgentApp, no handler)."""
    describe = getattr(asgi_app, "registered_endpoints", None)
    if not callable(describe):
        return None
    page = describe().get("ui")
    return page if isinstance(page, str) else None


def announce_page(asgi_app: Any, host: str, port: int) -> None:
    """``agentpack run --ui``: say where the page is, or why there is none."""
    from rich.markup import escape

    from agentpack.cli.errors import err_console

    page = serves_ui(asgi_app)
    if page is None:
        err_console.print(
            "[yellow]warning:[/] --ui: this app serves no chat page (only an AgentApp with an @app.query handler has one)"
        )
        return
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    where = f"http://{shown}:{port}{page}" if port else f"{page} on the port uvicorn reports"
    err_console.print(f"[bold green]chat page[/] at {escape(where)}")


def page_bytes() -> bytes:
    """The chat page as this installation ships it (the file the app serves at /ui)."""
    return resources.files("agentpack").joinpath("frontends").joinpath("ui").joinpath("chat.html").read_bytes()


def affinity_for(headers: dict[str, str]) -> dict[str, str]:
    """The affinity header for a request that names its session but carries none (a page served
    over plain http has no ``crypto.subtle`` to hash with), so a run and its stop reach one instance."""
    from urllib.parse import unquote

    from agentpack.headers import AFFINITY_HEADER, affinity_key

    session = unquote(headers.get("x-agentpack-session-id", ""))
    if not session or "x-agentpack-affinity" in headers:
        return {}
    return {AFFINITY_HEADER: affinity_key(session, unquote(headers.get("x-agentpack-user-id", "")) or None)}


def relay_app(
    upstream: str,
    paths: dict[str, str],
    auth: Any = None,
    name: str | None = None,
    timeout: float = 300.0,
    api_key: str | None = None,
) -> Any:
    """An ASGI app serving the page at /ui and forwarding /process and /process/stop to
    ``upstream`` + ``paths["process"]`` / ``paths["stop"]``, each request signed by ``auth``
    and carrying the page's API key, else ``api_key`` (the deployment's, as `invoke` finds it)."""
    import anyio
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
    from starlette.routing import Route

    from agentpack.client import key_headers

    upstream = upstream.rstrip("/")
    targets = {"process": upstream + paths["process"], "stop": upstream + paths["stop"]}
    page = page_bytes()
    clients: dict[str, httpx.AsyncClient] = {}

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with httpx.AsyncClient(auth=auth, timeout=httpx.Timeout(timeout, connect=10.0)) as client:
            clients["upstream"] = client
            yield

    async def root(request: Request) -> Response:
        if "text/html" in request.headers.get("accept", ""):
            return RedirectResponse("/ui")
        return JSONResponse(
            {
                "name": name or upstream,
                "relay_for": upstream,
                "endpoints": {"process": "/process", "stop": "/process/stop", "ui": "/ui"},
            }
        )

    async def chat_page(request: Request) -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    async def forward(request: Request, url: str) -> Response:
        client = clients["upstream"]
        headers = {key: request.headers[key] for key in FORWARDED_REQUEST if key in request.headers}
        headers.update(affinity_for(headers))
        bearer = request.headers.get("authorization", "")
        key = bearer[7:].strip() if bearer[:7].lower() == "bearer " else api_key
        if key:  # the page's API key (docs/auth.md) or the deployment's, sent on as `invoke` sends it
            headers.update(key_headers(key, signed=auth is not None))
        outgoing = client.build_request("POST", url, content=await request.body(), headers=headers)
        try:
            answer = await client.send(outgoing, stream=True)
        except httpx.HTTPError as exc:
            return JSONResponse(
                {"detail": f"agentpack ui could not reach {url}: {type(exc).__name__}: {exc}"}, status_code=502
            )
        kept = {key: value for key, value in answer.headers.items() if key.lower() in FORWARDED_RESPONSE}

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in answer.aiter_bytes():
                    yield chunk
            except httpx.HTTPError as exc:  # the page sees the stream end without its terminal event
                logger.warning("the stream from %s broke off: %s", url, exc)
            finally:
                with anyio.CancelScope(shield=True):  # also when the page went away: close upstream
                    await answer.aclose()

        return StreamingResponse(body(), status_code=answer.status_code, headers=kept)

    async def process(request: Request) -> Response:
        return await forward(request, targets["process"])

    async def stop(request: Request) -> Response:
        return await forward(request, targets["stop"])

    routes = [
        Route("/", root, methods=["GET"]),
        Route("/ui", chat_page, methods=["GET"]),
        Route("/process", process, methods=["POST"]),
        Route("/process/stop", stop, methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def run_ui(
    project: Path,
    name_or_url: str,
    target: str | None,
    host: str,
    port: int,
    timeout: float,
    as_json: bool,
    api_key: str | None = None,
) -> int:
    """``agentpack ui``: serve the page for a deployment until Ctrl+C."""
    from agentpack.cli.deploy_view import View, warn_key_problem
    from agentpack.client import agent_paths
    from agentpack.deployers import service

    view = View(as_json)

    def work() -> int:
        import uvicorn

        where = service.endpoint(project, name_or_url, target, key=api_key)
        warn_key_problem(where)
        paths = agent_paths(where.url, where.auth)
        label = f"{where.target}/{where.name}" if where.name else where.url
        app = relay_app(where.url, paths, where.auth, label, timeout, where.api_key)
        server = uvicorn.Server(
            uvicorn.Config(
                app, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=1
            )
        )

        def announce() -> None:
            while not server.started:
                if server.should_exit:
                    return
                threading.Event().wait(0.02)
            bound = server.servers[0].sockets[0].getsockname()[1]
            shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
            url = f"http://{shown}:{bound}"
            if as_json:
                view.emit(
                    {
                        "ui": f"{url}/ui",
                        "url": url,
                        "upstream": where.url,
                        "process": where.url + paths["process"],
                        "stop": where.url + paths["stop"],
                        "signed": where.auth is not None,
                    }
                )
            else:
                view.console.print(f"[bold green]chat page[/] for {label}: {url}/ui")
                signed = (
                    "signed as `agentpack invoke` signs them" if where.auth is not None else "unsigned (a public URL)"
                )
                view.console.print(f"  forwards /process and /process/stop to {where.url}, {signed}; Ctrl+C stops")
            if where.auth is not None and host not in ("127.0.0.1", "localhost", "::1"):
                view.console.print(
                    f"[yellow]warning:[/] --host {host}: anyone who reaches this port talks to the deployment with your credentials"
                )

        threading.Thread(target=announce, name="agentpack-ui-announce", daemon=True).start()
        server.run()
        return 0

    return view.guarded(work)


__all__ = ["UI_ENV", "announce_page", "ask_for_ui", "page_bytes", "relay_app", "run_ui", "serves_ui"]
