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
