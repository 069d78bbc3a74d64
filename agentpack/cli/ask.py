"""``agentpack run --ask``: serve the app and show one streamed reply in the terminal."""

from __future__ import annotations

import threading
from typing import Any

from rich.console import Console

from agentpack.cli.errors import EXIT_FAILED
from agentpack.client import AgentAPIError, build_request, delta_text, key_headers, session_headers, stream_events

console = Console(highlight=False, soft_wrap=True)


def render_stream(
    url: str,
    text: str,
    *,
    session_id: str | None = None,
    user_id: str | None = None,
    auth: Any = None,
    timeout: float | None = 300.0,
    api_key: str | None = None,
) -> int:
    """Print the reply as it streams; returns the exit code (0 when the response completed).

    ``session_id`` / ``user_id`` go into the body and into the headers that Function Compute's
    session affinity routes on; ``auth`` signs the request (a deployment that is not public)."""
    console.print(f"[bold]you>[/] {text}")
    console.print("[bold]agent>[/] ", end="")
    final: dict[str, Any] = {}
    kinds: dict[str, str] = {}  # message id -> message type, to show reasoning apart
    headers = {**session_headers(session_id, user_id), **key_headers(api_key, auth is not None)}
    try:
        for event in stream_events(
            url, build_request(text, session_id, user_id), timeout=timeout, headers=headers or None, auth=auth
        ):
            if event.get("object") == "message":
                kinds[event["id"]] = event.get("type", "message")
                if event.get("status") == "completed" and kinds[event["id"]] == "reasoning":
                    console.out("\n       ", end="")
            piece = delta_text(event)
            if piece:
                style = "dim italic" if kinds.get(event.get("msg_id", "")) == "reasoning" else None
                console.out(piece, end="", style=style, highlight=False)
            if event.get("object") == "response":
                final = event
    except AgentAPIError as exc:
        console.print(f"\n[red]the agent refused the request: {exc}[/]")
        return EXIT_FAILED
    console.print()
    status = final.get("status")
    if status != "completed":
        error = (final.get("error") or {}).get("message", "")
        console.print(f"[red]response {status}: {error}[/]")
        return EXIT_FAILED
    return 0


def serve_and_ask(
    app: Any,
    host: str,
    port: int,
    log_level: str,
    text: str,
    once: bool,
    grace: float = 10.0,
    api_key: str | None = None,
) -> int:
    """Serve ``app`` on the main thread; a helper thread asks once the server is up."""
    import uvicorn

    from agentpack.serve import log_config

    # No access log and no "run started/ended" lines: they would cut through the streamed reply.
    logging_config = log_config(log_level)
    logging_config["loggers"]["agentpack.run"] = {"level": "WARNING"}
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=logging_config,
        access_log=False,
        timeout_graceful_shutdown=grace,  # type: ignore[arg-type,unused-ignore]  # uvicorn says int; a float works
    )
    server = uvicorn.Server(config)
    outcome = {"code": 0}

    def ask() -> None:
        while not server.started:
            if server.should_exit:
                return
            threading.Event().wait(0.02)
        bound = server.servers[0].sockets[0].getsockname()[1]
        path = getattr(app, "endpoint_path", "/process")
        client_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        outcome["code"] = render_stream(f"http://{client_host}:{bound}{path}", text, api_key=api_key)
        if once:
            server.should_exit = True
        else:
            console.print(f"[dim]serving at http://{client_host}:{bound} — press Ctrl+C to stop[/]")

    threading.Thread(target=ask, name="agentpack-ask", daemon=True).start()
    server.run()
    return outcome["code"]
