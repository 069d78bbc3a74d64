"""The generated Lambda handler, driven with real function-URL / API Gateway event shapes."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import textwrap
from pathlib import Path

APP = textwrap.dedent(
    """
    import asyncio
    from contextlib import asynccontextmanager
    from fastapi import Response
    from agentpack import AgentApp

    STARTS = []

    @asynccontextmanager
    async def lifespan(app):
        STARTS.append("start")
        yield

    app = AgentApp(app_name="lambda-test", lifespan=lifespan)

    @app.query(framework="text")
    async def handler(msgs):
        yield "hello "
        yield "lambda"

    @app.endpoint("/echo")
    async def echo(request: dict, q: str = "none"):
        return {"body": request, "q": q, "starts": len(STARTS)}

    @app.get("/binary")
    async def binary():
        return Response(b"\\x00\\x01\\xff", media_type="application/octet-stream", headers={"set-cookie": "a=1"})
    """
)

DRIVER = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from agentpack.adapters.aws_lambda import make_handler
    handler = make_handler("app.py:app")
    results = [handler(event, None) for event in json.load(sys.stdin)]
    print(json.dumps(results))
    """
)


def v2(method: str, path: str, body=None, query: str = "", b64: bool = False) -> dict:
    raw = json.dumps(body) if body is not None else None
    if b64 and raw is not None:
        raw = base64.b64encode(raw.encode()).decode()
    return {
        "version": "2.0",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"content-type": "application/json", "host": "abc.lambda-url.us-east-1.on.aws"},
        "cookies": ["session=xyz"],
        "requestContext": {"http": {"method": method, "path": path, "sourceIp": "203.0.113.9"}},
        "body": raw,
        "isBase64Encoded": b64,
    }


def v1(method: str, path: str, body=None) -> dict:
    return {
        "httpMethod": method,
        "path": path,
        "queryStringParameters": {"q": "v1"},
        "headers": {"Content-Type": "application/json"},
        "requestContext": {"identity": {"sourceIp": "203.0.113.9"}},
        "body": json.dumps(body) if body is not None else None,
        "isBase64Encoded": False,
    }


def test_handler_serves_the_app(tmp_path: Path):
    (tmp_path / "app.py").write_text(APP)
    events = [
        v2("GET", "/health"),
        v2("POST", "/process", {"input": [{"role": "user", "content": "hi"}], "stream": False}),
        v2("POST", "/process", {"input": [{"role": "user", "content": "hi"}]}),
        v2("POST", "/echo", {"a": 1}, query="q=two", b64=True),
        v1("POST", "/echo", {"b": 2}),
        v2("GET", "/binary"),
        v2("POST", "/process", {"input": "not a list"}),
    ]
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, str(tmp_path)], input=json.dumps(events), capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    health, final, stream, echo2, echo1, binary, invalid = json.loads(result.stdout)
    assert health["statusCode"] == 200 and json.loads(health["body"])["status"] == "healthy"
    response = json.loads(final["body"])
    assert response["status"] == "completed" and response["output"][0]["content"][0]["text"] == "hello lambda"
    assert stream["headers"]["content-type"].startswith("text/event-stream")
    events_seen = [json.loads(line[6:]) for line in stream["body"].splitlines() if line.startswith("data: ")]
    assert events_seen[-1]["status"] == "completed"
    assert json.loads(echo2["body"]) == {"body": {"a": 1}, "q": "two", "starts": 1}
    assert json.loads(echo1["body"]) == {"body": {"b": 2}, "q": "v1", "starts": 1}  # lifespan ran once
    assert binary["isBase64Encoded"] and base64.b64decode(binary["body"]) == b"\x00\x01\xff"
    assert binary["cookies"] == ["a=1"]
    assert invalid["statusCode"] == 422
