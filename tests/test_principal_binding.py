"""Results read by id are bound to the principal that submitted them (issue 21): with auth on,
an ``@app.task`` job, a background run and an A2A task are read, followed or canceled by their
submitter alone, and anyone else gets exactly the answer of an id never issued (so ids cannot be
probed).  The stores keep a hash of the principal, never the principal; apps without auth and
routes opened with ``auth=False`` bind nothing.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
from fastapi import Request

from agentpack import AgentApp
from agentpack.app.auth import owner_key
from tests.support import in_process, user_body

ANN_KEY = "k-ann-0000000000000000000000000001"
BOB_KEY = "k-bob-0000000000000000000000000002"
ANN = {"Authorization": f"Bearer {ANN_KEY}"}
BOB = {"Authorization": f"Bearer {BOB_KEY}"}
JSON = {"content-type": "application/json"}


def task_app(**keywords: Any) -> tuple[AgentApp, asyncio.Event]:
    """Two task routes (one bound, one opened with ``auth=False``) whose jobs wait for ``release``,
    and background runs of the agent."""
    release = asyncio.Event()
    app = AgentApp(enable_stream_task=True, **keywords)

    @app.query(framework="text")
    async def agent(msgs, request):
        yield "done"

    @app.task("/jobs")
    async def job(body):
        await release.wait()
        return {"x": body["x"]}

    @app.task("/open-jobs", auth=False)
    async def open_job(body):
        return {"x": body["x"]}

    return app, release


async def submit(client: httpx.AsyncClient, path: str, body: Any, headers: dict[str, str]) -> str:
    answer = await client.post(path, content=json.dumps(body), headers={**JSON, **headers})
    assert answer.status_code == 200, answer.text
    task_id: str = answer.json()["task_id"]
    return task_id


def unknown_answer(answer: httpx.Response, task_id: str) -> tuple[int, Any]:
    """An answer with the task id taken out, to compare with the answer for an id never issued."""
    return answer.status_code, json.loads(answer.text.replace(task_id, "<id>"))


def test_a_task_is_read_and_canceled_by_its_submitter_alone_others_get_the_unknown_ids_answer():
    app, release = task_app(api_keys={"ann": ANN_KEY, "bob": BOB_KEY})

    async def scenario() -> None:
        async with in_process(app) as client:
            task_id = await submit(client, "/jobs", {"x": 1}, ANN)
            never = uuid.uuid4().hex
            for method in ("GET", "DELETE"):
                strange = await client.request(method, f"/jobs/{never}", headers=BOB)
                probe = await client.request(method, f"/jobs/{task_id}", headers=BOB)
                assert unknown_answer(probe, task_id) == unknown_answer(strange, never), method
            assert (await client.get(f"/jobs/{task_id}", headers=BOB)).json()["error"] == f"Task {task_id} not found"
            assert (await client.delete(f"/jobs/{task_id}", headers=BOB)).status_code == 404
            # bob's cancel did nothing: ann's job still runs, and ends as it should
            assert (await client.get(f"/jobs/{task_id}", headers=ANN)).json()["status"] in ("pending", "running")
            release.set()
            deadline = asyncio.get_running_loop().time() + 10
            while (state := (await client.get(f"/jobs/{task_id}", headers=ANN)).json())["status"] != "finished":
                assert asyncio.get_running_loop().time() < deadline, state
                await asyncio.sleep(0.01)
            assert state["result"] == {"x": 1}
            assert (await client.get(f"/jobs/{task_id}", headers=BOB)).json()["error"] == f"Task {task_id} not found"
            # ann's other job, canceled by ann
            release.clear()
            second = await submit(client, "/jobs", {"x": 2}, ANN)
            canceled = await client.delete(f"/jobs/{second}", headers=ANN)
            assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"

    asyncio.run(scenario())


def test_a_background_run_is_bound_too():
    app, _ = task_app(api_keys={"ann": ANN_KEY, "bob": BOB_KEY})

    async def scenario() -> None:
        async with in_process(app) as client:
            task_id = await submit(client, "/process/task", user_body("hi", session_id="s-ann"), ANN)
            deadline = asyncio.get_running_loop().time() + 10
            while (state := (await client.get(f"/process/task/{task_id}", headers=ANN)).json())["status"] != "finished":
                assert asyncio.get_running_loop().time() < deadline, state
                await asyncio.sleep(0.01)
            assert state["result"]["status"] == "completed"
            probe = await client.get(f"/process/task/{task_id}", headers=BOB)
            assert probe.json() == {"error": f"Task {task_id} not found", "task_id": task_id}
            assert (await client.delete(f"/process/task/{task_id}", headers=BOB)).status_code == 404
            # the task routes share one queue: another task route does not read it either
            assert (await client.get(f"/jobs/{task_id}", headers=BOB)).json()["error"] == f"Task {task_id} not found"
            assert (await client.get(f"/open-jobs/{task_id}")).json()["error"] == f"Task {task_id} not found"

    asyncio.run(scenario())


def test_a_tokens_subject_owns_the_task_so_a_renewed_token_reads_it():
    """With JWT-like claims the owner is the claims' ``sub``: a token renewed (new ``iat``) still
    reads its task, another subject does not."""

    def verify(request: Request) -> Any:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.startswith("{"):
            return None
        return json.loads(token)  # stands in for a verified JWT's claims

    def claims(sub: str, iat: int) -> dict[str, str]:
        return {"Authorization": "Bearer " + json.dumps({"sub": sub, "iat": iat})}

    app, release = task_app(auth=verify)
    release.set()

    async def scenario() -> None:
        async with in_process(app) as client:
            task_id = await submit(client, "/jobs", {"x": 3}, claims("ann", 1))
            deadline = asyncio.get_running_loop().time() + 10
            while (state := (await client.get(f"/jobs/{task_id}", headers=claims("ann", 2))).json()).get(
                "status"
            ) != "finished":
                assert asyncio.get_running_loop().time() < deadline, state
                await asyncio.sleep(0.01)
            other = await client.get(f"/jobs/{task_id}", headers=claims("bob", 1))
            assert other.json() == {"error": f"Task {task_id} not found", "task_id": task_id}

    asyncio.run(scenario())


def test_routes_opened_with_auth_false_and_apps_without_auth_bind_nothing():
    async def scenario(app: AgentApp, headers: dict[str, str], reader: dict[str, str]) -> None:
        async with in_process(app) as client:
            task_id = await submit(client, "/open-jobs", {"x": 4}, headers)
            deadline = asyncio.get_running_loop().time() + 10
            while (await client.get(f"/open-jobs/{task_id}", headers=reader)).json().get("status") != "finished":
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.01)

    with_auth, _ = task_app(api_keys={"ann": ANN_KEY, "bob": BOB_KEY})
    asyncio.run(scenario(with_auth, ANN, {}))  # anyone reads what an open route took
    without, _ = task_app()
    asyncio.run(scenario(without, {}, {}))


def test_the_owner_is_a_hash_of_the_principals_id():
    assert owner_key(None) is None
    assert owner_key("ann") == owner_key({"sub": "ann", "iat": 1}) == owner_key({"sub": "ann", "iat": 2})
    assert owner_key("ann") != owner_key("bob")
    assert len(owner_key("ann") or "") == 64 and "ann" not in (owner_key("ann") or "")
    assert owner_key("用户🙂") != owner_key("用户")


# -- A2A -------------------------------------------------------------------------------------------
A2A = {"A2A-Version": "1.0"}


def rpc(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}


def send(text: str, context: str, task_id: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {
        "messageId": uuid.uuid4().hex,
        "role": "ROLE_USER",
        "parts": [{"text": text}],
        "contextId": context,
    }
    if task_id is not None:
        message["taskId"] = task_id
    return rpc("SendMessage", {"message": message, "configuration": {"returnImmediately": True}})


def error_of(answer: httpx.Response, task_id: str) -> dict[str, Any]:
    """The JSON-RPC error with the task id taken out."""
    body = json.loads(answer.text.replace(task_id, "<id>"))
    assert "error" in body, body
    error: dict[str, Any] = body["error"]
    return error


def test_an_a2a_task_is_read_followed_and_canceled_by_its_submitter_alone():
    from tests.nodes.protocol_node import make_app as probe_app

    app = probe_app(api_keys={"ann": ANN_KEY, "bob": BOB_KEY})

    async def scenario() -> None:
        async with in_process(app) as client:

            async def call(body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
                return await client.post("/a2a", json=body, headers={**A2A, **headers})

            started = (await call(send("hang", "ctx-ann"), ANN)).json()
            task_id = started["result"]["task"]["id"]
            deadline = asyncio.get_running_loop().time() + 10
            while await app.get_chat_state("ctx-ann", "ctx-ann") != "RUNNING":
                assert asyncio.get_running_loop().time() < deadline, "ann's task did not start"
                await asyncio.sleep(0.01)
            never = uuid.uuid4().hex

            async def bob_sees_nothing() -> None:
                for method in ("GetTask", "CancelTask", "SubscribeToTask"):
                    probe = error_of(await call(rpc(method, {"id": task_id}), BOB), task_id)
                    strange = error_of(await call(rpc(method, {"id": never}), BOB), never)
                    assert probe == strange and probe["code"] == -32001, (method, probe)
                follow_up = error_of(await call(send("more", "ctx-bob", task_id), BOB), task_id)
                assert follow_up == error_of(await call(send("more", "ctx-bob", never), BOB), never)
                assert follow_up["code"] == -32001

            await bob_sees_nothing()  # while it runs on this instance
            assert await app.get_chat_state("ctx-ann", "ctx-ann") == "RUNNING"  # bob's cancel did nothing
            mine = (await call(rpc("GetTask", {"id": task_id}), ANN)).json()
            assert mine["result"]["status"]["state"] in ("TASK_STATE_SUBMITTED", "TASK_STATE_WORKING")
            canceled = (await call(rpc("CancelTask", {"id": task_id}), ANN)).json()
            assert canceled["result"]["status"]["state"] == "TASK_STATE_CANCELED"
            await bob_sees_nothing()  # ended: read from the task records
            again = (await call(rpc("GetTask", {"id": task_id}), ANN)).json()
            assert again["result"]["status"]["state"] == "TASK_STATE_CANCELED"

    asyncio.run(scenario())


def test_an_a2a_tasks_record_keeps_the_owners_hash_and_apps_without_auth_bind_nothing():
    from tests.nodes.protocol_node import make_app as probe_app

    async def scenario(app: AgentApp, headers: dict[str, str]) -> dict[str, Any]:
        async with in_process(app) as client:
            body = send("session", "ctx-rec")
            body["params"]["configuration"]["returnImmediately"] = False
            task = (await client.post("/a2a", json=body, headers={**A2A, **headers})).json()["result"]["task"]
            read = (
                await client.post("/a2a", json=rpc("GetTask", {"id": task["id"]}), headers={**A2A, **headers})
            ).json()
            raw = await app.runs.records("a2a-tasks").get(task["id"])
            assert raw is not None
            return {"read": read, "record": json.loads(raw)}

    bound = asyncio.run(scenario(probe_app(api_keys={"ann": ANN_KEY}), ANN))
    assert bound["record"]["owner"] == owner_key("ann") and "ann" not in json.dumps(bound["record"]["owner"])
    assert bound["read"]["result"]["status"]["state"] == "TASK_STATE_COMPLETED"
    open_app = asyncio.run(scenario(probe_app(), {}))
    assert "owner" not in open_app["record"]
    assert open_app["read"]["result"]["status"]["state"] == "TASK_STATE_COMPLETED"


# -- Celery ----------------------------------------------------------------------------------------
def test_a_celery_task_is_bound_and_its_marker_holds_the_owners_hash(redis_server):
    import redis

    from tests.nodes.cluster import Worker
    from tests.nodes.task_app import make_app

    queue = f"q-{uuid.uuid4().hex[:8]}"
    backend = f"redis://127.0.0.1:{redis_server.port}/1"
    app = make_app(redis_server.url, backend, queue, api_keys={"ann": ANN_KEY, "bob": BOB_KEY})
    worker = Worker(redis_server.url, backend, queue).start(app.celery_app)

    async def scenario() -> None:
        async with in_process(app) as client:
            task_id = await submit(client, "/square", {"x": 5}, ANN)
            never = uuid.uuid4().hex
            for method in ("GET", "DELETE"):
                probe = await client.request(method, f"/square/{task_id}", headers=BOB)
                strange = await client.request(method, f"/square/{never}", headers=BOB)
                assert unknown_answer(probe, task_id) == unknown_answer(strange, never), method
            deadline = asyncio.get_running_loop().time() + 60
            while (state := (await client.get(f"/square/{task_id}", headers=ANN)).json()).get("status") != "finished":
                assert asyncio.get_running_loop().time() < deadline, state
                await asyncio.sleep(0.05)
            assert state["result"] == {"result": 25}
            finished = await client.get(f"/square/{task_id}", headers=BOB)
            assert finished.json() == {"error": f"Task {task_id} not found", "task_id": task_id}
            store = redis.Redis.from_url(backend)
            marker = json.loads(store.get(f"agentpack-task-{task_id}") or b"{}")
            assert marker["owner"] == owner_key("ann") and b"ann" not in (store.get(f"agentpack-task-{task_id}") or b"")

    try:
        asyncio.run(scenario())
    finally:
        worker.stop()
