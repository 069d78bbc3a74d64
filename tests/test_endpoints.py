"""@app.endpoint and native routes, over real HTTP (the AgentScope Runtime acceptance cases and more)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import uuid
from typing import Any, List

import httpx
from fastapi import Request
from pydantic import BaseModel

from agentpack import AgentApp, AgentRequest
from tests.support import user_body, http


class Item(BaseModel):
    name: str
    price: float


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    when: dt.datetime


class HasToDict:
    def to_dict(self):
        return {"kind": "sdk-object"}


class HasToMap:
    def to_map(self):
        return {"kind": "tea-model"}


def sse_data(response: httpx.Response) -> list:
    return [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]


def build_app(**options: Any) -> AgentApp:
    app = AgentApp(**options)

    @app.endpoint("/sync")
    def sync_endpoint():
        return {"status": "ok"}

    @app.endpoint("/async")
    async def async_endpoint():
        return {"status": "ok"}

    @app.endpoint("/stream_async")
    async def stream_async():
        for i in range(5):
            yield f"async chunk {i}\n"

    @app.endpoint("/stream_sync")
    def stream_sync():
        for i in range(5):
            yield f"sync chunk {i}\n"

    @app.endpoint("/stream_async_error")
    async def stream_async_error():
        yield "first"
        yield "second"
        raise ValueError("Async streaming failure")

    @app.endpoint("/stream_sync_error")
    def stream_sync_error():
        yield "first"
        raise RuntimeError("Sync streaming failure")

    @app.endpoint("/params")
    async def params(first: int, second: str = "x"):
        yield {"first": first, "second": second}

    @app.endpoint("/raw_request")
    async def raw_request(request: Request):
        body = await request.json()
        yield {"method": request.method, "body": body}

    @app.endpoint("/items")
    async def items(items: List[Item]):
        for item in items:
            yield item

    @app.endpoint("/agent_request")
    async def agent_request(request: AgentRequest):
        for i in range(10):
            yield {"i": i, "session": request.session_id}

    @app.endpoint("/agent_request_direct")
    async def agent_request_direct(request: AgentRequest):
        return {"hello": "world", "session": request.session_id}

    @app.endpoint("/rich")
    def rich_values():
        return {
            "model": Item(name="n", price=1.5),
            "dataclass": Point(1, dt.datetime(2026, 1, 2, 3, 4, 5)),
            "enum": Color.RED,
            "bytes": b"raw",
            "binary": b"\xff\x00",
            "set": {3, 1, 2},
            "uuid": uuid.UUID(int=1),
            "to_dict": HasToDict(),
            "to_map": HasToMap(),
            "nan": float("nan"),
        }

    @app.endpoint("/deep")
    def deep():
        node: dict = {}
        node["self"] = node
        return node

    @app.endpoint("/get_only", methods=["GET"])
    def get_only(q: str):
        return {"q": q}

    @app.get("/native")
    async def native():
        return {"native": True}

    return app


def test_plain_returns_are_json(serve):
    url = serve(build_app())
    assert http.post(f"{url}/sync").json() == {"status": "ok"}
    assert http.post(f"{url}/async").json() == {"status": "ok"}
    assert http.get(f"{url}/native").json() == {"native": True}
    assert http.get(f"{url}/get_only", params={"q": "v"}).json() == {"q": "v"}
    assert http.post(f"{url}/get_only").status_code == 405


def test_generators_stream_sse(serve):
    url = serve(build_app())
    response = http.post(f"{url}/stream_async")
    assert response.headers["content-type"].startswith("text/event-stream")
    assert sse_data(response) == [f"async chunk {i}\n" for i in range(5)]
    assert sse_data(http.post(f"{url}/stream_sync")) == [f"sync chunk {i}\n" for i in range(5)]


def test_exception_mid_stream_ends_with_one_error_event(serve):
    url = serve(build_app())
    events = sse_data(http.post(f"{url}/stream_async_error"))
    # the exception's text stays in the server's log unless debug is on (docs/migrating.md)
    safe = "Unknown agent error; the server's log has the details"
    assert events == ["first", "second", {"error": safe, "error_type": "ValueError", "message": "Error in streaming generator"}]
    events = sse_data(http.post(f"{url}/stream_sync_error"))
    assert events[-1] == {"error": safe, "error_type": "RuntimeError", "message": "Error in streaming generator"}
    assert len(events) == 2


def test_with_debug_on_the_error_event_carries_the_exceptions_text(serve, monkeypatch):
    monkeypatch.delenv("AGENTPACK_DEBUG", raising=False)
    url = serve(build_app(debug=True))
    events = sse_data(http.post(f"{url}/stream_async_error"))
    assert events[-1] == {"error": "Async streaming failure", "error_type": "ValueError", "message": "Error in streaming generator"}
    monkeypatch.setenv("AGENTPACK_DEBUG", "1")  # the variable turns it on for an app built without debug
    url = serve(build_app())
    assert sse_data(http.post(f"{url}/stream_async_error"))[-1]["error"] == "Async streaming failure"


def test_parameter_resolution(serve):
    url = serve(build_app())
    assert sse_data(http.post(f"{url}/params", params={"first": 1, "second": "test"})) == [{"first": 1, "second": "test"}]
    assert http.post(f"{url}/params", params={"first": "one"}).status_code == 422
    assert sse_data(http.post(f"{url}/raw_request", json={"a": 1})) == [{"method": "POST", "body": {"a": 1}}]
    items = sse_data(http.post(f"{url}/items", json=[{"name": "a", "price": 1}, {"name": "b", "price": 2.5}]))
    assert items == [{"name": "a", "price": 1.0}, {"name": "b", "price": 2.5}]
    assert http.post(f"{url}/items", json=[{"name": "a"}]).status_code == 422


def test_agent_request_bodies(serve):
    url = serve(build_app())
    events = sse_data(http.post(f"{url}/agent_request", json=user_body(session_id="s")))
    assert events == [{"i": i, "session": "s"} for i in range(10)]
    assert http.post(f"{url}/agent_request_direct", json=user_body(session_id="s")).json() == {"hello": "world", "session": "s"}
    invalid = http.post(f"{url}/agent_request_direct", json={"session_id": "s"})
    assert invalid.status_code == 422 and ["body", "input"] in [e["loc"] for e in invalid.json()["detail"]]


def test_deep_serialization(serve):
    url = serve(build_app())
    assert http.post(f"{url}/rich").json() == {
        "model": {"name": "n", "price": 1.5},
        "dataclass": {"x": 1, "when": "2026-01-02T03:04:05"},
        "enum": "red",
        "bytes": "raw",
        "binary": "/wA=",
        "set": [1, 2, 3],
        "uuid": "00000000-0000-0000-0000-000000000001",
        "to_dict": {"kind": "sdk-object"},
        "to_map": {"kind": "tea-model"},
        "nan": None,
    }
    deep = http.post(f"{url}/deep").json()
    depth = 0
    while isinstance(deep, dict):
        deep, depth = deep["self"], depth + 1
    assert "nested deeper than" in deep and depth > 10


def test_root_lists_what_is_registered(serve):
    app = AgentApp(app_name="Friday", app_description="desc")
    url = serve(app)
    root = http.get(f"{url}/").json()
    assert root["name"] == "Friday" and root["description"] == "desc"
    assert "process" not in root["endpoints"]
    assert http.post(f"{url}/process", json=user_body()).status_code in (404, 405)

    app2 = build_app()

    @app2.query(framework="text")
    async def handler(msgs):
        yield "x"

    root2 = http.get(f"{serve(app2)}/").json()
    assert root2["endpoints"]["process"] == "/process"
    assert {"path": "/stream_async", "methods": ["POST"]} in root2["endpoints"]["custom"]
    assert {"path": "/get_only", "methods": ["GET"]} in root2["endpoints"]["custom"]


def test_custom_endpoint_path(serve):
    app = AgentApp(endpoint_path="/agent/run")

    @app.query(framework="text")
    async def handler(msgs):
        yield "moved"

    url = serve(app)
    assert http.get(f"{url}/").json()["endpoints"]["process"] == "/agent/run"
    assert "moved" in http.post(f"{url}/agent/run", json=user_body()).text
