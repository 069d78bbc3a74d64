"""``/process`` and its ``/stop`` read their bodies themselves (agentpack/app/bodies.py), so that
an agent's start never imports ``pydantic.v1``: their answers and their OpenAPI description must
be exactly those of a FastAPI route with a body parameter of the same model, whichever FastAPI
is installed.  Each check here compares with such a route, built in the same test."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
import textwrap
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Header

from agentpack import AgentApp, AgentRequest
from agentpack.app import errors
from agentpack.app.process import StopRequest
from tests.support import in_process

JSON = {"content-type": "application/json"}

#: (body, headers): what clients send, good and bad.
BODIES: list[tuple[bytes, dict[str, str]]] = [
    (b"", JSON),
    (b"", {}),
    (b"null", JSON),
    (b"[1, 2]", JSON),
    (b'"text"', JSON),
    (b"{}", JSON),
    (b'{"input": [', JSON),
    (b'{"input": "\xff"}', JSON),
    (b'{"input": []}', {}),
    (b'{"input": []}', {"content-type": "text/plain"}),
    (b"input=1", {"content-type": "application/x-www-form-urlencoded"}),
    (b'{"input": [], "stream": "yes", "seed": false, "n": 9, "session_id": "a\\nb"}', JSON),
    (b'{"input": [{"role": "user", "content": "\\ud800"}]}', JSON),
    (b'{"input": [], "\\ud83d": 1}', JSON),
    (
        b'{"input": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}',
        {"content-type": "application/vnd.x+json"},
    ),
    (
        b'{"input": [{"role": "user", "content": [{"type": "movie"}]}]}',
        {"content-type": "application/json; charset=utf-8"},
    ),
    (b'{"session_id": "\xe4\xbc\x9a\xe8\xaf\x9d", "user_id": 7}', JSON),
    ('{"input": [{"role": "user", "content": "你好 🙂"}], "stream": false, "session_id": "会话"}'.encode(), JSON),
]


def reference(**fastapi_kwargs: Any) -> FastAPI:
    """FastAPI's own routes with body parameters of the same models, answering 200 when valid;
    their refusals rendered by agentpack's handlers (FastAPI's own cannot write a lone surrogate)."""
    app = FastAPI(**fastapi_kwargs)
    errors.install(app)

    @app.post("/process")
    async def process(agent_request: AgentRequest) -> dict[str, str]:
        return {"valid": "yes"}

    @app.post("/process/stop")
    async def stop(body: StopRequest) -> dict[str, str]:
        return {"valid": "yes"}

    return app


def agent(**keywords: Any) -> AgentApp:
    app = AgentApp(app_name="bodies", **keywords)

    @app.query(framework="text")
    async def handler(msgs):
        yield "ok"

    return app


def answers(app: Any, path: str) -> list[tuple[int, Any]]:
    """Every refusal's status and JSON body; a 200 (a valid body) as just its status."""

    async def send_all() -> list[tuple[int, Any]]:
        out: list[tuple[int, Any]] = []
        async with in_process(app) as client:
            for body, headers in BODIES:
                response = await client.post(path, content=body, headers=headers)
                out.append((response.status_code, None if response.status_code == 200 else response.json()))
        return out

    return asyncio.run(send_all())


@pytest.mark.parametrize("path", ["/process", "/process/stop"])
@pytest.mark.parametrize("strict", [None, False])
def test_every_body_gets_the_answer_fastapi_gives_a_body_parameter(path: str, strict: bool | None) -> None:
    keywords = {} if strict is None else {"strict_content_type": strict}
    ours, theirs = answers(agent(**keywords), path), answers(reference(**keywords), path)
    assert ours == theirs
    assert {status for status, _ in ours} >= {200, 400, 422}  # the cases reach every kind of answer


def test_the_openapi_schema_describes_the_bodies_as_fastapi_would() -> None:
    ours, theirs = agent().openapi(), reference().openapi()
    for path in ("/process", "/process/stop"):
        assert ours["paths"][path]["post"]["requestBody"] == theirs["paths"][path]["post"]["requestBody"]
    for name in ("AgentRequest", "StopRequest", "Message", "TextContent"):
        assert ours["components"]["schemas"][name] == theirs["components"]["schemas"][name]


def test_describing_the_routes_leaves_them_serving() -> None:
    app = agent()
    routes = list(app.routes)
    assert app.openapi()["paths"]["/process"]["post"]["requestBody"]["required"] is True
    assert app.routes == routes  # the described twins were only for the schema

    async def ask() -> httpx.Response:
        async with in_process(app) as client:
            return await client.post("/process", json={"input": [{"role": "user", "content": "你好"}], "stream": False})

    response = asyncio.run(ask())
    assert response.status_code == 200 and response.json()["status"] == "completed"


def test_the_handlers_own_dependencies_are_still_solved_and_documented() -> None:
    app = AgentApp(app_name="deps")

    async def caller(x_caller: str = Header("anonymous")) -> str:
        return x_caller

    @app.query(framework="text")
    async def handler(msgs, who: str = Depends(caller)):
        yield f"hello {who}"

    async def ask() -> httpx.Response:
        async with in_process(app) as client:
            body = {"input": [{"role": "user", "content": "hi"}], "stream": False}
            return await client.post("/process", json=body, headers={"x-caller": "xiao-ming"})

    response = asyncio.run(ask())
    assert response.status_code == 200
    assert response.json()["output"][0]["content"][0]["text"] == "hello xiao-ming"
    operation = app.openapi()["paths"]["/process"]["post"]
    assert [p["name"] for p in operation["parameters"]] == ["x-caller"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AgentRequest"
    }


def test_an_agents_start_imports_no_pydantic_v1() -> None:
    """The cold-start saving itself: building the app, starting it and answering /health and a
    run import no ``pydantic.v1`` (FastAPI imports it for any route with a body parameter)."""
    script = textwrap.dedent(
        """
        import sys
        import httpx, asyncio
        from agentpack import AgentApp

        app = AgentApp(app_name="v1")

        @app.query(framework="text")
        async def handler(msgs):
            yield "ok"

        async def main():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                assert (await client.get("/health")).status_code == 200
                body = {"input": [{"role": "user", "content": "hi"}], "stream": False}
                assert (await client.post("/process", json=body)).status_code == 200
                assert (await client.post("/process/stop", json={"session_id": "s"})).status_code == 200
            print("pydantic.v1" in sys.modules)

        asyncio.run(main())
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr


@pytest.mark.skipif(
    "max_body_size" not in inspect.signature(FastAPI.__init__).parameters,
    reason="the installed FastAPI has no max_body_size (older than the one Python 3.11 installs here)",
)
@pytest.mark.parametrize("path", ["/process", "/process/stop"])
def test_a_body_over_fastapis_own_limit_gets_its_413(path: str) -> None:
    """``FastAPI(max_body_size=...)`` (passed through AgentApp) refuses a chunked body as it is
    read; the route must let that signal through to FastAPI's 413, not make it a 400."""
    big = b'{"input": [], "pad": "' + b"x" * 5000 + b'"}'

    async def chunks() -> Any:
        for start in range(0, len(big), 500):
            yield big[start : start + 500]

    async def send(app: Any) -> list[int]:
        async with in_process(app) as client:
            whole = await client.post(path, content=big, headers=JSON)
            chunked = await client.post(path, content=chunks(), headers=JSON)
            return [whole.status_code, chunked.status_code]

    assert (
        asyncio.run(send(agent(max_body_size=1000))) == asyncio.run(send(reference(max_body_size=1000))) == [413, 413]
    )
