"""Lifespan composition, deprecated hooks, probes and constructor validation."""

from __future__ import annotations

from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import Request

from agentpack import AgentApp, LocalDeployManager
from tests.support import read_events, text_of, user_body, http


def test_lifespan_order_and_shared_state(serve):
    calls: list[str] = []

    @asynccontextmanager
    async def lifespan(app):
        calls.append("lifespan enter")
        app.state.greeting = "from lifespan"
        yield {"per_request": "lifespan state"}
        calls.append("lifespan exit")

    async def before_start(app, **kwargs):
        calls.append("before_start")

    def after_finish(app):
        calls.append("after_finish")

    app = AgentApp(lifespan=lifespan, before_start=before_start, after_finish=after_finish)
    with pytest.warns(DeprecationWarning, match="@app.init"):

        @app.init
        async def init_handler(self):
            calls.append("init")

    with pytest.warns(DeprecationWarning, match="@app.shutdown"):

        @app.shutdown
        def shutdown_handler():
            calls.append("shutdown")

    @app.query(framework="text")
    async def handler(self, msgs, request, **kwargs):
        yield app.state.greeting

    @app.get("/state")
    async def state(request: Request):
        return {"value": request.state.per_request}

    manager = LocalDeployManager(port=0)
    url = manager.start(app)["url"]
    assert calls == ["init", "before_start", "lifespan enter"]
    assert text_of(read_events(f"{url}/process", user_body())) == "from lifespan"
    assert http.get(f"{url}/state").json() == {"value": "lifespan state"}
    manager.shutdown()
    assert calls == ["init", "before_start", "lifespan enter", "lifespan exit", "after_finish", "shutdown"]


def test_a_failing_cleanup_step_does_not_skip_the_others():
    calls: list[str] = []

    def after_finish(app):
        calls.append("after_finish")
        raise RuntimeError("cleanup bug")

    app = AgentApp(after_finish=after_finish)
    with pytest.warns(DeprecationWarning):
        app.shutdown(lambda: calls.append("shutdown"))
    manager = LocalDeployManager(port=0)
    manager.start(app)
    manager.shutdown()
    assert calls == ["after_finish", "shutdown"]


def test_failed_start_up_is_reported_and_cleans_up():
    calls: list[str] = []

    @asynccontextmanager
    async def lifespan(app):
        raise ConnectionError("database unreachable")
        yield  # pragma: no cover

    app = AgentApp(lifespan=lifespan, after_finish=lambda app: calls.append("after_finish"))
    manager = LocalDeployManager(port=0, startup_timeout=10)
    with pytest.raises(Exception, match="did not start"):
        manager.start(app)
    assert calls == ["after_finish"]


def test_probes(serve):
    app = AgentApp()
    problems = {"db": None}

    @app.add_readiness_check
    async def database():
        return problems["db"]

    url = serve(app)
    health = http.get(f"{url}/health").json()
    assert health["status"] == "healthy" and isinstance(health["timestamp"], float)
    assert http.get(f"{url}/liveness").json()["status"] == "alive"
    assert http.get(f"{url}/readiness").status_code == 200
    problems["db"] = "database: connection refused"
    not_ready = http.get(f"{url}/readiness")
    assert not_ready.status_code == 503
    assert not_ready.json()["reason"] == "database: connection refused"


def test_readiness_is_503_until_start_up_finished():
    app = AgentApp()
    transport = httpx.ASGITransport(app=app)  # no lifespan: start-up never ran

    async def probe():
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return await client.get("/readiness")

    import asyncio

    response = asyncio.run(probe())
    assert response.status_code == 503
    assert "start-up" in response.json()["reason"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"endpoint_path": "process"}, "starting with '/'"),
        ({"endpoint_path": "/health"}, "collides"),
        ({"broker_url": "localhost:6379"}, "broker_url="),
        ({"backend_url": "redis://localhost/0"}, "without broker_url"),
        ({"interrupt_redis_url": "http://localhost"}, "interrupt_redis_url="),
        ({"interrupt_redis_url": "redis://x", "interrupt_backend": object()}, "not both"),
        ({"interrupt_backend": "redis://localhost"}, "interrupt_redis_url="),
        ({"a2a_config": 5}, "a2a_config"),
        ({"lifespan": "nope"}, "lifespan must be callable"),
    ],
)
def test_constructor_validation(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        AgentApp(**kwargs)


def test_accepted_keywords_and_fastapi_keywords():
    app = AgentApp(
        app_name="n",
        broker_url="redis://127.0.0.1:6379/0",
        backend_url="redis://127.0.0.1:6379/1",
        interrupt_redis_url="redis://127.0.0.1:6379/2",
        a2a_config={"agent_card": {"name": "n"}},
        docs_url=None,
        openapi_url="/spec.json",
    )
    assert app.docs_url is None and app.openapi_url == "/spec.json" and app.title == "n"


def test_deploy_returns_url_and_stops():
    import asyncio

    app = AgentApp()

    async def scenario():
        manager = LocalDeployManager(host="127.0.0.1", port=0)
        result = await app.deploy(manager)
        assert set(result) == {"deploy_id", "url"}
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{result['url']}/health")).status_code == 200
        assert manager.is_running
        await manager.stop()
        assert not manager.is_running
        with pytest.raises(httpx.ConnectError):
            http.get(f"{result['url']}/health", timeout=2)

    asyncio.run(scenario())


def test_agentscope_only_keywords():
    with pytest.warns(UserWarning) as caught:
        app = AgentApp(app_name="a", response_type="sse", stream=True)
    assert [str(w.message).split("(")[1].split("=")[0] for w in caught] == ["response_type", "stream"]
    assert app.title == "a" and not hasattr(app, "response_type")
    with pytest.raises(TypeError, match="@app.query"):
        AgentApp(runner=object())
