"""Shared test fixtures: real uvicorn servers on loopback and real HTTP/SSE clients.

The suite runs in parallel (pytest-xdist, ``-n auto --dist loadgroup`` in pyproject.toml):
every test takes free ports and its own temporary directories; what is expensive to make is
made once per run (the build cache, :func:`run_dir`) or once per machine (the a2a-sdk 0.3
virtualenv of tests/test_protocol_instances.py), under a lock; and the tests that share an
expensive module fixture are sent to one worker together (:data:`_SHARED_FIXTURES`).
"""

from __future__ import annotations

import os
from pathlib import Path
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


def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This run's temporary root, which the xdist workers share (each has its own basetemp in it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def run_build_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build cache for the whole run, shared by the xdist workers: a platform's dependencies
    are resolved once per run, not once per module and worker.  Its entries are content-addressed
    and published atomically (agentpack/builders/cache.py), so concurrent builds cannot spoil it."""
    cache = run_dir(tmp_path_factory) / "agentpack-cache"
    cache.mkdir(exist_ok=True)
    return cache


@pytest.fixture(scope="module")
def agentpack_cache(run_build_cache: Path) -> Iterator[Path]:
    """The run's build cache for the module's tests: nothing leaks into (or from) the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AGENTPACK_CACHE_DIR", str(run_build_cache))
        yield run_build_cache


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(free_port()).start()
    yield server
    server.kill()


#: Fixtures that start real servers, processes or redis-server: a test using one is an
#: integration test (``-m "not integration"`` runs the in-process tier alone).
_REAL_PARTS = {"serve", "redis_server", "nodes", "cluster", "env", "cli_server"}

#: Module-scoped fixtures that start something expensive (servers and a Celery worker, a built
#: and emulated artifact, a browser).  Under xdist the tests that share one -- one parameter of
#: one -- go to the same worker (``--dist loadgroup``), so it is made once, not once per worker.
_SHARED_FIXTURES = {"env", "emulated", "artifacts", "browser"}


def _shared_fixture_group(item: pytest.Item) -> str | None:
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    for name in sorted(_SHARED_FIXTURES & set(getattr(item, "fixturenames", ()))):
        if definitions.get(name) and definitions[name][-1].scope == "module":
            callspec = getattr(item, "callspec", None)
            param = callspec.params.get(name, "") if callspec is not None else ""
            return f"{item.module.__name__}:{name}:{param}"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _REAL_PARTS & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
        group = _shared_fixture_group(item)
        if group is not None and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group))
