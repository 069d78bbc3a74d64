"""Stops within one process: stop_chat, the built-in stop route, disconnects, states."""

from __future__ import annotations

import asyncio
import json

import pytest

from agentpack import AgentApp
from agentpack.interrupt import BaseInterruptBackend, RunState
from agentpack.interrupt.base import Renewal
from agentpack.interrupt.guard import SessionGuard
from agentpack.interrupt.local import LocalInterruptBackend
from tests.support import BackgroundStream, check_protocol, read_events, user_body, wait_until, http


def hanging_app(record: dict, swallow: bool = False) -> AgentApp:
    """A handler that streams once, then waits until it is cancelled, recording what happened."""
    app = AgentApp()

    @app.query(framework="text")
    async def handler(self, msgs, request, **kwargs):
        record["started"] = True
        try:
            yield "first "
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            record["cancelled"] = record.get("cancelled", 0) + 1
            await asyncio.sleep(0)  # cleanup may await: it gets a grace period
            record["saved"] = True
            if not swallow:
                raise
        if swallow:
            yield "still talking"
            await asyncio.Event().wait()

    return app


def test_stop_chat_cancels_and_client_gets_canceled(serve):
    record: dict = {}
    app = hanging_app(record)
    url = serve(app)
    stream = BackgroundStream(url, user_body(session_id="s", user_id="u")).begin()
    answer = http.post(f"{url}/process/stop", json={"session_id": "s", "user_id": "u"})
    assert answer.json() == {"stopped": True, "user_id": "u", "session_id": "s"}
    events = stream.result()
    terminal = check_protocol(events)
    assert terminal["status"] == "canceled"
    # the message cut short is in the output, with what the client received of it
    [cut] = terminal["output"]
    announced = next(e for e in events if e["object"] == "message")
    assert (cut["id"], cut["status"]) == (announced["id"], "incomplete")
    assert [(c["type"], c["status"], c["text"]) for c in cut["content"]] == [("text", "incomplete", "first ")]
    assert record == {"started": True, "cancelled": 1, "saved": True}
    assert http.post(f"{url}/process/stop", json={"session_id": "s", "user_id": "u"}).json()["stopped"] is False


def test_a_handler_that_swallows_the_cancel_is_still_ended(serve):
    record: dict = {}
    app = hanging_app(record, swallow=True)
    url = serve(app)
    stream = BackgroundStream(url, user_body(session_id="s", user_id="u")).begin()
    assert http.post(f"{url}/process/stop", json={"session_id": "s", "user_id": "u"}).json()["stopped"] is True
    terminal = check_protocol(stream.result())
    assert terminal["status"] == "canceled"
    assert "still talking" not in json.dumps(stream.events)
    wait_until(lambda: http.get(f"{url}/health").json()["running_sessions"] == 0, 10, "session not freed")
    state = asyncio.run(app.get_chat_state("u", "s"))
    assert state == "STOPPED"


def test_client_disconnect_cancels_the_handler_and_frees_the_session(serve):
    record: dict = {}
    app = hanging_app(record)
    url = serve(app)
    with http.stream("POST", f"{url}/process", json=user_body(session_id="gone", user_id="u"), timeout=30) as response:
        for line in response.iter_lines():
            if '"delta":true' in line:
                break  # leave mid-stream
    wait_until(lambda: record.get("saved"), 10, "the handler was not cancelled on disconnect")
    wait_until(lambda: http.get(f"{url}/health").json()["running_sessions"] == 0, 10, "session still held")
    # the session is immediately usable again
    again = http.post(f"{url}/process/stop", json={"session_id": "gone", "user_id": "u"})
    assert again.json()["stopped"] is False


def test_user_id_defaults_to_session_id_for_stop(serve):
    record: dict = {}
    url = serve(hanging_app(record))
    stream = BackgroundStream(url, user_body(session_id="only-session")).begin()
    assert http.post(f"{url}/process/stop", json={"session_id": "only-session"}).json()["stopped"] is True
    assert check_protocol(stream.result())["status"] == "canceled"


def test_chat_states(serve):
    app = AgentApp()

    @app.query(framework="text")
    async def handler(msgs, request):
        if request.session_id == "bad":
            raise RuntimeError("broken")
        yield "ok"

    url = serve(app)
    read_events(f"{url}/process", user_body(session_id="good", user_id="u"))
    read_events(f"{url}/process", user_body(session_id="bad", user_id="u"))

    async def states():
        return [await app.get_chat_state("u", s) for s in ("good", "bad", "unknown")]

    assert asyncio.run(states()) == ["FINISHED", "ERROR", None]


def test_stop_route_validates_its_body(serve):
    url = serve(hanging_app({}))
    response = http.post(f"{url}/process/stop", json={"user_id": "u"})
    assert response.status_code == 422
    assert ["body", "session_id"] in [e["loc"] for e in response.json()["detail"]]


def test_root_lists_the_stop_route(serve):
    url = serve(hanging_app({}))
    assert http.get(f"{url}/").json()["endpoints"]["stop"] == "/process/stop"


class _Recorder:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def stop(self, reason: str = "") -> None:
        self.reasons.append(reason)


def test_local_guard_rules():
    async def scenario() -> None:
        guard = SessionGuard(LocalInterruptBackend(), lease_seconds=0.3, state_seconds=60)
        first = _Recorder()
        active = await guard.begin("u:s", first)
        with pytest.raises(Exception, match="already running"):
            await guard.begin("u:s", _Recorder())
        assert await guard.state("u:s") is RunState.RUNNING
        assert await guard.stop("u:s") is True and first.reasons == ["stopped by a stop request"]
        await guard.end(active, RunState.STOPPED)
        await guard.end(active, RunState.STOPPED)  # idempotent
        assert await guard.state("u:s") is RunState.STOPPED
        assert await guard.stop("u:s") is False
        # a new run of the session is not hit by the old stop flag
        second = _Recorder()
        active = await guard.begin("u:s", second)
        assert second.reasons == []
        await guard.end(active, RunState.FINISHED)
        assert len(guard) == 0

    asyncio.run(scenario())


def test_local_backend_lease_expires():
    async def scenario() -> None:
        backend = LocalInterruptBackend()
        assert await backend.acquire("k", "run-1", 0.05)
        assert not await backend.acquire("k", "run-2", 0.05)
        await asyncio.sleep(0.06)  # the lease's own expiry is what is under test
        assert await backend.acquire("k", "run-2", 10)
        assert await backend.renew("k", "run-1", 10) is Renewal.LOST
        assert await backend.request_stop("k", 10)
        assert await backend.stop_requested("k", "run-2") and not await backend.stop_requested("k", "run-1")

    asyncio.run(scenario())


def test_custom_backend_must_implement_the_interface():
    assert issubclass(LocalInterruptBackend, BaseInterruptBackend)
    with pytest.raises(TypeError):
        AgentApp(interrupt_backend=object())
    app = AgentApp(interrupt_backend=LocalInterruptBackend())
    assert isinstance(app.interrupt_backend, LocalInterruptBackend)


def test_nothing_redis_is_imported_without_redis(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys\nfrom agentpack import AgentApp\napp = AgentApp()\n"
        "@app.query(framework='text')\nasync def h(msgs):\n    yield 'x'\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('redis', 'celery') or m == 'agentpack.interrupt.redis']\n"
        "assert not bad, bad\nprint('clean')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "clean", result.stderr


def test_a_client_leaving_a_fast_stream_is_not_a_handler_failure(serve, caplog):
    app = AgentApp()
    finished = {}

    @app.query(framework="text")
    async def handler(msgs):
        try:
            for i in range(100_000):
                yield f"chunk {i} "
                await asyncio.sleep(0)
        finally:
            finished["closed"] = True

    url = serve(app)
    with http.stream("POST", f"{url}/process", json=user_body(session_id="fast", user_id="u"), timeout=30) as response:
        for line in response.iter_lines():
            if '"delta":true' in line:
                break
    wait_until(lambda: finished.get("closed"), 10, "the handler was not closed after the client left")
    wait_until(lambda: http.get(f"{url}/health").json()["running_sessions"] == 0, 10, "session still held")
    assert not [r for r in caplog.records if "query handler failed" in r.getMessage()]
    assert asyncio.run(app.get_chat_state("u", "fast")) == "STOPPED"
