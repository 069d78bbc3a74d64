"""Sessions are never stuck, crossed, cut or refused by mistake — the in-process tier.

The same properties through real servers and a real redis-server are in
test_session_safety_servers.py.  Everything here runs on every supported Python (the guard's
cancel path differs before 3.12).
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import unquote

import pytest

from agentpack import AgentApp
from agentpack._aio import wait_bounded
from agentpack.interrupt.base import Renewal, RunState, session_key
from agentpack.interrupt.guard import SessionGuard
from agentpack.interrupt.local import LocalInterruptBackend
from tests.support import check_protocol, in_process, sse_events, user_body

JSON = {"content-type": "application/json"}

# -- the renewer stops for sure -----------------------------------------------------------------


class _Run:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def stop(self, reason: str = "") -> None:
        self.reasons.append(reason)


class SwallowingBackend(LocalInterruptBackend):
    """``renew`` swallows a cancellation that lands while it runs, as ``asyncio.wait_for`` inside
    redis-py can before Python 3.12 — deterministically, on every Python."""

    def __init__(self) -> None:
        super().__init__()
        self.renewing = asyncio.Event()
        self.swallowed = 0
        self.renewals = 0

    async def renew(self, key: str, run_id: str, lease_seconds: float) -> Renewal:
        self.renewals += 1
        self.renewing.set()
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            self.swallowed += 1  # and carry on as if nothing happened
        return await super().renew(key, run_id, lease_seconds)


class HangingBackend(LocalInterruptBackend):
    """``renew`` and ``release`` ignore every cancellation and do not return until the test lets
    them (at its very end, so that the event loop can close): the worst backend."""

    bounded = False  # it says so: the guard must not trust its calls to return

    def __init__(self) -> None:
        super().__init__()
        self.renewing = asyncio.Event()
        self.hang_release = False
        self.let_go = asyncio.Event()

    async def _forever(self) -> None:
        while not self.let_go.is_set():
            try:
                await self.let_go.wait()
            except asyncio.CancelledError:
                continue

    async def renew(self, key: str, run_id: str, lease_seconds: float) -> Renewal:
        self.renewing.set()
        await self._forever()
        raise AssertionError("unreachable")

    async def release(self, key: str, run_id: str, state: RunState, state_seconds: float) -> None:
        if self.hang_release:
            await self._forever()
        await super().release(key, run_id, state, state_seconds)


def test_a_renewer_that_swallows_its_cancel_still_stops_and_the_session_is_freed():
    async def scenario() -> None:
        backend = SwallowingBackend()
        guard = SessionGuard(backend, lease_seconds=0.03, state_seconds=60, release_timeout=1)
        for attempt in range(20):  # land the end() at different points of a renewal
            backend.renewing.clear()
            active = await guard.begin("u:s", _Run())
            await backend.renewing.wait()
            finished, _ = await wait_bounded(guard.end(active, RunState.STOPPED), 10)
            assert finished, "end() waited for the renewer without a bound"
            assert active.renewer is not None and active.renewer.done()
            assert await backend.get_state("u:s") is RunState.STOPPED
            assert await backend.acquire("u:s", f"next-{attempt}", 60), "the session is still held"
            await backend.release("u:s", f"next-{attempt}", RunState.FINISHED, 60)
        assert backend.swallowed > 0, "the test never hit the swallowing path"
        renewals = backend.renewals
        await asyncio.sleep(0.1)  # several lease periods: nothing may renew any more
        assert backend.renewals == renewals

    asyncio.run(scenario())


def test_a_backend_that_never_answers_cannot_keep_end_or_shutdown_waiting():
    async def scenario() -> None:
        backend = HangingBackend()
        guard = SessionGuard(backend, lease_seconds=0.03, state_seconds=60, release_timeout=0.2)
        run = _Run()
        active = await guard.begin("u:s", run)
        await backend.renewing.wait()
        backend.hang_release = True
        finished, _ = await wait_bounded(guard.end(active, RunState.STOPPED), 10)
        assert finished and active.ended.is_set()
        # shutdown with a run whose end never comes: close() stops it and gives up in time
        backend.hang_release = False
        other = _Run()
        await guard.begin("u:t", other)
        finished, _ = await wait_bounded(guard.close("the server is shutting down", timeout=0.3), 10)
        assert finished and other.reasons == ["the server is shutting down"]
        assert len(guard) == 0
        backend.let_go.set()

    asyncio.run(scenario())


def test_a_renewal_in_flight_cannot_take_a_released_session_back():
    async def scenario() -> None:
        backend = LocalInterruptBackend()
        assert await backend.acquire("k", "run-1", 60)
        await backend.release("k", "run-1", RunState.FINISHED, 60)
        assert await backend.renew("k", "run-1", 60) is Renewal.ENDED
        assert await backend.get_state("k") is RunState.FINISHED
        assert await backend.acquire("k", "run-2", 60)

    asyncio.run(scenario())


# -- keys never cross ------------------------------------------------------------------------------


def test_distinct_user_session_pairs_never_share_a_key():
    pairs = [("alice:X", "s1"), ("alice", "X:s1"), ("a%3Ab", "c"), ("a:b", "c"), ("{x}", "y"), ("会话", "日本"), ("🙂", "🙂")]
    keys = [session_key(u, s) for u, s in pairs]
    assert len(set(keys)) == len(pairs)
    for (user, session), key in zip(pairs, keys):
        encoded_user, encoded_session = key.split(":")
        assert (unquote(encoded_user), unquote(encoded_session)) == (user, session)
        assert "{" not in key and "}" not in key  # an id cannot move a Redis key out of its hash tag


def _hanging_app() -> AgentApp:
    app = AgentApp()

    @app.query(framework="text")
    async def handler(msgs, request):
        yield "first "
        await asyncio.Event().wait()

    return app


def test_one_user_cannot_block_or_stop_another_by_choosing_colons():
    app = _hanging_app()

    async def scenario() -> None:
        async with in_process(app) as client:
            victim = asyncio.create_task(client.post("/process", json=user_body(user_id="alice", session_id="X:s1")))
            await _until(lambda: len(app.runtime.guard) == 1)
            # the other user's session is a different one: it runs (here: starts) instead of 409
            attacker = asyncio.create_task(client.post("/process", json=user_body(user_id="alice:X", session_id="s1")))
            await _until(lambda: len(app.runtime.guard) == 2)
            stop = await client.post("/process/stop", json={"user_id": "alice:X", "session_id": "s1"})
            assert stop.json()["stopped"] is True
            assert check_protocol(sse_events((await attacker).text))["status"] == "canceled"
            assert len(app.runtime.guard) == 1 and not victim.done()
            await client.post("/process/stop", json={"user_id": "alice", "session_id": "X:s1"})
            assert check_protocol(sse_events((await victim).text))["status"] == "canceled"

    asyncio.run(scenario())


async def _until(condition, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.005)


# -- any Unicode id works end to end ------------------------------------------------------------------


@pytest.mark.parametrize("user_id, session_id", [("用户-北京", "会话-日本"), ("🙂 user", "🚀"), ("plain", "ascii-id_1.2~")])
def test_unicode_ids_run_stop_and_come_back_in_percent_encoded_headers(user_id, session_id):
    app = AgentApp()

    @app.query(framework="text")
    async def handler(msgs, request):
        yield f"{request.user_id}/{request.session_id}"

    async def scenario() -> None:
        async with in_process(app) as client:
            for _ in range(2):  # the second run proves the first released the session
                response = await client.post("/process", json=user_body(user_id=user_id, session_id=session_id))
                assert response.status_code == 200
                terminal = check_protocol(sse_events(response.text))
                assert terminal["status"] == "completed" and terminal["session_id"] == session_id
                assert unquote(response.headers["x-agentpack-session-id"]) == session_id
                assert unquote(response.headers["x-agentpack-user-id"]) == user_id
                assert response.headers["x-agentpack-session-id"].isascii()
            assert await app.get_chat_state(user_id, session_id) == "FINISHED"
            plain = await client.post("/process", json=user_body(user_id="plain", session_id="abc-1", stream=False))
            assert plain.headers["x-agentpack-session-id"] == "abc-1"  # ASCII ids read unchanged

    asyncio.run(scenario())


# -- bad input is a 422 naming the field; nothing is cut -----------------------------------------------


@pytest.mark.parametrize(
    "field, value, says",
    [
        ("session_id", "a\r\nX-Injected: 1", "U+000D"),
        ("session_id", "nul\x00here", "U+0000"),
        ("user_id", "tab\there", "U+0009"),
        ("session_id", "del\x7f", "U+007F"),
        ("user_id", "会话\x85", "U+0085"),
        ("session_id", "x" * 100_000, "at most 256"),
        ("user_id", "\ud800", "lone surrogate"),
    ],
)
def test_bad_ids_are_422_naming_the_field(field, value, says):
    app = _hanging_app()

    async def scenario() -> None:
        async with in_process(app) as client:
            for path, body in (("/process", user_body(**{field: value})), ("/process/stop", {"session_id": "s", field: value})):
                response = await client.post(path, content=json.dumps(body), headers=JSON)  # \uXXXX escapes, as a browser sends them
                assert response.status_code == 422, (path, response.text[:200])
                errors = response.json()["detail"]
                assert any(e["loc"][-1] == field and says in e["msg"] for e in errors), errors
            assert len(app.runtime.guard) == 0

    asyncio.run(scenario())


def test_a_lone_surrogate_in_the_text_is_422_before_anything_runs():
    app = AgentApp()
    calls = []

    @app.query(framework="text")
    async def handler(msgs, request):
        calls.append(1)
        yield "never"

    async def scenario() -> None:
        async with in_process(app) as client:
            for stream in (True, False):
                body = user_body("half a pair: \ud83d", stream=stream)
                response = await client.post("/process", content=json.dumps(body), headers=JSON)
                assert response.status_code == 422
                assert "input.0.content.0.text contains a lone surrogate (U+D83D)" in response.text

    asyncio.run(scenario())
    assert calls == []


def test_a_lone_surrogate_produced_by_the_handler_never_cuts_the_stream():
    app = AgentApp()

    @app.query(framework="text")
    async def handler(msgs, request):
        yield "before "
        yield "broken \udc00 text"
        yield " after"

    async def scenario() -> None:
        async with in_process(app) as client:
            streamed = await client.post("/process", json=user_body())
            events = sse_events(streamed.text)
            assert check_protocol(events)["status"] == "completed"
            assert "".join(e["text"] for e in events if e["object"] == "content" and e["delta"]) == "before broken \udc00 text after"
            whole = await client.post("/process", json=user_body(stream=False))
            assert whole.status_code == 200 and whole.json()["status"] == "completed"

    asyncio.run(scenario())


# -- released before the terminal event, on every path --------------------------------------------------


@pytest.mark.parametrize("kind", ["completed", "failed", "canceled", "json"])
def test_the_session_is_released_before_the_terminal_event_is_sent(kind):
    """Raw ASGI: at the moment the terminal event (or the JSON answer) goes to the socket, the
    session must already be free — a client may send its next message the instant it reads it."""
    app = AgentApp()

    @app.query(framework="text")
    async def handler(msgs, request):
        yield "a "
        if kind == "failed":
            raise RuntimeError("the handler failed")
        if kind == "canceled":
            await asyncio.Event().wait()
        yield "b"

    seen: list[tuple[bytes, int]] = []

    async def scenario() -> None:
        async with app.router.lifespan_context(app):
            body = json.dumps(user_body(user_id="u", session_id="s", stream=kind != "json")).encode()
            messages = [{"type": "http.request", "body": body, "more_body": False}]
            finished = asyncio.Event()

            async def receive() -> dict:
                if messages:
                    return messages.pop()
                await finished.wait()
                return {"type": "http.disconnect"}

            async def send(message: dict) -> None:
                chunk = message.get("body", b"")
                seen.append((chunk, len(app.runtime.guard)))
                if kind == "canceled" and b'"delta":true' in chunk:
                    asyncio.get_running_loop().call_soon(asyncio.ensure_future, app.stop_chat("u", "s"))

            scope = {
                "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
                "path": "/process", "raw_path": b"/process", "root_path": "", "query_string": b"",
                "headers": [(b"content-type", b"application/json")], "client": ("127.0.0.1", 1), "server": ("test", 80),
            }
            await app(scope, receive, send)
            finished.set()

    asyncio.run(scenario())
    terminal = [held for chunk, held in seen if b'"object":"response","status":"' + (b"completed" if kind == "json" else kind.encode()) in chunk]
    assert terminal == [0], seen


class GatedBackend(LocalInterruptBackend):
    """``acquire`` waits until the test opens the gate (a slow Redis round trip, made controllable)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.acquiring = asyncio.Event()

    async def acquire(self, key: str, run_id: str, lease_seconds: float) -> bool:
        self.acquiring.set()
        await self.gate.wait()
        return await super().acquire(key, run_id, lease_seconds)


def test_a_run_that_takes_its_lease_while_shutdown_begins_is_refused_and_released():
    from agentpack.interrupt.base import BackendUnavailable

    async def scenario() -> None:
        backend = GatedBackend()
        guard = SessionGuard(backend, lease_seconds=60, state_seconds=60)
        begin = asyncio.create_task(guard.begin("u:late", _Run()))
        await backend.acquiring.wait()
        closing = asyncio.create_task(guard.close("the server is shutting down", timeout=5))
        await asyncio.sleep(0)  # close() has taken its snapshot of the runs: this one is not in it
        backend.gate.set()
        with pytest.raises(BackendUnavailable, match="shutting down"):
            await begin
        await closing
        assert await backend.get_state("u:late") is RunState.STOPPED  # the lease it took was given back
        assert len(guard) == 0

    asyncio.run(scenario())


@pytest.mark.parametrize("body", [b'{"input": [], "\\ud800": 1}', b'{"input": [{"role": "user", "content": "hi", "\\udc00x": 2}]}'])
def test_a_lone_surrogate_in_a_key_is_422_not_500(body):
    app = AgentApp()

    @app.query(framework="text")
    async def handler(msgs, request):
        yield "never"

    async def scenario() -> None:
        async with in_process(app) as client:
            response = await client.post("/process", content=body, headers=JSON)
            assert response.status_code == 422
            assert "contains a lone surrogate" in response.text

    asyncio.run(scenario())
