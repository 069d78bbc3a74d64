"""A small Agent API client: send a request to ``/process`` and read its events as they arrive.

Used by ``agentpack run --ask`` and by the commands that talk to a deployed agent; it is
also a handy way to script an agent from Python.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx


#: The API key the commands send when ``--api-key`` is not given (docs/auth.md).
API_KEY_ENV = "AGENTPACK_API_KEY"


def key_headers(api_key: str | None, signed: bool = False) -> dict[str, str]:
    """The header carrying an app's API key: ``Authorization: Bearer``, or — when the platform's
    request signing owns ``Authorization`` (``signed``) — ``X-Agentpack-Api-Key``."""
    from agentpack.headers import API_KEY_HEADER

    if not api_key:
        return {}
    return {API_KEY_HEADER: api_key} if signed else {"Authorization": f"Bearer {api_key}"}


def build_request(text: str, session_id: str | None = None, user_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """The body of a one-message user request."""
    body: dict[str, Any] = {"input": [{"role": "user", "content": [{"type": "text", "text": text}]}], **extra}
    if session_id:
        body["session_id"] = session_id
    if user_id:
        body["user_id"] = user_id
    return body


class AgentAPIError(RuntimeError):
    """The server refused the request (4xx/5xx before the stream started)."""

    def __init__(self, status_code: int, detail: Any) -> None:
        super().__init__(f"HTTP {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


def stream_events(
    url: str,
    body: dict[str, Any],
    timeout: float | None = 300.0,
    headers: dict[str, str] | None = None,
    auth: httpx.Auth | None = None,
) -> Iterator[dict[str, Any]]:
    """POST ``body`` to ``url`` and yield each SSE event's JSON as soon as it is received.

    ``auth`` is an ``httpx.Auth`` for endpoints that need signed requests (see
    ``agentpack.deployers.clients.signing``)."""
    import httpx

    with (
        httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0)) as client,
        client.stream("POST", url, json=body, headers=headers, auth=auth) as response,
    ):
        if response.status_code >= 400:
            response.read()
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise AgentAPIError(response.status_code, detail)
        for data in sse_data(response.iter_text()):
            yield json.loads(data)


def sse_data(chunks: Iterable[str]) -> Iterator[str]:
    """The ``data`` of each server-sent event in ``chunks`` of text.

    Lines end only where SSE says they do (CR LF, LF or CR) — not at the other characters that
    ``str.splitlines`` (and so httpx's ``iter_lines``) also breaks on, such as U+2028, which
    JSON may carry unescaped.  An event's ``data:`` lines are joined with LF, as the SSE
    standard joins them; comments and other fields are skipped.
    """
    buffer = ""
    data: list[str] = []
    for chunk in chunks:
        buffer += chunk
        while True:
            cut = min((i for i in (buffer.find("\n"), buffer.find("\r")) if i >= 0), default=-1)
            if cut < 0 or (buffer[cut] == "\r" and cut == len(buffer) - 1):  # CR may be half of CR LF
                break
            line = buffer[:cut]
            buffer = buffer[cut + (2 if buffer.startswith("\r\n", cut) else 1) :]
            if not line:  # a blank line ends the event
                if data:
                    yield "\n".join(data)
                data = []
            elif line.startswith("data:"):
                data.append(line[6:] if line.startswith("data: ") else line[5:])
    if data:
        yield "\n".join(data)


def delta_text(event: dict[str, Any]) -> str | None:
    """The text carried by a content delta, if any."""
    if event.get("object") == "content" and event.get("delta") and event.get("type") == "text":
        return event.get("text")
    return None


def session_headers(session_id: str | None, user_id: str | None) -> dict[str, str]:
    """Headers naming the session (full ids, percent-encoded, for the app) and its affinity key
    (a hash that fits Function Compute's rule for affinity ids, for the platform's routing)."""
    from agentpack.headers import AFFINITY_HEADER, affinity_key
    from agentpack.headers import session_headers as named

    if not session_id:
        return {}
    return {**named(session_id, user_id), AFFINITY_HEADER: affinity_key(session_id, user_id)}


def agent_paths(base_url: str, auth: httpx.Auth | None = None, timeout: float = 10.0) -> dict[str, str]:
    """The app's ``process`` and ``stop`` paths as its ``GET /`` advertises them (AgentApp defaults otherwise)."""
    import httpx

    paths = {"process": "/process", "stop": "/process/stop"}
    try:
        answer = httpx.get(f"{base_url.rstrip('/')}/", auth=auth, timeout=timeout)
        endpoints = answer.json().get("endpoints", {}) if answer.status_code == 200 else {}
    except (httpx.HTTPError, ValueError, AttributeError):
        endpoints = {}
    for key in paths:
        if isinstance(endpoints.get(key), str):
            paths[key] = endpoints[key]
    if "stop" not in endpoints and paths["process"] != "/process":
        paths["stop"] = paths["process"].rstrip("/") + "/stop"
    return paths


def stop_run(
    url: str,
    session_id: str,
    user_id: str | None = None,
    auth: httpx.Auth | None = None,
    timeout: float = 30.0,
    api_key: str | None = None,
) -> dict[str, Any]:
    """``POST {endpoint_path}/stop`` for a session; the app's answer (``{"stopped": bool, ...}``)."""
    import httpx

    body = {"session_id": session_id, **({"user_id": user_id} if user_id else {})}
    headers = {**session_headers(session_id, user_id), **key_headers(api_key, auth is not None)}
    answer = httpx.post(url, json=body, headers=headers, auth=auth, timeout=timeout)
    if answer.status_code >= 400:
        try:
            detail = answer.json().get("detail", answer.text)
        except ValueError:
            detail = answer.text
        raise AgentAPIError(answer.status_code, detail)
    stopped: dict[str, Any] = answer.json()
    return stopped
