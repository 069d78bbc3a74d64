"""What the tests share: real servers and clients, waiting with deadlines, and the checks every
event stream must pass.  Imported by the tests (``from tests.support import ...``); the
pytest fixtures built on it are in conftest.py.
"""

from __future__ import annotations

import contextlib
import json
import threading
from typing import Any, AsyncIterator, Callable, Optional

import httpx
import pytest

from agentpack.protocol.event_models import ContentEvent, MessageEvent, ResponseEvent


class RedisServer:
    """A private redis-server on a free loopback port, which tests may kill and restart."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: Any = None

    def start(self) -> "RedisServer":
        import shutil
        import subprocess

        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed; install it (Debian: apt-get install redis-server) to run these tests")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
        )
        wait_until(self.answers, 10, f"redis-server on port {self.port} did not answer")
        return self

    def answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.2).ping())
        except redis.exceptions.ConnectionError:
            return False

    def client(self) -> Any:
        import redis

        return redis.Redis(port=self.port, decode_responses=True)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


def wait_until(condition: Callable[[], Any], timeout: float, message: Any, interval: float = 0.01) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``message`` at the deadline.

    ``message`` may be a callable, called at the deadline to describe what was seen.
    """
    import time

    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{message() if callable(message) else message} (waited {timeout}s)")
        time.sleep(interval)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

_MODELS = {"response": ResponseEvent, "message": MessageEvent, "content": ContentEvent}
TERMINAL = {"completed", "failed", "canceled"}


def check_protocol(events: list[dict]) -> dict:
    """Validate numbering, shapes and ordering; return the terminal response event."""
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    for event in events:
        _MODELS[event["object"]].model_validate(event)
    assert events[0]["object"] == "response" and events[0]["status"] == "created"
    assert events[1]["object"] == "response" and events[1]["status"] == "in_progress"
    terminal = [e for e in events if e["object"] == "response" and e["status"] in TERMINAL]
    assert len(terminal) == 1 and terminal[0] is events[-1], "exactly one terminal event, and it is last"
    opened: dict[str, dict] = {}
    for event in events[2:-1]:
        if event["object"] == "message":
            if event["status"] == "in_progress":
                assert event["content"] is None
                opened[event["id"]] = event
            else:
                assert event["id"] in opened, "a message is announced before it completes"
        elif event["object"] == "content":
            assert event["msg_id"] in opened, "content belongs to an announced message"
    assert all(e["id"] == events[0]["id"] for e in events if e["object"] == "response")
    return events[-1]


def user_body(text: str = "hello", **extra: Any) -> dict:
    return {"input": [{"role": "user", "content": [{"type": "text", "text": text}]}], **extra}


def read_events(url: str, body: dict, timeout: float = 30.0) -> list[dict]:
    """POST ``body`` and return every event of the SSE stream, in order."""
    events = []
    with httpx.stream("POST", url, json=body, timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
            else:
                assert line == "" or line.startswith(":"), f"unexpected SSE line {line!r}"
    return events


def text_of(events: list[dict]) -> str:
    return "".join(e["text"] for e in events if e["object"] == "content" and e.get("delta") and e["type"] == "text")


class BackgroundStream(threading.Thread):
    """Reads one ``/process`` stream in a thread; ``started`` is set at the first content event."""

    def __init__(self, url: str, body: dict, path: str = "/process") -> None:
        super().__init__(daemon=True)
        self.url, self.body, self.path = url, body, path
        self.events: list[dict] = []
        self.status_code: Optional[int] = None
        self.started = threading.Event()
        self.error: Optional[Exception] = None

    def run(self) -> None:
        try:
            with httpx.stream("POST", f"{self.url}{self.path}", json=self.body, timeout=60) as response:
                self.status_code = response.status_code
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        self.events.append(json.loads(line[6:]))
                        if self.events[-1]["object"] == "content":
                            self.started.set()
        except httpx.TransportError as exc:  # e.g. the server died under the stream
            self.error = exc

    def begin(self, timeout: float = 20) -> "BackgroundStream":
        """Start reading and wait until the run has streamed something."""
        self.start()
        assert self.started.wait(timeout), "the run never streamed"
        return self

    def result(self, timeout: float = 60) -> list[dict]:
        self.join(timeout=timeout)
        assert not self.is_alive(), "the stream did not end"
        return self.events


@contextlib.asynccontextmanager
async def in_process(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client wired straight into ``app`` (no sockets), with the app's lifespan running."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://agent.test", timeout=30) as client:
            yield client


def sse_events(body: str) -> list[dict]:
    """The ``data:`` events of a whole SSE body."""
    return [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]
