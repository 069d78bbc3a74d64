"""Authentication (issue 21): API keys and a pluggable verifier guard every route of every
protocol — closed by default, open only for the probes, the A2A card, the chat page's HTML and
routes declared ``auth=False`` — the principal reaches the handler, a run's user can be bound to
it, the card declares the scheme, no key is ever logged, and the clients send the key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
from typing import Any

import httpx
import pytest
from fastapi import HTTPException, Request

from agentpack import AgentApp
from agentpack.app.auth import current_principal
from tests.support import cli_env, http, in_process, sse_events, user_body, wait_until
from tests.test_ui import browser  # noqa: F401  (the module's headless chromium)

KEY = "k-3f9a1c0d7e5b42a8b6c1d2e3f4a5b6c7"
OTHER_KEY = "k-other-00000000000000000000000001"
BEARER = {"Authorization": f"Bearer {KEY}"}
A2A_HEADERS = {"A2A-Version": "1.0"}


def a2a_send(text: str = "hi") -> dict:
    message = {"messageId": "m-1", "role": "ROLE_USER", "parts": [{"text": text}]}
    return {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": message}}


def make_app(**keywords: Any) -> AgentApp:
    """Every kind of route: the agent's group with background runs, an endpoint, a task, the
    protocols, the chat page, a plain FastAPI route — and their ``auth=False`` twins."""
    from agentpack.frontends.a2a.adapter import A2AFastAPIDefaultAdapter
    from agentpack.frontends.agui.adapter import AGUIDefaultAdapter
    from agentpack.frontends.responses.adapter import ResponseAPIDefaultAdapter
    from agentpack.frontends.ui.adapter import ChatPageAdapter

    adapters = [A2AFastAPIDefaultAdapter(agent_name="a", agent_description="d"), ResponseAPIDefaultAdapter(), AGUIDefaultAdapter(), ChatPageAdapter()]
    app = AgentApp(enable_stream_task=True, protocol_adapters=adapters, **keywords)

    @app.query(framework="text")
    async def handler(msgs, request):
        yield f"hello {current_principal()} as {request.user_id}"

    @app.endpoint("/custom")
    async def custom(request: Request):
        return {"principal": request.state.principal if app.authentication.enabled else current_principal()}

    @app.endpoint("/sync-principal")
    def sync_principal():  # runs in the thread pool: the principal goes along
        return current_principal()

    @app.endpoint("/public/{name}", methods=["GET"], auth=False)
    async def public(name: str):
        return {"name": name}

    @app.task("/jobs")
    def job(body):
        return {"done": True}

    @app.task("/open-jobs", auth=False)
    def open_job(body):
        return {"done": True}

    @app.get("/mine")
    async def mine():  # a plain FastAPI route: protected without anyone asking
        return {"ok": True}

    return app


#: (method, path, body) of every protected route
PROTECTED = [
    ("POST", "/process", user_body("hi")),
    ("POST", "/process/stop", {"session_id": "nobody"}),
    ("POST", "/process/task", user_body("hi")),
    ("GET", "/process/task/unknown", None),
    ("POST", "/custom", None),
    ("POST", "/jobs", {"x": 1}),
    ("GET", "/jobs/unknown", None),
    ("DELETE", "/jobs/unknown", None),
    ("POST", "/a2a", a2a_send()),
    ("POST", "/compatible-mode/v1/responses", {"model": "m", "input": "hi", "stream": False}),
    ("POST", "/ag-ui", {"threadId": "t", "runId": "r", "messages": [{"id": "m1", "role": "user", "content": "hi"}]}),
    ("GET", "/mine", None),
    ("GET", "/openapi.json", None),
    ("GET", "/docs", None),
    ("GET", "/no-such-route", None),  # a stranger learns no paths: 401, not 404
]
OPEN = ["/", "/health", "/readiness", "/liveness", "/ui", "/.well-known/agent-card.json", "/.well-known/agent.json", "/public/x"]


async def call(client: httpx.AsyncClient, method: str, path: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    extra = A2A_HEADERS if path == "/a2a" else {}
    return await client.request(method, path, json=body, headers={**headers, **extra})


def test_every_protected_route_of_every_protocol_needs_the_key_and_the_probes_card_and_page_do_not():
    async def scenario() -> None:
        async with in_process(make_app(api_keys=[KEY])) as client:
            for method, path, body in PROTECTED:
                missing = await call(client, method, path, body, {})
                assert missing.status_code == 401, (path, missing.text)
                assert missing.headers["www-authenticate"] == 'Bearer realm="agentpack"', path
                assert "Authorization: Bearer" in missing.json()["detail"]
                wrong = await call(client, method, path, body, {"Authorization": f"Bearer {OTHER_KEY}"})
                assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"], path
                right = await call(client, method, path, body, BEARER)
                expected = 404 if path == "/no-such-route" else (404 if method == "DELETE" else 200)
                assert right.status_code == expected, (path, right.status_code, right.text[:300])
            for path in OPEN:
                answer = await client.get(path)
                assert answer.status_code == 200, (path, answer.text[:200])
            opened = await client.post("/open-jobs", json={"x": 1})
            assert opened.status_code == 200 and opened.json()["status"] == "submitted"
            assert (await client.get(f"/open-jobs/{opened.json()['task_id']}")).status_code == 200
            assert (await client.post("/public/x")).status_code == 401  # opened for GET only: POST is still guarded
            # the completed run said who called
            done = await client.post("/process", json=user_body("hi", stream=False), headers=BEARER)
            assert done.json()["output"][0]["content"][0]["text"].startswith("hello key-1 as ")
            assert (await client.post("/custom", headers=BEARER)).json() == {"principal": "key-1"}
            assert (await client.post("/sync-principal", headers=BEARER)).json() == "key-1"
            # the key also travels in X-Agentpack-Api-Key (when request signing owns Authorization)
            assert (await client.post("/custom", headers={"X-Agentpack-Api-Key": KEY})).status_code == 200
            assert (await client.post("/custom", headers={"Authorization": f"Basic {KEY}"})).status_code == 401

    asyncio.run(scenario())


def test_the_guard_follows_the_routes_as_they_change():
    """What the guard remembers about a path is dropped when the routes change: a route opened
    and then replaced by a guarded one at the same path (the route count unchanged) is guarded."""
    app = AgentApp(api_keys=[KEY])

    @app.endpoint("/x", methods=["GET"], auth=False)
    async def opened():
        return "open"

    async def scenario() -> None:
        async with in_process(app) as client:
            for _ in range(2):  # the second answer comes from what the guard remembered
                assert (await client.get("/x")).status_code == 200
            app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) != "/x"]

            @app.endpoint("/x", methods=["GET"])
            async def guarded():
                return "guarded"

            assert (await client.get("/x")).status_code == 401
            assert (await client.get("/x", headers=BEARER)).json() == "guarded"

    asyncio.run(scenario())


def test_without_keys_nothing_changes_and_no_middleware_is_installed(monkeypatch):
    monkeypatch.delenv("AGENTPACK_API_KEYS", raising=False)
    app = make_app()
    from agentpack.app.auth import AuthMiddleware

    assert not app.authentication.enabled and all(m.cls is not AuthMiddleware for m in app.user_middleware)

    async def scenario() -> None:
        async with in_process(app) as client:
            for method, path, body in PROTECTED[:-1]:
                answer = await call(client, method, path, body, {})
                assert answer.status_code != 401, path
            card = (await client.get("/.well-known/agent-card.json")).json()
            assert "securitySchemes" not in card and "security" not in card

    asyncio.run(scenario())


def test_keys_come_from_agentpack_api_keys_and_bad_settings_are_refused(monkeypatch):
    monkeypatch.setenv("AGENTPACK_API_KEYS", f" {KEY} , {OTHER_KEY},")

    async def scenario() -> None:
        async with in_process(make_app()) as client:
            for key, principal in ((KEY, "key-1"), (OTHER_KEY, "key-2")):
                answer = await client.post("/custom", headers={"Authorization": f"bearer {key}"})
                assert answer.json() == {"principal": principal}
            assert (await client.post("/custom")).status_code == 401

    asyncio.run(scenario())
    monkeypatch.delenv("AGENTPACK_API_KEYS")
    with pytest.raises(TypeError, match="list of keys"):
        AgentApp(api_keys=KEY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="spaces or commas"):
        AgentApp(api_keys=["has space"])
    with pytest.raises(ValueError, match="bind_user_to_principal=True needs authentication"):
        AgentApp(bind_user_to_principal=True)
    with pytest.raises(TypeError, match="auth="):
        AgentApp(auth="not callable")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_verifier_sees_the_request_and_its_principal_reaches_the_handler(kind):
    def check(request: Request) -> Any:
        user = request.headers.get("x-gateway-user")
        if user == "mallory":
            raise ValueError(f"token {KEY} rejected")  # its text must never reach the logs or the answer
        if user == "banned":
            raise HTTPException(403, "banned here")
        return {"sub": user, "roles": ["reader"]} if user else None

    async def acheck(request: Request) -> Any:
        await asyncio.sleep(0)
        return check(request)

    async def scenario() -> None:
        async with in_process(make_app(auth=check if kind == "sync" else acheck, api_keys=[KEY])) as client:
            assert (await client.post("/custom", headers={"x-gateway-user": "ann"})).json() == {"principal": {"sub": "ann", "roles": ["reader"]}}
            assert (await client.post("/custom", headers=BEARER)).json() == {"principal": "key-1"}  # keys still work beside it
            assert (await client.post("/custom")).status_code == 401
            refused = await client.post("/custom", headers={"x-gateway-user": "mallory"})
            assert refused.status_code == 401 and KEY not in refused.text
            banned = await client.post("/custom", headers={"x-gateway-user": "banned"})
            assert banned.status_code == 403 and banned.json() == {"detail": "banned here"}
            done = await client.post("/process", json=user_body("hi", stream=False), headers={"x-gateway-user": "ann"})
            assert done.json()["output"][0]["content"][0]["text"].startswith("hello {'sub': 'ann'")

    asyncio.run(scenario())


def test_a_runs_user_is_bound_to_the_principal_so_nobody_stops_or_runs_anothers_session():
    app = AgentApp(api_keys={"alice": KEY, "bob": OTHER_KEY}, bind_user_to_principal=True, enable_stream_task=True)
    alice, bob = BEARER, {"Authorization": f"Bearer {OTHER_KEY}"}

    @app.query(framework="text")
    async def handler(msgs, request):
        yield f"hi {request.user_id}"
        await asyncio.Event().wait()  # runs until stopped

    async def scenario() -> None:
        async with in_process(app) as client:
            run = asyncio.create_task(client.post("/process", json=user_body("hi", session_id="s1"), headers=alice))

            async def running() -> bool:
                return await app.get_chat_state("alice", "s1") == "RUNNING"

            deadline = asyncio.get_running_loop().time() + 10
            while not await running():
                assert asyncio.get_running_loop().time() < deadline, "alice's run did not start"
                await asyncio.sleep(0.01)
            # bob names alice: refused; bob without a user id stops his own (absent) session only
            stolen = await client.post("/process/stop", json={"session_id": "s1", "user_id": "alice"}, headers=bob)
            assert stolen.status_code == 403 and "leave user_id out or send 'bob'" in stolen.json()["detail"]
            own = await client.post("/process/stop", json={"session_id": "s1"}, headers=bob)
            assert own.json() == {"stopped": False, "user_id": "bob", "session_id": "s1"}
            assert await running()
            posing = await client.post("/process", json=user_body("hi", session_id="s2", user_id="alice"), headers=bob)
            assert posing.status_code == 403
            queued = await client.post("/process/task", json=user_body("hi", session_id="s2", user_id="alice"), headers=bob)
            assert queued.status_code == 403  # a background run is bound at submission too
            for path, body in (
                ("/compatible-mode/v1/responses", {"model": "m", "input": "hi", "user": "alice", "stream": False}),
            ):
                answer = await client.post(path, json=body, headers={**bob, "X-Agentpack-User-Id": "alice"})
                assert answer.status_code in (200, 403), answer.text  # the protocol may not carry a user id
            stopped = await client.post("/process/stop", json={"session_id": "s1"}, headers=alice)
            assert stopped.json()["stopped"] is True
            answer = await asyncio.wait_for(run, 10)
            assert answer.headers["x-agentpack-user-id"] == "alice"  # filled in from the principal
            assert sse_events(answer.text)[-1]["status"] == "canceled"

    asyncio.run(scenario())


def test_a2a_runs_as_the_principal_and_is_refused_for_anothers_user_when_bound():
    from a2a.client import ClientConfig, create_client
    from a2a.types import a2a_pb2 as pb

    from tests.nodes.protocol_node import make_app as probe_app

    app = probe_app(api_keys={"alice": KEY, "bob": OTHER_KEY}, bind_user_to_principal=True)

    def message(text: str, context: str, **metadata: Any) -> pb.SendMessageRequest:
        msg = pb.Message(message_id=f"m-{text}-{context}", role=pb.ROLE_USER, parts=[pb.Part(text=text)], context_id=context)
        msg.metadata.update(metadata)
        request = pb.SendMessageRequest(message=msg)
        request.configuration.return_immediately = True
        return request

    async def scenario() -> None:
        async with in_process(app) as http_client:
            http_client.headers.update(BEARER)
            client = await create_client("http://agent.test", ClientConfig(streaming=False, httpx_client=http_client))
            [submitted] = [e async for e in client.send_message(message("hang", "ctx-a"))]
            deadline = asyncio.get_running_loop().time() + 10
            while await app.get_chat_state("alice", "ctx-a") != "RUNNING":  # the run's user is the principal
                assert asyncio.get_running_loop().time() < deadline, "the task's run did not start as alice"
                await asyncio.sleep(0.01)
            canceled = await client.cancel_task(pb.CancelTaskRequest(id=submitted.task.id))
            assert canceled.status.state == pb.TASK_STATE_CANCELED
            [refused] = [e async for e in client.send_message(message("hi", "ctx-b", user_id="bob"))]
            task = refused.task
            if task.status.state not in (pb.TASK_STATE_REJECTED,):
                task = await client.get_task(pb.GetTaskRequest(id=task.id))
            assert task.status.state == pb.TASK_STATE_REJECTED, task
            assert "leave user_id out or send 'alice'" in task.status.message.parts[0].text

    asyncio.run(scenario())


def test_the_a2a_card_declares_bearer_and_a_cards_own_scheme_wins():
    from a2a.compat.v0_3.types import AgentCard

    from agentpack.frontends.a2a.adapter import A2AFastAPIDefaultAdapter

    async def scenario() -> None:
        async with in_process(make_app(api_keys=[KEY])) as client:
            card = (await client.get("/.well-known/agent-card.json")).json()
        assert card["securitySchemes"]["bearer"]["httpAuthSecurityScheme"]["scheme"] == "bearer"  # A2A 1.0
        assert card["securitySchemes"]["bearer"]["type"] == "http" and card["security"] == [{"bearer": []}]  # 0.3
        assert card["securityRequirements"] == [{"schemes": {"bearer": {}}}]
        # the 0.3 model a2a-sdk 0.3 clients read parses it
        assert AgentCard.model_validate(card).security == [{"bearer": []}]
        own = {"security_schemes": {"gw": {"type": "apiKey", "in": "header", "name": "X-Gateway"}}, "security": [{"gw": []}]}
        adapter = A2AFastAPIDefaultAdapter(agent_name="a", agent_description="d", a2a_config={"agent_card": own})
        app = AgentApp(api_keys=[KEY], protocol_adapters=[adapter])

        @app.query(framework="text")
        async def handler(msgs, request):
            yield "x"

        async with in_process(app) as client:
            card = (await client.get("/.well-known/agent-card.json")).json()
        assert list(card["securitySchemes"]) == ["gw"]

    asyncio.run(scenario())


def test_no_key_or_token_is_ever_logged(caplog, monkeypatch):
    monkeypatch.setenv("AGENTPACK_API_KEYS", OTHER_KEY)

    def verifier(request: Request) -> Any:
        raise RuntimeError(f"bad token {request.headers.get('authorization')}")

    caplog.set_level(logging.DEBUG)

    async def scenario() -> None:
        async with in_process(make_app(api_keys=[KEY], auth=verifier)) as client:
            for headers in (BEARER, {"Authorization": f"Bearer {OTHER_KEY}"}, {"Authorization": "Bearer wrong-one"}, {"X-Agentpack-Api-Key": KEY}, {}):
                for method, path, body in PROTECTED:
                    await call(client, method, path, body, headers)

    asyncio.run(scenario())
    logged = caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
    assert caplog.records, "nothing was logged: the check would prove nothing"
    assert "the auth verifier refused a request: RuntimeError" in caplog.text
    for secret in (KEY, OTHER_KEY, "wrong-one"):
        assert secret not in logged


# -- the clients, against a real server ------------------------------------------------------------
@pytest.mark.integration
def test_invoke_and_stop_send_the_key_from_the_flag_or_the_environment(serve, tmp_path):
    app = AgentApp(api_keys=[KEY])
    release = threading.Event()

    @app.query(framework="text")
    async def handler(msgs, request):
        yield "hello there"
        if msgs[-1].content[0].text == "wait":
            while not release.is_set():
                await asyncio.sleep(0.02)

    url = serve(app)

    def agentpack(*args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "agentpack", *args], cwd=tmp_path, env=cli_env(**env), capture_output=True, text=True, timeout=60)

    refused = agentpack("invoke", url, "hi", "--json")
    assert refused.returncode == 1 and "401" in refused.stdout + refused.stderr and KEY not in refused.stdout + refused.stderr
    for done in (agentpack("invoke", url, "hi", "--json", "--api-key", KEY), agentpack("invoke", url, "hi", "--json", AGENTPACK_API_KEY=KEY)):
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout.strip().splitlines()[-1])["text"] == "hello there"
    assert agentpack("stop", url, "--session", "s9", "--json").returncode == 1

    def run_waiting() -> None:
        with httpx.stream("POST", f"{url}/process", json=user_body("wait", session_id="s9"), headers=BEARER, timeout=30) as response:
            outcome["events"] = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]

    outcome: dict[str, Any] = {}
    reader = threading.Thread(target=run_waiting)
    reader.start()
    try:
        wait_until(lambda: http.get(f"{url}/health").json()["running_sessions"] == 1, 10, "the run did not start")
        stopped = agentpack("stop", url, "--session", "s9", "--json", "--api-key", KEY)
        assert stopped.returncode == 0 and json.loads(stopped.stdout.strip().splitlines()[-1])["stopped"] is True, stopped.stdout + stopped.stderr
    finally:
        release.set()
        reader.join(30)
    assert outcome["events"][-1]["status"] == "canceled"


@pytest.mark.integration
def test_agentpack_ui_relay_passes_the_pages_key_on(serve):
    from agentpack.cli.ui_view import relay_app

    app = AgentApp(api_keys=[KEY])

    @app.query(framework="text")
    async def handler(msgs, request):
        yield f"hello {current_principal()}"

    upstream = serve(app)
    page = serve(relay_app(upstream, {"process": "/process", "stop": "/process/stop"}, None, "local/keyed"))
    assert http.post(f"{page}/process", json=user_body("hi", stream=False)).status_code == 401
    answer = http.post(f"{page}/process", json=user_body("hi", stream=False), headers=BEARER)
    assert answer.status_code == 200 and answer.json()["output"][0]["content"][0]["text"] == "hello key-1"
    stopped = http.post(f"{page}/process/stop", json={"session_id": "none"}, headers=BEARER)
    assert stopped.status_code == 200 and stopped.json()["stopped"] is False


@pytest.mark.integration
def test_run_ask_sends_the_key_the_served_app_reads(tmp_path):
    (tmp_path / "app.py").write_text(
        "from agentpack import AgentApp\napp = AgentApp()\n\n@app.query(framework='text')\nasync def handler(msgs, request):\n    yield 'keyed reply'\n"
    )
    from tests.support import free_port

    done = subprocess.run(
        [sys.executable, "-m", "agentpack", "run", "app.py", "--port", str(free_port()), "--ask", "hi", "--once"],
        cwd=tmp_path, env=cli_env(AGENTPACK_API_KEYS=KEY), capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0 and "keyed reply" in done.stdout, done.stdout + done.stderr
    assert KEY not in done.stdout + done.stderr


# -- the chat page, in a real browser ---------------------------------------------------------------
@pytest.mark.integration
def test_the_chat_page_asks_for_the_key_on_a_401_and_takes_one_from_the_address_fragment(serve, browser):  # noqa: F811
    from agentpack.frontends.ui.adapter import ChatPageAdapter
    from tests.test_ui import ChatPage

    driver = browser
    app = AgentApp(api_keys=[KEY, OTHER_KEY], protocol_adapters=[ChatPageAdapter()])

    @app.query(framework="text")
    async def handler(msgs, request):
        yield f"hello {current_principal()}"
        if msgs[-1].content[0].text == "wait":
            await asyncio.Event().wait()  # until stopped

    url = serve(app)
    page = ChatPage(driver, f"{url}/ui")
    page.send("hi")
    page.wait(lambda: _alert(driver) is not None, 10, "the page did not ask for the key")
    alert = driver.switch_to.alert
    alert.send_keys(KEY)
    alert.accept()
    turn = page.ended("error")
    assert "401" in turn["errors"][0]["text"] and "key saved" in turn["errors"][0]["text"]
    page.send("again")
    assert page.ended("completed") and page.answer() == "hello key-1"
    page = ChatPage(driver, f"{url}/ui#key={OTHER_KEY}")
    page.wait(lambda: driver.execute_script("return location.hash") == "", 5, "the key stayed in the address bar")
    page.send("hi")
    assert page.ended("completed") and page.answer() == "hello key-2"
    page.send("wait")  # Stop carries the key too: the run ends canceled, not refused
    page.wait(lambda: page.answer() == "hello key-2", 10, "the waiting run did not start")
    page.click("stop")
    assert page.ended("canceled")
    assert "refused" not in driver.execute_script("return document.getElementById('status').textContent")


def _alert(driver: Any) -> Any:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        return driver.switch_to.alert
    except NoAlertPresentException:
        return None


def test_with_cors_a_preflight_passes_and_a_refusal_still_carries_the_cors_headers():
    """CORS sits outside the guard: a browser's preflight (no credentials, by design) is answered,
    and a 401 reaches the page as a 401 it can read, not as a CORS error."""
    app = AgentApp(api_keys=[KEY], cors_origins=["https://ui.example.com"])

    @app.query(framework="text")
    async def handler(msgs, request):
        yield "x"

    async def scenario() -> None:
        async with in_process(app) as client:
            origin = {"Origin": "https://ui.example.com"}
            preflight = await client.options(
                "/process", headers={**origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
            )
            assert preflight.status_code == 200 and "authorization" in preflight.headers["access-control-allow-headers"].lower()
            refused = await client.post("/process", json=user_body("hi"), headers=origin)
            assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == "https://ui.example.com"
            served = await client.post("/process", json=user_body("hi", stream=False), headers={**origin, **BEARER})
            assert served.status_code == 200 and served.headers["access-control-allow-origin"] == "https://ui.example.com"
            # an OPTIONS that is no preflight is not a way around the guard
            assert (await client.options("/mine-nothing")).status_code == 401

    asyncio.run(scenario())
