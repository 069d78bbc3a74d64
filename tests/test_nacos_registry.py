"""``NacosRegistry`` against a loopback Nacos (tests/standins/nacos.py): the real registry's HTTP
calls, checked by the stand-in against the published Admin API, and one real app served on a
port that registers itself when it starts and withdraws its card version when it stops."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Iterator, Optional

import httpx
import pytest

from agentpack import A2ATransportsProperties, AgentApp, NacosRegistry
from agentpack.deployers.local import LocalDeployManager
from agentpack.frontends.a2a.nacos import NacosRegistryError, create_nacos_registry_from_env
from tests.standins.nacos import AGENT_NOT_FOUND, TEST_PASSWORD, TEST_USERNAME, NacosStandIn
from tests.support import free_port, wait_until, http

ENV_KEYS = ("NACOS_SERVER_ADDR", "NACOS_USERNAME", "NACOS_PASSWORD", "NACOS_NAMESPACE_ID", "NACOS_ACCESS_KEY", "NACOS_SECRET_KEY")


@pytest.fixture(autouse=True)
def _no_nacos_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keywords left out are read from NACOS_*: a developer's own settings must not leak in."""
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def nacos() -> Iterator[NacosStandIn]:
    with NacosStandIn() as stand_in:
        yield stand_in


def registry_for(stand_in: NacosStandIn, **kwargs: Any) -> NacosRegistry:
    options = {"username": TEST_USERNAME, "password": TEST_PASSWORD, **kwargs}
    return NacosRegistry(stand_in.address, **options)


def agent_card(name: str = "weather-agent", version: str = "1.0.0", description: str = "Reports the weather") -> Any:
    """The card the A2A adapter hands registries: an a2a-sdk 0.3 AgentCard."""
    from a2a.compat.v0_3 import types as v03

    return v03.AgentCard(
        name=name, description=description, version=version, url="http://placeholder.invalid/a2a",
        capabilities={"streaming": True}, default_input_modes=["text"], default_output_modes=["text"],
        skills=[{"id": "dialog", "name": "Dialog", "description": "talks", "tags": ["chat"]}],
    )


def transports(port: int = 8080, host: str = "127.0.0.1", tls: bool = False) -> list[A2ATransportsProperties]:
    return [A2ATransportsProperties(host=host, port=port, path="/a2a", support_tls=tls, extra={}, transport_type="JSONRPC")]


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_first_registration_logs_in_then_creates_the_agent_with_its_url(nacos: NacosStandIn):
    registry = registry_for(nacos)
    assert registry.registry_name() == "nacos"
    run(registry.register(agent_card(), transports(9001)))

    assert nacos.actions() == ["login", "getAgentCard", "registerAgent"]
    login, get, post = nacos.calls
    assert login.form == {"username": TEST_USERNAME, "password": TEST_PASSWORD} and login.query == {}
    assert get.method == "GET" and get.query == {"namespaceId": "public", "agentName": "weather-agent", "version": "1.0.0"}
    assert get.status == 404 and get.code == AGENT_NOT_FOUND[0]
    assert post.query == {} and set(post.form) == {"namespaceId", "agentCard", "registrationType"}
    assert post.form["registrationType"] == "URL" and post.status == 200 and post.code == 0
    assert all(call.headers.get("accesstoken") for call in (get, post))

    stored = nacos.card("weather-agent", "1.0.0")
    assert stored["url"] == "http://127.0.0.1:9001/a2a"
    assert (stored["protocolVersion"], stored["preferredTransport"], stored["registrationType"]) == ("0.3.0", "JSONRPC", "URL")
    assert stored["skills"][0]["id"] == "dialog" and stored["capabilities"]["streaming"] is True
    assert nacos.latest_version("weather-agent") == "1.0.0"
    # The password travels once, in the login form body: never in a URL or on an admin call.
    for call in nacos.calls:
        assert TEST_PASSWORD not in json.dumps(call.query) and TEST_PASSWORD not in json.dumps(call.headers)
        if call.action != "login":
            assert TEST_PASSWORD not in call.body.decode()


def test_a_second_start_updates_the_card_and_makes_it_latest(nacos: NacosStandIn):
    run(registry_for(nacos).register(agent_card(), transports(9001)))
    restarted = registry_for(nacos)  # a new process: logs in again, finds the version, refreshes its URL
    run(restarted.register(agent_card(), transports(9002)))

    assert nacos.actions()[3:] == ["login", "getAgentCard", "updateAgentCard"]
    get, put = nacos.calls[4:]
    assert get.status == 200 and get.code == 0
    assert put.method == "PUT" and put.form["setAsLatest"] == "true" and put.form["registrationType"] == "URL"
    assert nacos.card("weather-agent", "1.0.0")["url"] == "http://127.0.0.1:9002/a2a"
    assert nacos.versions("weather-agent") == ["1.0.0"]

    run(restarted.register(agent_card(), transports(9002)))  # same process again: the token is reused
    assert nacos.actions()[6:] == ["getAgentCard", "updateAgentCard"]


def test_a_new_version_is_added_beside_the_old_one_and_becomes_latest(nacos: NacosStandIn):
    registry = registry_for(nacos)
    run(registry.register(agent_card(version="1.0.0"), transports(9001)))
    run(registry.register(agent_card(version="2.0.0"), transports(9002)))

    get, put = nacos.calls_of("getAgentCard")[-1], nacos.calls_of("updateAgentCard")[-1]
    assert get.status == 404 and get.code == 50101  # AGENT_VERSION_NOT_FOUND
    assert put.form["setAsLatest"] == "true"
    assert nacos.versions("weather-agent") == ["1.0.0", "2.0.0"]
    assert nacos.latest_version("weather-agent") == "2.0.0"
    assert nacos.card("weather-agent", "1.0.0")["url"] == "http://127.0.0.1:9001/a2a"
    assert nacos.card("weather-agent", "2.0.0")["url"] == "http://127.0.0.1:9002/a2a"


def test_deregister_deletes_only_its_own_version(nacos: NacosStandIn):
    registry = registry_for(nacos)
    run(registry.register(agent_card(version="1.0.0"), transports(9001)))
    run(registry.register(agent_card(version="2.0.0"), transports(9002)))
    run(registry.deregister(agent_card(version="2.0.0"), transports(9002)))

    delete = nacos.calls_of("deleteAgent")[-1]
    assert delete.query == {"namespaceId": "public", "agentName": "weather-agent", "version": "2.0.0"} and delete.code == 0
    assert nacos.versions("weather-agent") == ["1.0.0"]

    # Nacos 3.1-3.2 answer 500 to a GET once the latest version is gone (a null latestPublishedVersion):
    # a restart of 1.0.0 still gets its card back as the latest.
    run(registry.register(agent_card(version="1.0.0"), transports(9003)))
    assert nacos.calls_of("getAgentCard")[-1].status == 500
    assert nacos.latest_version("weather-agent") == "1.0.0"
    assert nacos.card("weather-agent", "1.0.0")["url"] == "http://127.0.0.1:9003/a2a"

    run(registry.deregister(agent_card(version="1.0.0")))
    assert nacos.versions("weather-agent") == []  # the last version: Nacos drops the agent


def test_deregister_can_be_switched_off_for_instances_that_share_a_version(nacos: NacosStandIn):
    registry = registry_for(nacos, deregister_on_shutdown=False)
    run(registry.register(agent_card(), transports()))
    run(registry.deregister(agent_card(), transports()))
    assert "deleteAgent" not in nacos.actions() and nacos.versions("weather-agent") == ["1.0.0"]


def test_a_wrong_password_fails_clearly_and_never_shows_the_password(nacos: NacosStandIn, caplog: pytest.LogCaptureFixture):
    wrong = "not-the-Password-42"
    registry = NacosRegistry(nacos.address, username=TEST_USERNAME, password=wrong)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(NacosRegistryError) as raised:
        run(registry.register(agent_card(), transports()))
    error = raised.value
    assert (error.operation, error.status) == ("login", 403)
    assert "login failed" in str(error) and "User not found" in str(error) and TEST_USERNAME in str(error)
    assert wrong not in str(error) and wrong not in repr(registry) and wrong not in caplog.text
    assert nacos.actions() == ["login"]  # nothing was sent to the Admin API


def test_without_credentials_the_admin_api_refuses_with_a_hint(nacos: NacosStandIn):
    with pytest.raises(NacosRegistryError) as raised:
        run(NacosRegistry(nacos.address).register(agent_card(), transports()))
    assert raised.value.status == 403 and "NACOS_USERNAME" in str(raised.value)
    assert nacos.actions() == ["getAgentCard"]


def test_an_expired_token_is_renewed_once(nacos: NacosStandIn):
    registry = registry_for(nacos)
    run(registry.register(agent_card(), transports()))
    nacos.expire_tokens()
    run(registry.register(agent_card(), transports()))
    assert nacos.actions()[3:] == ["getAgentCard", "login", "getAgentCard", "updateAgentCard"]
    assert nacos.calls[3].status == 403


def test_an_agent_created_meanwhile_is_updated_instead(nacos: NacosStandIn):
    registry = registry_for(nacos)
    run(registry.register(agent_card(), transports(9001)))
    # Another instance created the agent between our GET and our POST: POST answers 409 / 20005.
    nacos.fail_next("getAgentCard", status=404, error=AGENT_NOT_FOUND, detail="Agent not found: weather-agent")
    run(registry.register(agent_card(), transports(9002)))
    assert nacos.actions()[3:] == ["getAgentCard", "registerAgent", "updateAgentCard"]
    assert (nacos.calls[4].status, nacos.calls[4].code) == (409, 20005)
    assert nacos.card("weather-agent", "1.0.0")["url"] == "http://127.0.0.1:9002/a2a"


def test_server_errors_carry_the_nacos_code_and_message(nacos: NacosStandIn):
    registry = registry_for(nacos)
    run(registry.register(agent_card(), transports()))
    nacos.fail_next("updateAgentCard", status=500, error=(30000, "server error"), detail="disk full")
    with pytest.raises(NacosRegistryError) as raised:
        run(registry.register(agent_card(), transports()))
    assert (raised.value.status, raised.value.code) == (500, 30000)
    assert "server error: disk full" in str(raised.value)


def test_a_chinese_description_survives_the_round_trip(nacos: NacosStandIn):
    description = "查询天气的智能体：支持中文问答"
    run(registry_for(nacos).register(agent_card(description=description), transports()))
    assert nacos.card("weather-agent", "1.0.0")["description"] == description
    post = nacos.calls_of("registerAgent")[0]
    assert post.body.isascii()  # sent as \\u escapes: no charset can garble it


def test_cards_nacos_would_refuse_are_refused_before_any_call(nacos: NacosStandIn):
    registry = registry_for(nacos)
    with pytest.raises(ValueError, match="public URL"):
        run(registry.register({"name": "a", "version": "1", "url": "/a2a"}, []))
    with pytest.raises(ValueError, match="visible ASCII"):
        run(registry.register(agent_card(name="天气"), transports()))
    with pytest.raises(ValueError, match="SERVICE"):
        NacosRegistry(nacos.address, registration_type="SERVICE")
    assert nacos.calls == []


def test_tls_and_several_servers(nacos: NacosStandIn):
    dead = free_port()  # nothing listens there: the next server is tried
    registry = NacosRegistry(f"127.0.0.1:{dead}, http://{nacos.address}", username=TEST_USERNAME, password=TEST_PASSWORD)
    run(registry.register(agent_card(), transports(443, host="agent.example.com", tls=True)))
    assert nacos.card("weather-agent", "1.0.0")["url"] == "https://agent.example.com/a2a"


def test_access_key_signature():
    with NacosStandIn(auth=False, access_key="ak-test", secret_key="sk-test") as nacos:
        run(NacosRegistry(nacos.address, access_key="ak-test", secret_key="sk-test").register(agent_card(), transports()))
        assert nacos.actions() == ["getAgentCard", "registerAgent"]
        assert {"spas-accesskey", "spas-signature", "timestamp"} <= set(nacos.calls[1].headers)
        with pytest.raises(NacosRegistryError) as raised:
            run(NacosRegistry(nacos.address, access_key="ak-test", secret_key="wrong-sk").register(agent_card(), transports()))
        assert raised.value.status == 403 and "wrong-sk" not in str(raised.value)
    with NacosStandIn(auth=False, access_key="ak-test", secret_key="sk-test", signed_namespace="dev") as nacos:
        run(NacosRegistry(nacos.address, namespace_id="dev", access_key="ak-test", secret_key="sk-test").register(agent_card(), transports()))
        assert nacos.card("weather-agent", "1.0.0", namespace="dev") is not None


def test_a_server_without_the_3x_login_path_gets_the_older_login():
    with NacosStandIn(v3_login=False) as nacos:
        run(registry_for(nacos).register(agent_card(), transports()))
        assert nacos.actions() == ["login", "login-v1", "getAgentCard", "registerAgent"]
        assert nacos.calls[0].status == 404 and nacos.calls[1].path == "/nacos/v1/auth/users/login"


def test_the_registry_from_the_environment(monkeypatch: pytest.MonkeyPatch, nacos: NacosStandIn):
    assert create_nacos_registry_from_env() is None  # no NACOS_* variable: no registry

    monkeypatch.setenv("NACOS_NAMESPACE_ID", "")  # present, even empty, is enough (AgentScope Runtime's rule)
    defaults = create_nacos_registry_from_env()
    assert defaults is not None and defaults.server_address == "localhost:8848" and defaults.namespace_id == "public"
    assert defaults._bases == ["http://localhost:8848/nacos"]

    monkeypatch.setenv("NACOS_SERVER_ADDR", "https://nacos.example.com:8848")
    assert create_nacos_registry_from_env()._bases == ["https://nacos.example.com:8848/nacos"]

    monkeypatch.setenv("NACOS_SERVER_ADDR", nacos.address)
    monkeypatch.setenv("NACOS_USERNAME", TEST_USERNAME)
    monkeypatch.setenv("NACOS_PASSWORD", TEST_PASSWORD)
    monkeypatch.setenv("NACOS_NAMESPACE_ID", "agents-dev")
    registry = create_nacos_registry_from_env()
    assert isinstance(registry, NacosRegistry) and registry.namespace_id == "agents-dev"
    assert TEST_PASSWORD not in repr(registry)
    run(registry.register(agent_card(), transports()))
    assert nacos.card("weather-agent", "1.0.0", namespace="agents-dev") is not None
    assert NacosRegistry().namespace_id == "agents-dev"  # no keywords: configured from NACOS_* as upstream's


def test_the_stand_in_checks_what_the_server_checks(nacos: NacosStandIn):
    """The stand-in refuses what Nacos refuses, so the registry's passing calls mean something."""
    base = f"http://{nacos.address}/nacos"
    with httpx.Client(base_url=base) as client:
        login = client.post("/v3/auth/user/login", data={"username": TEST_USERNAME, "password": TEST_PASSWORD})
        token = login.json()["accessToken"]
        assert login.headers["authorization"] == f"Bearer {token}" and "code" not in login.json()
        auth = {"accessToken": token}
        card = {"name": "a", "version": "1", "protocolVersion": "0.3.0", "preferredTransport": "JSONRPC", "url": "http://h/a2a"}

        def envelope(response: httpx.Response) -> tuple[int, Optional[int]]:
            return response.status_code, response.json().get("code")

        assert client.get("/v3/admin/ai/a2a", params={"agentName": "a"}).status_code == 403  # no token
        # A JSON body binds no parameters: the card is "missing".
        assert envelope(client.post("/v3/admin/ai/a2a", json={"agentCard": json.dumps(card)}, headers=auth)) == (400, 10000)
        missing_url = {k: v for k, v in card.items() if k != "url"}
        answer = client.post("/v3/admin/ai/a2a", data={"agentCard": json.dumps(missing_url)}, headers=auth)
        assert envelope(answer) == (400, 10000) and "agentCard.url" in answer.json()["data"]
        assert envelope(client.post("/v3/admin/ai/a2a", data={"agentCard": "{"}, headers=auth)) == (400, 20002)
        bad_type = {"agentCard": json.dumps(card), "registrationType": "DNS"}
        assert envelope(client.post("/v3/admin/ai/a2a", data=bad_type, headers=auth)) == (400, 20002)
        assert envelope(client.get("/v3/admin/ai/a2a", params={"agentName": "a"}, headers=auth)) == (404, 50100)
        assert envelope(client.put("/v3/admin/ai/a2a", data={"agentCard": json.dumps(card)}, headers=auth)) == (404, 50100)
        # Parameters from the query string work for POST too (what the maintainer SDK sends).
        assert envelope(client.post("/v3/admin/ai/a2a", params={"agentCard": json.dumps(card)}, headers=auth)) == (200, 0)
        assert envelope(client.post("/v3/admin/ai/a2a", data={"agentCard": json.dumps(card)}, headers=auth)) == (409, 20005)
        assert envelope(client.get("/v3/admin/ai/a2a", params={"agentName": "a", "version": "9"}, headers=auth)) == (404, 50101)
        assert envelope(client.get("/v3/admin/ai/a2a", params={"agentName": "a"}, headers=auth)) == (200, 0)
        assert envelope(client.get("/v3/admin/ai/a2a/list", params={"pageNo": 1, "pageSize": 10, "search": ""}, headers=auth)) == (400, 20002)
        listed = client.get("/v3/admin/ai/a2a/list", params={"pageNo": 1, "pageSize": 10, "search": "accurate", "agentName": "a"}, headers=auth)
        assert listed.json()["data"]["pageItems"][0]["latestPublishedVersion"] == "1"
        assert client.get("/v3/admin/ai/a2a/version/list", params={"agentName": "a"}, headers=auth).json()["data"][0]["version"] == "1"
        assert client.patch("/v3/admin/ai/a2a", headers=auth).status_code == 405
        assert client.get("/v3/admin/ai/agents", headers=auth).status_code == 404
        assert envelope(client.delete("/v3/admin/ai/a2a", params={"agentName": "nobody"}, headers=auth)) == (200, 0)


@pytest.mark.integration  # a real uvicorn server (on a port reserved up front: the card's URL needs it)
def test_an_app_registers_when_it_starts_and_withdraws_its_version_when_it_stops(nacos: NacosStandIn):
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    registry = registry_for(nacos)
    app = AgentApp(app_name="weather-agent", app_description="查询天气的智能体",
                   a2a_config={"registry": registry, "public_url": public_url})

    @app.query(framework="text")
    async def handler(msgs):
        yield "sunny"

    manager = LocalDeployManager(host="127.0.0.1", port=port, startup_timeout=30)
    url = manager.start(app)["url"]
    try:
        assert url == public_url

        def registered() -> Optional[dict]:
            card = nacos.card("weather-agent", "1.0.0")
            return card if card and card["url"] == f"{public_url}/a2a" else None

        card = wait_until(registered, 15, lambda: f"the card never reached Nacos; calls: {[(c.action, c.status) for c in nacos.calls]}")
        assert card["description"] == "查询天气的智能体" and card["preferredTransport"] == "JSONRPC"
        served = http.get(f"{url}/.well-known/agent-card.json").json()
        assert served["name"] == card["name"] and served["url"] == card["url"]
    finally:
        manager.shutdown()  # the lifespan's shutdown deregisters before the server stops
    assert nacos.actions() == ["login", "getAgentCard", "registerAgent", "deleteAgent"]
    assert nacos.calls_of("deleteAgent")[0].query["version"] == "1.0.0"
    assert nacos.versions("weather-agent") == []
