"""Shared test fixtures: real uvicorn servers on loopback and real HTTP/SSE clients."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from agentpack.deployers.local import LocalDeployManager
from tests.support import RedisServer, free_port


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


@pytest.fixture(scope="module")
def agentpack_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A build cache of the module's own: its first build of a platform downloads, later ones
    reuse it, and nothing leaks into (or from) the user's cache."""
    cache = tmp_path_factory.mktemp("agentpack-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AGENTPACK_CACHE_DIR", str(cache))
        yield cache


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(free_port()).start()
    yield server
    server.kill()


#: Fixtures that start real servers, processes or redis-server: a test using one is an
#: integration test (``-m "not integration"`` runs the in-process tier alone).
_REAL_PARTS = {"serve", "redis_server", "nodes", "cluster", "env"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _REAL_PARTS & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
