"""@app.task over real HTTP: embedded queue, and Celery workers on Redis and RabbitMQ brokers."""

from __future__ import annotations

import json
import socket
import uuid
from typing import Iterator

import pytest

from agentpack.deployers.local import LocalDeployManager
from tests.support import RedisServer, free_port, wait_until, http
from tests.nodes.cluster import Worker
from tests.nodes.task_app import make_app

AMQP = "amqp://guest:guest@127.0.0.1:5672//"


def rabbitmq_answers() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
        return True
    except OSError:
        return False


class Env:
    """A served task app plus, in Celery modes, its broker and a worker process."""

    def __init__(self, url: str, app, worker=None) -> None:
        self.url, self.app, self.worker = url, app, worker

    def submit(self, path: str, body=None) -> str:
        # a submission is declared JSON even when it carries nothing (415 otherwise: test_limits_and_input.py)
        response = http.post(f"{self.url}{path}", content=json.dumps(body), headers={"content-type": "application/json"})
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["status"] == "submitted" and answer["task_id"] and answer["queue"]
        assert answer["task_id"] in answer["message"] or answer["message"].startswith("Stream query task submitted")
        return answer["task_id"]

    def status(self, path: str, task_id: str) -> dict:
        response = http.get(f"{self.url}{path}/{task_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def final(self, path: str, task_id: str, timeout: float = 60) -> dict:
        return wait_until(
            lambda: (s := self.status(path, task_id))["status"] in ("finished", "error", "canceled") and s,
            timeout,
            f"task {task_id} did not finish",
            interval=0.02,
        )


@pytest.fixture(scope="module", params=["embedded", "celery-redis", "celery-amqp"])
def env(request) -> Iterator[Env]:
    """One served app (and worker) per mode, shared by the module's tests: task ids keep them apart."""
    redis_server = RedisServer(free_port()).start()
    manager = LocalDeployManager(port=0)
    worker = None
    try:
        if request.param == "embedded":
            app = make_app(enable_stream_task=True)
        else:
            queue = f"q-{uuid.uuid4().hex[:8]}"  # never picks up another run's leftovers
            if request.param == "celery-amqp":
                if not rabbitmq_answers():
                    pytest.fail("RabbitMQ is not answering on 127.0.0.1:5672; start it (rabbitmq-server -detached)")
                broker = AMQP
            else:
                broker = redis_server.url
            backend = f"redis://127.0.0.1:{redis_server.port}/1"
            app = make_app(broker, backend, queue, enable_stream_task=True, stream_task_queue=queue)
            worker = Worker(broker, backend, queue).start(app.celery_app)
        yield Env(manager.start(app)["url"], app, worker)
    finally:
        manager.shutdown()
        if worker is not None:
            worker.stop()
        redis_server.kill()


def test_submit_and_poll_to_finished(env):
    task_id = env.submit("/square", {"x": 5})
    final = env.final("/square", task_id)
    final.pop("started_at", None)  # the embedded queue also says when the job started
    assert final == {"task_id": task_id, "status": "finished", "result": {"result": 25}, "error": None}
    async_id = env.submit("/async_square", {"x": 7})
    assert env.final("/async_square", async_id)["result"] == {"result": 49}
    ping_id = env.submit("/ping")  # no body, no argument
    assert env.final("/ping", ping_id)["result"] == "pong"


def test_submission_answers_as_agentscope_runtime(env):
    celery = env.worker is not None
    answer = http.post(f"{env.url}/square", json={"x": 2}).json()
    queue = answer["queue"]
    where = "Celery queue" if celery else "queue"
    assert answer == {"task_id": answer["task_id"], "status": "submitted", "queue": queue, "message": f"Task {answer['task_id']} submitted to {where} {queue}"}
    body = {"input": [{"role": "user", "content": "hi"}], "session_id": f"m-{uuid.uuid4().hex[:6]}"}
    run = http.post(f"{env.url}/process/task", json=body).json()
    assert run["message"] == ("Stream query task submitted to Celery successfully" if celery else "Stream query task submitted successfully")
    assert env.final("/process/task", run["task_id"])["result"]["status"] == "completed"


def test_failure_reports_type_and_message(env):
    task_id = env.submit("/fail", {"x": 1})
    final = env.final("/fail", task_id)
    assert final["status"] == "error"
    assert final["error"] == {"type": "KeyError", "message": "'missing'"}
    assert final["result"] == "'missing'"  # AgentScope Runtime's clients read the message here


def test_unserializable_result_is_an_error_with_the_reason(env):
    final = env.final("/unserializable", env.submit("/unserializable", {}))
    assert final["status"] == "error"
    assert final["error"]["type"] == "NotSerializable"
    assert "builtins.object object is not JSON serializable" in final["error"]["message"]


def test_cancel_a_running_task(env):
    task_id = env.submit("/slow", {"seconds": 60})
    wait_until(lambda: env.status("/slow", task_id)["status"] == "running", 30, "the task never started")
    response = http.delete(f"{env.url}/slow/{task_id}")
    assert response.status_code == 200 and response.json()["status"] == "canceled"
    assert env.final("/slow", task_id)["status"] == "canceled"
    # the queue still works afterwards
    assert env.final("/square", env.submit("/square", {"x": 3}))["result"] == {"result": 9}


def test_unknown_ids_say_not_found(env):
    for path in ("/square", "/process/task"):
        task_id = uuid.uuid4().hex
        response = http.get(f"{env.url}{path}/{task_id}")  # AgentScope Runtime's answer: 200
        assert response.status_code == 200
        assert response.json() == {"error": f"Task {task_id} not found", "task_id": task_id}
        cancel = http.delete(f"{env.url}{path}/{task_id}")  # agentpack's own route: a REST 404
        assert cancel.status_code == 404 and cancel.json()["error"] == f"Task {task_id} not found"


def test_invalid_json_is_422(env):
    response = http.post(f"{env.url}/square", content=b"{nope", headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_many_jobs_all_reach_a_final_state(env):
    ids = {env.submit("/square", {"x": i}): i for i in range(200)}
    for task_id, x in ids.items():
        final = env.final("/square", task_id, timeout=120)
        assert (final["status"], final["result"]) == ("finished", {"result": x * x})


def test_background_run_of_the_agent(env):
    body = {"input": [{"role": "user", "content": "hi"}], "session_id": f"bg-{uuid.uuid4().hex[:6]}", "user_id": "u"}
    task_id = env.submit("/process/task", body)
    final = env.final("/process/task", task_id)
    assert final["status"] == "finished"
    response = final["result"]
    assert response["object"] == "response" and response["status"] == "completed"
    assert response["output"][0]["content"][0]["text"] == "background answer"
    invalid = http.post(f"{env.url}/process/task", json={"session_id": "x"})
    assert invalid.status_code == 422


def test_embedded_background_run_is_stoppable(serve):
    app = make_app(enable_stream_task=True)
    url = serve(app)
    env = Env(url, app)
    task_id = env.submit("/process/task", {"input": [], "session_id": "bg-stop", "user_id": "u", "hang": True})
    wait_until(lambda: http.get(f"{url}/health").json()["running_sessions"] == 1, 20, "background run never started")
    busy = http.post(f"{url}/process", json={"input": [], "session_id": "bg-stop", "user_id": "u"})
    assert busy.status_code == 409  # the background run holds the session
    assert env.status("/process/task", task_id)["status"] == "running"
    assert http.post(f"{url}/process/stop", json={"session_id": "bg-stop", "user_id": "u"}).json()["stopped"] is True
    final = env.final("/process/task", task_id)
    assert final["status"] == "finished" and final["result"]["status"] == "canceled"


def test_worker_restart_picks_up_jobs_submitted_while_down(serve, redis_server):
    queue = f"q-{uuid.uuid4().hex[:8]}"
    backend = f"redis://127.0.0.1:{redis_server.port}/1"
    app = make_app(redis_server.url, backend, queue)
    env = Env(serve(app), app)
    worker = Worker(redis_server.url, backend, queue).start(app.celery_app)
    assert env.final("/square", env.submit("/square", {"x": 2}))["result"] == {"result": 4}
    worker.stop()
    waiting = env.submit("/square", {"x": 6})
    assert env.status("/square", waiting)["status"] == "pending"
    worker.start(app.celery_app)
    try:
        assert env.final("/square", waiting)["result"] == {"result": 36}
    finally:
        worker.stop()


def test_broker_unreachable_is_503_naming_it(serve):
    port = free_port()  # nothing listens there
    app = make_app(f"redis://127.0.0.1:{port}/0")
    url = serve(app)
    response = http.post(f"{url}/square", json={"x": 1}, timeout=30)
    assert response.status_code == 503
    assert f"redis://127.0.0.1:{port}" in response.json()["detail"]
    readiness = http.get(f"{url}/readiness", timeout=30)
    assert readiness.status_code == 503 and "Celery broker" in readiness.json()["reason"]


def test_task_function_signatures_are_checked():
    from agentpack import AgentApp

    app = AgentApp()
    with pytest.raises(TypeError, match="none or one"):

        @app.task("/two")
        def two(a, b):
            return a


def test_embedded_results_expire(serve):
    app = make_app(task_result_seconds=3)  # long enough to see the result, short enough to see it go
    env = Env(serve(app), app)
    task_id = env.submit("/square", {"x": 4})
    assert env.final("/square", task_id)["result"] == {"result": 16}
    wait_until(lambda: "not found" in (http.get(f"{env.url}/square/{task_id}").json()["error"] or ""), 10, "the result never expired")


def test_embedded_concurrency_is_bounded(serve):
    app = make_app(task_concurrency=2)
    env = Env(serve(app), app)
    slow = [env.submit("/slow", {"seconds": 30}) for _ in range(3)]
    wait_until(lambda: [env.status("/slow", t)["status"] for t in slow].count("running") == 2, 10, "two jobs should run")
    assert [env.status("/slow", t)["status"] for t in slow].count("pending") == 1
    for task_id in slow:
        assert http.delete(f"{env.url}/slow/{task_id}").json()["status"] == "canceled"


def _background(env: Env, session: str, hang: bool = False) -> str:
    body = {"input": [{"role": "user", "content": "hi"}], "session_id": session, "user_id": "u"}
    return env.submit("/process/task", {**body, "hang": True} if hang else body)


def _stop(env: Env, session: str) -> bool:
    return http.post(f"{env.url}/process/stop", json={"session_id": session, "user_id": "u"}).json()["stopped"]


@pytest.mark.integration
def test_background_runs_for_a_busy_session_wait_their_turn_in_order(serve):
    app = make_app(enable_stream_task=True)
    env = Env(serve(app), app)
    first = _background(env, "turns", hang=True)
    wait_until(lambda: env.status("/process/task", first)["status"] == "running", 20, "the first run never started")
    second = _background(env, "turns", hang=True)
    third = _background(env, "turns")
    for waiting in (second, third):
        wait_until(lambda: env.status("/process/task", waiting)["status"] == "pending", 20, "a run for a busy session should wait")
    assert _stop(env, "turns") is True  # stops the running one only
    assert env.final("/process/task", first)["result"]["status"] == "canceled"
    wait_until(lambda: env.status("/process/task", second)["status"] == "running", 20, "the second run should start next")
    behind = env.status("/process/task", third)
    assert behind["status"] == "pending" and "started_at" not in behind  # still behind the second, not started
    assert "started_at" in env.status("/process/task", second)
    assert _stop(env, "turns") is True
    assert env.final("/process/task", second)["result"]["status"] == "canceled"
    final = env.final("/process/task", third)
    assert (final["status"], final["result"]["status"]) == ("finished", "completed")
    assert final["result"]["output"][0]["content"][0]["text"] == "background answer"


@pytest.mark.integration
def test_a_background_run_waits_a_bounded_time(serve):
    app = make_app(enable_stream_task=True, stream_task_wait_seconds=1)
    env = Env(serve(app), app)
    holder = _background(env, "bounded", hang=True)
    wait_until(lambda: env.status("/process/task", holder)["status"] == "running", 20, "the first run never started")
    final = env.final("/process/task", _background(env, "bounded"))
    assert final["status"] == "error" and final["error"]["type"] == "SessionStillBusy"
    assert final["error"]["message"].startswith("session 'bounded' of user 'u' was still running another run after 1s")
    assert "stream_task_wait_seconds" in final["error"]["message"] and final["result"] == final["error"]["message"]
    assert _stop(env, "bounded") is True
    assert env.final("/process/task", holder)["result"]["status"] == "canceled"


@pytest.mark.integration
def test_background_runs_wait_their_turn_on_celery_workers(serve, redis_server):
    queue = f"q-{uuid.uuid4().hex[:8]}"
    backend = f"redis://127.0.0.1:{redis_server.port}/1"
    interrupts = f"redis://127.0.0.1:{redis_server.port}/2"
    app = make_app(redis_server.url, backend, queue, enable_stream_task=True, stream_task_queue=queue, interrupt_redis_url=interrupts)
    env = Env(serve(app), app)
    worker = Worker(redis_server.url, backend, queue, interrupts=interrupts).start(app.celery_app)
    try:
        first = _background(env, "celery-turns", hang=True)
        wait_until(lambda: env.status("/process/task", first)["status"] == "running", 30, "the first run never started")
        second = _background(env, "celery-turns")
        # a worker took it and waits (Celery state WAITING), which clients see as pending
        wait_until(
            lambda: app.celery_app.AsyncResult(second).state == "WAITING",
            30,
            lambda: f"the second run should wait in a worker (state {app.celery_app.AsyncResult(second).state}; first {app.celery_app.AsyncResult(first).state}); worker log: {worker.log_text()[-4000:]}",
        )
        assert env.status("/process/task", second)["status"] == "pending"
        assert http.post(f"{env.url}/process", json={"input": [], "session_id": "celery-turns", "user_id": "u"}).status_code == 409
        assert _stop(env, "celery-turns") is True  # reaches the worker through Redis
        assert env.final("/process/task", first)["result"]["status"] == "canceled"
        final = env.final("/process/task", second)
        assert (final["status"], final["result"]["status"]) == ("finished", "completed")
    finally:
        worker.stop()
