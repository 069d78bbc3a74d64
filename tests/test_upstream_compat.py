"""AgentScope Runtime's apps, clients and tests, with only their imports changed.

Each test is written the way AgentScope Runtime's own tests and examples talk to an
``AgentApp``: ``from agentscope_runtime.engine.schemas.agent_schemas import ...`` became
``from agentpack import ...``, aiohttp clients against a server started with
``LocalDeployManager``, ``RunStatus.Completed`` comparisons, ``await manager.stop(deploy_id)``
in ``finally``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import aiohttp
import httpx
import pytest
from agentscope.message import Msg

from agentpack import (
    AgentApp,
    AgentRequest,
    AgentResponse,
    ContentType,
    LocalDeployManager,
    Message,
    MessageType,
    Role,
    RunStatus,
    TextContent,
)
from tests.support import free_port, wait_until, http

ROOT = Path(__file__).resolve().parents[1]


async def sse_events(resp: aiohttp.ClientResponse) -> list[dict]:
    """The ``data:`` events of an SSE body, read line by line as AgentScope Runtime's tests do."""
    events = []
    async for raw in resp.content:
        line = raw.decode("utf-8").strip()
        if line.startswith("data:"):
            events.append(json.loads(line[len("data:"):].strip()))
    return events


# -- the schema module -------------------------------------------------------------------


def test_schema_names_and_spellings_are_agentscope_runtimes():
    assert {name: getattr(RunStatus, name) for name in ("Created", "InProgress", "Completed", "Canceled", "Failed", "Rejected", "Unknown", "Queued", "Incomplete")} == {
        "Created": "created",
        "InProgress": "in_progress",
        "Completed": "completed",
        "Canceled": "canceled",
        "Failed": "failed",
        "Rejected": "rejected",
        "Unknown": "unknown",
        "Queued": "queued",
        "Incomplete": "incomplete",
    }
    event = json.loads(json.dumps({"status": RunStatus.Completed}))
    assert event["status"] == RunStatus.Completed and RunStatus.Completed == event["status"]
    assert (MessageType.MESSAGE, MessageType.REASONING, MessageType.PLUGIN_CALL, MessageType.MCP_TOOL_CALL) == ("message", "reasoning", "plugin_call", "mcp_call")
    assert "plugin_call_output" in MessageType.all_values()
    assert (Role.USER, Role.ASSISTANT, Role.SYSTEM, Role.TOOL) == ("user", "assistant", "system", "tool")
    assert (ContentType.TEXT, ContentType.DATA, ContentType.IMAGE, ContentType.AUDIO) == ("text", "data", "image", "audio")

    request = AgentRequest(
        input=[Message(role=Role.USER, type=MessageType.MESSAGE, content=[TextContent(text="你好")])],
        session_id="会话-1",
    )
    body = request.model_dump()
    assert body["input"][0]["content"][0] == {
        "sequence_number": None,
        "object": "content",
        "status": None,
        "error": None,
        "type": "text",
        "index": None,
        "delta": False,
        "msg_id": None,
        "text": "你好",
    }
    assert body["input"][0]["status"] == RunStatus.Created and body["input"][0]["id"].startswith("msg_")
    assert Message(role="assistant", content=[TextContent(text="a"), TextContent(text="b")]).get_text_content() == "a"
    assert Message(role="user").completed().status == RunStatus.Completed


def test_import_agentpack_stays_light():
    code = "import sys, agentpack; print(any(m.split('.')[0] in ('pydantic', 'fastapi') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.strip() == "False"


# -- /process through a LocalDeployManager ------------------------------------------------


def story_app(**kwargs) -> AgentApp:
    """AgentScope Runtime's stream-task test agent: three steps never marked last, then a final answer."""
    app = AgentApp(app_name="TestAgent", app_description="Test agent for background tasks", **kwargs)

    @app.query(framework="agentscope")
    async def query_func(self, msgs, request: AgentRequest, **kwargs):
        for i in range(3):
            await asyncio.sleep(0.01)
            yield Msg(name="assistant", content=f"Thinking step {i}", role="assistant"), False
        yield Msg(name="assistant", content="Final answer", role="assistant"), True

    return app


@pytest.mark.integration
def test_process_stream_read_with_aiohttp_and_agent_response():
    async def scenario():
        manager = LocalDeployManager(host="127.0.0.1", port=free_port())
        deploy_id = None
        try:
            info = await story_app().deploy(manager)
            deploy_id = info["deploy_id"]
            request = AgentRequest(input=[Message(role="user", content=[TextContent(text="Hello")])], session_id="s-1")
            async with aiohttp.ClientSession() as session:
                async with session.post(f"{info['url']}/process", json=request.model_dump()) as resp:
                    assert resp.status == 200
                    assert resp.headers["content-type"].startswith("text/event-stream")
                    events = await sse_events(resp)
        finally:
            result = await manager.stop(deploy_id)
        assert result["success"] is True
        final = events[-1]
        assert final["object"] == "response" and final["status"] == RunStatus.Completed
        response = AgentResponse.model_validate(final)
        assert response.status == RunStatus.Completed and response.session_id == "s-1"
        texts = [m.get_text_content() for m in response.output]
        assert texts == ["Thinking step 0", "Thinking step 1", "Thinking step 2", "Final answer"]
        for event in events:
            if event["object"] == "message" and event["status"] == RunStatus.Completed:
                assert Message.model_validate(event).type == MessageType.MESSAGE

    asyncio.run(scenario())


@pytest.mark.integration
def test_stream_task_routes_as_agentscope_runtimes_tests_use_them():
    async def scenario():
        manager = LocalDeployManager(host="127.0.0.1", port=free_port())
        app = story_app(enable_stream_task=True, stream_task_queue="test_queue")
        deploy_id = None
        try:
            deploy_id = (await app.deploy(manager))["deploy_id"]
            base = manager.service_url
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{base}/") as resp:
                    assert resp.status == 200
                    data = await resp.json()
                    assert data["endpoints"]["task"] == "/process/task"
                    assert data["endpoints"]["task_status"] == "/process/task/{task_id}"

                body = {"input": [{"role": "user", "type": "message", "content": [{"type": "text", "text": "Hello"}]}], "session_id": "test-session"}
                async with session.post(f"{base}/process/task", json=body) as resp:
                    assert resp.status == 200
                    data = await resp.json()
                    assert data["status"] == "submitted" and data["queue"] == "test_queue" and "message" in data
                    task_id = data["task_id"]

                async def status() -> dict:
                    async with session.get(f"{base}/process/task/{task_id}") as resp:
                        assert resp.status == 200
                        return await resp.json()

                for _ in range(2000):  # polled with a deadline, as a client would
                    data = await status()
                    assert data["status"] in ("pending", "running", "finished")
                    if data["status"] == "finished":
                        break
                    await asyncio.sleep(0.01)
                result = data["result"]
                assert result["object"] == "response" and result["status"] == RunStatus.Completed
                assert [m["content"][0]["text"] for m in result["output"]][-1] == "Final answer"

                async with session.get(f"{base}/process/task/nonexistent-task-id") as resp:
                    assert resp.status == 200
                    data = await resp.json()
                    assert "error" in data and "not found" in data["error"].lower()
        finally:
            await manager.stop(deploy_id)

    asyncio.run(scenario())


@pytest.mark.integration
def test_canceled_response_carries_what_was_streamed():
    """14 words streamed, then a stop: the canceled response holds those 14 words, as received."""
    words = "Once upon a time a robot named Friday read a story and explored a distant galaxy".split()
    app = AgentApp()
    gate = asyncio.Event()

    @app.query(framework="agentscope")
    async def query_func(self, msgs, request: AgentRequest = None, **kwargs):
        answer = Msg("Friday", "", "assistant")
        for i in range(len(words)):
            if i == 14:
                await gate.wait()  # never set: the run is stopped here
            answer.content = " ".join(words[: i + 1])
            yield answer, i == len(words) - 1

    async def scenario():
        manager = LocalDeployManager(host="127.0.0.1", port=free_port())
        deploy_id = None
        try:
            deploy_id = (await app.deploy(manager))["deploy_id"]
            body = {"input": [{"role": "user", "content": [{"type": "text", "text": "story"}]}], "session_id": "s-stop", "user_id": "u"}
            async with aiohttp.ClientSession() as session:
                async with session.post(f"{manager.service_url}/process", json=body) as resp:
                    events = []
                    async for raw in resp.content:
                        line = raw.decode("utf-8").strip()
                        if not line.startswith("data:"):
                            continue
                        events.append(json.loads(line[5:]))
                        deltas = [e for e in events if e["object"] == "content" and e.get("delta")]
                        if len(deltas) == 14 and len(events) == 3 + 14:  # the run now waits at word 15
                            stop = await session.post(f"{manager.service_url}/process/stop", json={"session_id": "s-stop", "user_id": "u"})
                            assert (await stop.json())["stopped"] is True
        finally:
            await manager.stop(deploy_id)
        return events

    events = asyncio.run(scenario())
    final = events[-1]
    assert final["status"] == RunStatus.Canceled
    received = "".join(e["text"] for e in events if e["object"] == "content" and e.get("delta"))
    assert received == " ".join(words[:14])
    [message] = final["output"]
    assert message["status"] == RunStatus.Incomplete and message["id"] == events[2]["id"]
    assert message["content"][0]["text"] == received and message["content"][0]["status"] == RunStatus.Incomplete
    assert AgentResponse.model_validate(final).output[0].get_text_content() == received


# -- LocalDeployManager --------------------------------------------------------------------


def app_with_test_endpoint(name: str) -> AgentApp:
    app = AgentApp(app_name=name)

    @app.endpoint("/test", methods=["GET"])
    async def test_endpoint():
        return {"app": name}

    return app


@pytest.mark.integration
def test_two_managers_on_different_ports_serve_at_once():
    async def scenario():
        first = LocalDeployManager(host="127.0.0.1", port=free_port())
        second = LocalDeployManager(host="127.0.0.1", port=free_port())
        ids = {}
        try:
            ids["first"] = (await app_with_test_endpoint("one").deploy(first))["deploy_id"]
            ids["second"] = (await app_with_test_endpoint("two").deploy(second))["deploy_id"]
            assert first.is_running and second.is_running and ids["first"] != ids["second"]
            async with aiohttp.ClientSession() as session:
                for manager, name in ((first, "one"), (second, "two")):
                    async with session.get(f"{manager.service_url}/test") as resp:
                        assert resp.status == 200 and await resp.json() == {"app": name}
        finally:
            stopped = [await first.stop(ids.get("first")), await second.stop(ids.get("second"))]
        assert [s["success"] for s in stopped] == [True, True]
        assert stopped[0]["message"] and stopped[0]["details"]["deploy_id"] == ids["first"]
        assert not first.is_running and first.service_url is None
        again = await first.stop(ids["first"])  # nothing runs: an answer, not an exception
        assert again["success"] is False and "not running" in again["message"]

    asyncio.run(scenario())


@pytest.mark.integration
def test_a_second_deploy_on_a_busy_manager_is_refused():
    async def scenario():
        manager = LocalDeployManager(host="127.0.0.1", port=free_port())
        deploy_id = None
        try:
            deploy_id = (await app_with_test_endpoint("one").deploy(manager))["deploy_id"]
            with pytest.raises(RuntimeError, match="^Service is already running"):  # not a failed start-up
                await app_with_test_endpoint("two").deploy(manager)
            async with httpx.AsyncClient() as client:  # the first deployment is untouched
                assert (await client.get(f"{manager.service_url}/test")).json() == {"app": "one"}
            wrong = await manager.stop("not-this-one")
            assert wrong["success"] is False and manager.is_running
        finally:
            result = await manager.stop(deploy_id)
        assert result["success"] is True
        assert (await manager.stop())["success"] is False  # no id: still an answer

    asyncio.run(scenario())


def test_a_new_manager_holds_nothing_and_keeps_one_value_per_timeout():
    manager = LocalDeployManager(host="localhost", port=8090)
    assert (manager._server, manager._server_task, manager._app, manager.is_running) == (None, None, None, False)
    assert (manager._startup_timeout, manager._shutdown_timeout) == (30, 30)
    assert (manager.startup_timeout, manager.shutdown_timeout) == (30, 30)

    manager = LocalDeployManager(startup_timeout=5, shutdown_timeout=7)
    assert (manager._startup_timeout, manager._shutdown_timeout) == (5, 7)
    manager.startup_timeout, manager._shutdown_timeout = 9, 11  # either spelling, one value
    assert (manager._startup_timeout, manager.shutdown_timeout) == (9, 11)
    assert not {"startup_timeout", "shutdown_timeout"} & set(vars(manager))


def test_is_running_is_assignable_and_service_url_follows_it():
    """AgentScope Runtime's tests and scripts assign ``is_running``; no server is involved."""
    manager = LocalDeployManager(host="localhost", port=8090)
    assert manager.service_url is None
    manager.is_running = True
    manager.port = 8000
    assert manager.is_running is True and manager.service_url == "http://localhost:8000"
    manager.is_running = False
    assert manager.service_url is None
    wildcard = LocalDeployManager(host="0.0.0.0", port=8001)
    wildcard.is_running = True
    assert wildcard.service_url == "http://127.0.0.1:8001"  # an address a client can reach


def test_stop_when_nothing_runs_answers_instead_of_raising():
    async def scenario():
        manager = LocalDeployManager(host="localhost", port=free_port())
        manager.is_running = False
        first = await manager.stop("")
        manager.is_running = True  # assigned, but nothing is served
        second = await manager.stop()
        return manager, first, second

    manager, first, second = asyncio.run(scenario())
    assert first["success"] is False and "not running" in first["message"]
    assert second["success"] is False and manager.is_running is False and manager._server is None


@pytest.mark.integration
def test_a_served_wildcard_host_and_port_0_give_a_reachable_url_and_stop_leaves_nothing():
    app = app_with_test_endpoint("wild")

    async def scenario():
        manager = LocalDeployManager(host="0.0.0.0", port=0)
        info = await app.deploy(manager)
        try:
            port = int(info["url"].rsplit(":", 1)[1])
            assert port != 0 and info["url"] == manager.service_url == f"http://127.0.0.1:{port}"
            assert manager.is_running is True and manager._app is app and manager._server is not None
            # a synchronous client blocking this event loop: the server has its own loop, so it answers
            assert http.get(f"{manager.service_url}/test", timeout=10).json() == {"app": "wild"}
        finally:
            result = await manager.stop(info["deploy_id"])
        return manager, result, port

    manager, result, port = asyncio.run(scenario())
    assert result["success"] is True
    assert (manager._server, manager._server_task, manager._app, manager.is_running, manager.service_url) == (None, None, None, False, None)
    assert not [t for t in threading.enumerate() if t.name == f"agentpack-local-{port}"]
    with pytest.raises(httpx.ConnectError):
        http.get(f"http://127.0.0.1:{port}/test", timeout=2)


@pytest.mark.integration
def test_a_server_that_never_becomes_ready_fails_the_deploy_and_is_shut_down(monkeypatch):
    calls: list[str] = []
    app = AgentApp(after_finish=lambda app: calls.append("after_finish"))
    port = free_port()
    manager = LocalDeployManager(host="127.0.0.1", port=port)
    manager._startup_timeout = 0.1
    monkeypatch.setattr(manager, "_is_server_ready", lambda: False)  # what the start-up wait polls

    with pytest.raises(RuntimeError, match="Failed to deploy service: Server did not become ready within timeout"):
        asyncio.run(manager.deploy(app=app))
    assert (manager._server, manager._server_thread, manager._app, manager.is_running) == (None, None, None, False)
    assert calls == ["after_finish"]  # the app's lifespan ran its shutdown: the server stopped gracefully
    assert not [t for t in threading.enumerate() if t.name == f"agentpack-local-{port}"]
    with pytest.raises(httpx.ConnectError):
        http.get(f"http://127.0.0.1:{port}/", timeout=2)

    with pytest.raises(RuntimeError, match="^Server did not become ready within timeout"):  # the blocking form
        manager.start(app)
    monkeypatch.undo()  # the same manager serves once the server is ready
    info = asyncio.run(manager.deploy(app=app))
    try:
        assert http.get(f"{info['url']}/health", timeout=10).status_code == 200
    finally:
        manager.shutdown()
    assert manager.is_running is False


# -- app.run() -----------------------------------------------------------------------------


@pytest.mark.integration
def test_run_takes_web_ui_and_agentscope_runtime_keywords(tmp_path):
    script = tmp_path / "web_ui_app.py"
    port = free_port()
    script.write_text(
        textwrap.dedent(
            f"""
            from agentpack import AgentApp

            agent_app = AgentApp(app_name="Friday", enable_stream_task=True)

            @agent_app.query(framework="text")
            async def query_func(self, msgs, request=None, **kwargs):
                yield "hi"

            agent_app.run(
                host="127.0.0.1",
                port={port},
                web_ui=True,
                endpoint_path="/agent",
                stream=True,
                mode="daemon_thread",
                embed_task_processor=False,
                log_level="warning",
                no_such_option=1,
            )
            """
        )
    )
    log = tmp_path / "log.txt"
    with log.open("w") as err:
        process = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, "PYTHONPATH": str(ROOT)})
    url = f"http://127.0.0.1:{port}"

    def serving() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"run() exited: {log.read_text()}")
        try:
            return http.get(f"{url}/liveness", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(serving, 30, "app.run() did not serve")
        endpoints = http.get(f"{url}/").json()["endpoints"]
        assert (endpoints["process"], endpoints["task"], endpoints["task_status"]) == ("/agent", "/agent/task", "/agent/task/{task_id}")
        submitted = http.post(f"{url}/agent/task", json={"input": [{"role": "user", "content": "hi"}]}).json()
        wait_until(lambda: http.get(f"{url}/agent/task/{submitted['task_id']}").json()["status"] == "finished", 30, "the moved background route did not run")
        with http.stream("POST", f"{url}/agent", json={"input": [{"role": "user", "content": "hi"}]}) as response:
            assert response.status_code == 200
        assert http.post(f"{url}/process", json={"input": []}).status_code in (404, 405)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    text = log.read_text()
    assert "TypeError" not in text
    [hint] = [line for line in text.splitlines() if "web_ui=True" in line]
    assert f"http://127.0.0.1:{port}/agent" in hint and "agentpack run" in hint
    assert "no_such_option" in text  # warned about, not passed to uvicorn


def test_the_constructor_takes_upstreams_positional_order_and_its_logger():
    import logging

    logger = logging.getLogger("my-deploys")
    manager = LocalDeployManager("localhost", 9000, 5, 7, logger)
    assert (manager.shutdown_timeout, manager.startup_timeout, manager.logger) == (5, 7, logger)
