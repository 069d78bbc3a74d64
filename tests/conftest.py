"""Shared test fixtures: real uvicorn servers on loopback and real HTTP/SSE clients."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from agentpack.deployers.local import LocalDeployManager


@pytest.fixture
def serve() -> Iterator[Callable[[Any], str]]:
    """Serve apps on free loopback ports for the test's duration; returns their base URLs."""
    managers: list[LocalDeployManager] = []

    def start(app: Any) -> str:
        manager = LocalDeployManager(host="127.0.0.1", port=0, startup_timeout=30)
        managers.append(manager)
        return manager.start(app)["url"]

    yield start
    for manager in reversed(managers):
        manager.shutdown()


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


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(free_port()).start()
    yield server
    server.kill()
