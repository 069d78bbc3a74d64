"""AgentScope Runtime's adapter names and calling conventions: ``add_endpoint(app, func)`` on a
plain FastAPI app with a function that yields Agent API events, ``get_agent_card()``, registries,
``AgentApp(protocol_adapters=[...])`` replacing the defaults, and the names importable from
``agentpack``."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from agentpack import (
    A2AFastAPIDefaultAdapter,
    A2ARegistry,
    A2ATransportsProperties,
    AgentApp,
    AgentCardWithRuntimeConfig,
    AgentRequest,
    AgentResponse,
    AGUIAdaptorConfig,
    AGUIDefaultAdapter,
    FlexibleRunAgentInput,
    Message,
    ProtocolAdapter,
    ResponseAPIDefaultAdapter,
    RunStatus,
    TextContent,
)
from tests.nodes.protocol_node import make_app
from tests.support import in_process, sse_events, wait_until


async def upstream_style_run(request: AgentRequest):
    """What AgentScope Runtime hands an adapter: pydantic events, numbered by nobody in particular."""
    yield AgentResponse(status=RunStatus.Created, session_id=request.session_id)
    message = Message(role="assistant", status=RunStatus.InProgress, content=None)
    yield message
    for piece in ("Hi", " there"):
        yield TextContent(text=piece, delta=True, msg_id=message.id, index=0, status=RunStatus.InProgress)
    yield TextContent(text="Hi there", delta=False, msg_id=message.id, index=0, status=RunStatus.Completed)
    yield message.model_copy(update={"status": RunStatus.Completed, "content": [TextContent(text="Hi there", index=0, msg_id=message.id)]})
    yield AgentResponse(status=RunStatus.Completed, session_id=request.session_id)


async def failing_run(request: AgentRequest):
    yield AgentResponse(status=RunStatus.Created)
    raise ValueError("Test error")


def plain_app(*adapters: ProtocolAdapter, func: Any = upstream_style_run) -> FastAPI:
    app = FastAPI()
    for adapter in adapters:
        adapter.add_endpoint(app, func)
    return app


def test_each_adapter_serves_a_plain_fastapi_app_from_a_function_of_events():
    async def scenario() -> None:
        app = plain_app(ResponseAPIDefaultAdapter(), AGUIDefaultAdapter(), A2AFastAPIDefaultAdapter(agent_name="plain", agent_description="d"))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://plain.test") as client:
            answer = (await client.post("/compatible-mode/v1/responses", json={"input": "hi"})).json()
            assert answer["output"][0]["content"][0]["text"] == "Hi there" and answer["status"] == "completed"
            agui = sse_events((await client.post("/ag-ui", json={"threadId": "t", "runId": "r", "messages": []})).text)
            assert [e.get("delta") for e in agui if e["type"] == "TEXT_MESSAGE_CONTENT"] == ["Hi", " there"]
            assert agui[-1]["type"] == "RUN_FINISHED"
            task = (await client.post("/a2a", json={"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": {"messageId": "m", "role": "user", "parts": [{"kind": "text", "text": "hi"}]}}})).json()
            assert task["result"]["status"]["state"] == "completed"  # an A2A 0.3 client's view
            assert task["result"]["artifacts"][0]["parts"][0]["text"] == "Hi there"
            card = (await client.get("/.well-known/agent-card.json")).json()
            assert card["name"] == "plain" and card["url"] == "http://plain.test/a2a"

    asyncio.run(scenario())


def test_a_function_that_raises_ends_with_each_protocols_error(monkeypatch):
    monkeypatch.setenv("AGENTPACK_DEBUG", "1")  # the failed event carries the exception's text only with debug on
    async def scenario() -> None:
        app = plain_app(ResponseAPIDefaultAdapter(), AGUIDefaultAdapter(), func=failing_run)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://plain.test") as client:
            last = sse_events((await client.post("/ag-ui", json={"threadId": "t", "runId": "r", "messages": []})).text)[-1]
            assert last["type"] == "RUN_ERROR" and "Test error" in last["message"]
            answer = (await client.post("/compatible-mode/v1/responses", json={"input": "hi"})).json()
            assert answer["status"] == "failed" and "Test error" in answer["error"]["message"]
            assert (await client.post("/agui", json={"invalid": "data"})).status_code >= 400

    asyncio.run(scenario())


def test_get_agent_card_keeps_upstreams_defaults_and_precedence():
    adapter = A2AFastAPIDefaultAdapter(agent_name="test_agent", agent_description="Test description")
    card = adapter.get_agent_card()
    assert (card.name, card.description, card.version) == ("test_agent", "Test description", "1.0.0")
    assert card.skills[0].id == "dialog" and card.skills[0].name == "Natural Language Dialog Skill"
    assert "text" in card.default_input_modes and card.capabilities.streaming is True

    config = AgentCardWithRuntimeConfig(agent_card={"name": "card_name", "description": "card_description", "provider": "Test Organization"})
    adapter = A2AFastAPIDefaultAdapter(agent_name="param_name", agent_description="param_description", a2a_config=config)
    assert (adapter._agent_name, adapter._agent_description) == ("card_name", "card_description")
    assert adapter.get_agent_card().provider.organization == "Test Organization"

    for host, port, url in (("http://localhost", 8080, "http://localhost:8080/a2a"), ("https://example.com", 8443, "https://example.com:8443/a2a"), ("localhost", 8080, "http://localhost:8080/a2a")):
        adapter = A2AFastAPIDefaultAdapter(agent_name="a", agent_description="d", a2a_config=AgentCardWithRuntimeConfig(host=host, port=port))
        assert adapter.get_agent_card(app=FastAPI()).url == url
    adapter = A2AFastAPIDefaultAdapter(agent_name="a", agent_description="d", a2a_config=AgentCardWithRuntimeConfig(host="http://example.com", port=8080))
    behind_proxy = FastAPI()
    behind_proxy.root_path = "/api/v1"
    assert adapter.get_agent_card(app=behind_proxy).url == "http://example.com:8080/api/v1/a2a"
    transports = adapter._build_a2a_transports_properties(app=behind_proxy)
    assert (transports[0].host, transports[0].port, transports[0].path, transports[0].transport_type) == ("example.com", 8080, "/api/v1/a2a", "JSONRPC")


def test_the_config_defaults_are_upstreams_but_no_port_is_guessed():
    config = AgentCardWithRuntimeConfig()
    assert (config.task_timeout, config.task_event_timeout, config.wellknown_path) == (60, 10, "/.well-known/agent-card.json")
    assert config.port is None and config.host is None


class RecordingRegistry(A2ARegistry):
    def __init__(self, name: str = "recording") -> None:
        self.name = name
        self.calls: list[tuple[str, Any, Any]] = []

    def registry_name(self) -> str:
        return self.name

    def register(self, agent_card, a2a_transports_properties=None):
        self.calls.append(("register", agent_card, a2a_transports_properties))

    async def deregister(self, agent_card, a2a_transports_properties=None):
        self.calls.append(("deregister", agent_card, a2a_transports_properties))


class BrokenRegistry(RecordingRegistry):
    def register(self, agent_card, a2a_transports_properties=None):
        raise ConnectionError("registry down")


def test_registries_register_at_startup_never_block_it_and_deregister_at_shutdown(monkeypatch):
    monkeypatch.setenv("AGENTPACK_PUBLIC_URL", "https://agent.example.com")
    registry, broken = RecordingRegistry(), BrokenRegistry("broken")
    app = make_app(a2a_config=AgentCardWithRuntimeConfig(registry=[broken, registry]))

    async def scenario() -> None:
        async with in_process(app) as client:
            await asyncio.to_thread(wait_until, lambda: registry.calls, 10, "the registry was never called")
            assert (await client.get("/readiness")).status_code == 200  # the broken one did not stop start-up
        kind, card, transports = registry.calls[0]
        assert kind == "register" and card.name == "Probe" and card.url == "https://agent.example.com/a2a"
        assert isinstance(transports[0], A2ATransportsProperties)
        assert (transports[0].host, transports[0].port, transports[0].path, transports[0].support_tls) == ("agent.example.com", 443, "/a2a", True)
        assert [c[0] for c in registry.calls] == ["register", "deregister"]

    asyncio.run(scenario())


def test_registries_on_a_plain_fastapi_app_register_when_the_endpoint_is_added():
    registry = RecordingRegistry()
    adapter = A2AFastAPIDefaultAdapter(agent_name="a", agent_description="d", a2a_config=AgentCardWithRuntimeConfig(registry=registry, agent_card={"url": "http://localhost:8080"}))
    adapter.add_endpoint(FastAPI(), upstream_style_run)
    assert registry.calls[0][0] == "register" and registry.calls[0][1].url == "http://localhost:8080"


def test_protocol_adapters_replace_the_defaults_as_upstream_and_run_can_replace_them_again():
    async def scenario() -> None:
        only_agui = make_app(protocol_adapters=[AGUIDefaultAdapter(config=AGUIAdaptorConfig(route_path="/ui-events"))])
        async with in_process(only_agui) as client:
            assert (await client.post("/compatible-mode/v1/responses", json={"input": "hi"})).status_code == 404
            assert (await client.get("/.well-known/agent-card.json")).status_code == 404
            assert (await client.post("/ui-events", json={"threadId": "t", "runId": "r", "messages": []})).status_code == 200
        none = make_app(protocol_adapters=[])
        async with in_process(none) as client:
            endpoints = (await client.get("/")).json()["endpoints"]
            assert "a2a" not in endpoints and "ag_ui" not in endpoints
        everything = make_app()
        async with in_process(everything) as client:
            endpoints = (await client.get("/")).json()["endpoints"]
            assert (endpoints["a2a"], endpoints["agent_card"], endpoints["ag_ui"]) == ("/a2a", "/.well-known/agent-card.json", "/ag-ui")
        everything.protocols.replace([ResponseAPIDefaultAdapter()])  # what run(protocol_adapters=...) does
        async with in_process(everything) as client:
            assert (await client.post("/ag-ui", json={"threadId": "t", "runId": "r", "messages": []})).status_code == 404
            assert (await client.post("/compatible-mode/v1/responses", json={"input": "hi"})).status_code == 200

    asyncio.run(scenario())


def test_a_custom_adapter_gets_a_function_of_events_that_goes_through_the_session_guard():
    class EchoAdapter(ProtocolAdapter):
        def add_endpoint(self, app, func, **kwargs):
            async def echo(text: str):
                events = [e async for e in func(AgentRequest(input=[{"role": "user", "content": text}], session_id="custom"))]
                return {"statuses": [e["status"] for e in events if e["object"] == "response"]}

            app.add_api_route("/echo-protocol", echo, methods=["POST"])

    async def scenario() -> None:
        app = make_app(protocol_adapters=[EchoAdapter()])
        async with in_process(app) as client:
            answer = (await client.post("/echo-protocol", params={"text": "hi"})).json()
            assert answer["statuses"] == ["created", "in_progress", "completed"]
            assert await app.get_chat_state("custom", "custom") == "FINISHED"

    asyncio.run(scenario())


def test_configuring_a_protocol_whose_extra_is_missing_fails_at_construction(monkeypatch):
    import agentpack.app.protocols as protocols

    monkeypatch.setattr(protocols, "installed", lambda protocol: False)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'agentpack\[a2a\]'"):
        AgentApp(a2a_config={})
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'agentpack\[agui\]'"):
        AgentApp(agui_config={"route_path": "/x"})


def test_an_app_that_speaks_no_protocol_loads_none_of_their_packages():
    import subprocess

    code = (
        "import sys\nfrom agentpack import AgentApp\napp = AgentApp()\n"
        "@app.query(framework='text')\nasync def h(msgs, request):\n    yield 'x'\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'a2a', 'ag_ui', 'openai', 'google', 'sse_starlette'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_the_default_protocols_routes_are_made_by_their_first_request_in_their_place():
    """Starting and answering /health makes none of them; the first request for one of their
    paths does, in the place they always had (before a route added after @app.query), with the
    card open to all and the rest behind the key."""
    key = "k-0123456789abcdef0123456789abcdef"

    def protocol_paths(app: AgentApp) -> list[str]:
        return [p for r in app.router.routes if (p := getattr(r, "path", "")) in {"/a2a", "/ag-ui", "/compatible-mode/v1/responses"}]

    async def scenario() -> None:
        app = make_app(api_keys=[key])

        @app.post("/a2a")  # after @app.query: the protocol's route stays first, as before
        async def shadowed() -> dict[str, str]:
            return {"by": "user route"}

        async with in_process(app) as client:
            assert (await client.get("/health")).status_code == 200
            assert protocol_paths(app) == ["/a2a"]  # the user's only
            card = await client.get("/.well-known/agent-card.json")  # no key: the card is open
            assert card.status_code == 200 and card.json()["name"], card.text
            assert protocol_paths(app) == ["/a2a", "/compatible-mode/v1/responses", "/ag-ui", "/a2a"]
            paths = [getattr(r, "path", None) for r in app.router.routes]
            assert paths.index("/process") < paths.index("/a2a") < len(paths) - 1 and paths[-1] == "/a2a"  # then the user's
            assert (await client.post("/compatible-mode/v1/responses", json={"input": "hi"})).status_code == 401
            answer = await client.post("/compatible-mode/v1/responses", json={"input": "hi"}, headers={"Authorization": f"Bearer {key}"})
            assert answer.status_code == 200 and answer.json()["status"] == "completed", answer.text
            rpc = await client.post("/a2a", json={"jsonrpc": "2.0", "id": 1, "method": "nope"}, headers={"Authorization": f"Bearer {key}"})
            assert "jsonrpc" in rpc.json() and rpc.json() != {"by": "user route"}

    asyncio.run(scenario())


async def get(app: Any, path: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        return await client.get(path)


@pytest.mark.parametrize("look", ["openapi", "routes", "root listing", "url_path_for", "mounted request"])
def test_whoever_looks_at_the_routes_finds_the_default_protocols_without_a_request_for_them(look):
    from starlette.applications import Starlette
    from starlette.routing import Mount

    app = make_app()
    if look == "openapi":
        assert {"/a2a", "/ag-ui", "/compatible-mode/v1/responses"} <= set(app.openapi()["paths"])
    elif look == "routes":
        assert {"/a2a", "/ag-ui", "/compatible-mode/v1/responses"} <= {getattr(r, "path", None) for r in app.routes}
    elif look == "root listing":
        endpoints = asyncio.run(get(app, "/")).json()["endpoints"]
        assert (endpoints["a2a"], endpoints["responses"], endpoints["ag_ui"]) == ("/a2a", "/compatible-mode/v1/responses", "/ag-ui")
    elif look == "url_path_for":
        assert app.router.url_path_for("responses") == "/compatible-mode/v1/responses"
    else:  # under a root_path: a parent app mounts the agent at /agent
        card = asyncio.run(get(Starlette(routes=[Mount("/agent", app=app)]), "/agent/.well-known/agent-card.json"))
        assert card.json()["supportedInterfaces"][0]["url"] == "http://t/agent/a2a", card.text


def test_flexible_run_agent_input_takes_either_spelling():
    body = FlexibleRunAgentInput(thread_id="t", run_id="r", forwarded_props={"user_id": "u"})
    assert (body.thread_id, body.run_id, body.forwarded_props) == ("t", "r", {"user_id": "u"})
    assert FlexibleRunAgentInput.model_validate({"threadId": "t", "runId": "r"}).messages == []


def test_an_async_registry_on_a_plain_fastapi_app_is_awaited_not_dropped():
    class AsyncRegistry(RecordingRegistry):
        async def register(self, agent_card, a2a_transports_properties=None):
            await asyncio.sleep(0)
            self.calls.append(("register", agent_card, a2a_transports_properties))

    registry = AsyncRegistry()
    adapter = A2AFastAPIDefaultAdapter(agent_name="a", agent_description="d", a2a_config=AgentCardWithRuntimeConfig(registry=registry, agent_card={"url": "http://localhost:8080"}))
    adapter.add_endpoint(FastAPI(), upstream_style_run)  # called from plain code, as upstream's tests do
    assert [c[0] for c in registry.calls] == ["register"]
