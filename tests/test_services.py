"""State and session-history services: every method in memory and against a real redis-server,
what several app instances sharing one Redis see, and how Redis failing is reported."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from typing import Any, Callable

import pytest

from agentpack.protocol.schemas import Message, TextContent
from agentpack.services import (
    InMemorySessionHistoryService,
    InMemoryStateService,
    RedisSessionHistoryService,
    RedisStateService,
    ServiceNotStarted,
    ServiceUnavailable,
    ServiceWithLifecycleManager,
    Session,
    SessionHistoryService,
    StateService,
)
from tests.support import free_port, user_body


async def eventually(check: Callable[[], Any], timeout: float, message: str) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{message} (waited {timeout}s)")
        await asyncio.sleep(0.01)


class Backend:
    """Makes the state and history services of one kind (memory or Redis)."""

    def __init__(self, kind: str, url: str = "") -> None:
        self.kind, self.url = kind, url

    def state(self, **options: Any) -> StateService:
        return InMemoryStateService() if self.kind == "memory" else RedisStateService(self.url, **options)

    def history(self, **options: Any) -> SessionHistoryService:
        return InMemorySessionHistoryService() if self.kind == "memory" else RedisSessionHistoryService(self.url, **options)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        return Backend("memory")
    return Backend("redis", request.getfixturevalue("redis_server").url)


def text_message(role: str, text: str) -> dict:
    return {"role": role, "content": [TextContent(text=text)]}


def texts(session: Session) -> list[str]:
    return [m.text() for m in session.messages]


# -- lifecycle -------------------------------------------------------------------------------------


def test_start_stop_health_and_async_with_are_idempotent(backend: Backend) -> None:
    async def scenario() -> None:
        for service in (backend.state(), backend.history()):
            assert isinstance(service, ServiceWithLifecycleManager)
            assert await service.health() is False  # not started
            await service.stop()  # stopping what never started is fine
            await service.start()
            await service.start()
            assert await service.health() is True
            await service.stop()
            await service.stop()
            assert await service.health() is False
            async with service as entered:
                assert entered is service and await service.health() is True
            assert await service.health() is False

    asyncio.run(scenario())


def test_using_a_service_that_is_not_started_says_how_to_start_it(backend: Backend) -> None:
    async def scenario() -> None:
        states, history = backend.state(), backend.history()
        calls = [
            states.save_state("u", {"a": 1}),
            states.export_state("u"),
            history.create_session("u"),
            history.get_session("u", "s"),
            history.list_sessions("u"),
            history.delete_session("u", "s"),
            history.append_message(Session(id="s", user_id="u"), text_message("user", "hi")),
            history.delete_user_sessions("u"),
        ]
        for call in calls:
            with pytest.raises(ServiceNotStarted, match=r"is not started: call `await service.start\(\)`"):
                await call

    asyncio.run(scenario())


# -- state -----------------------------------------------------------------------------------------


def test_state_rounds_save_and_export(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.state() as states:
            assert await states.export_state("u", session_id="s") is None
            assert await states.save_state("u", {"n": 1}, session_id="s") == 1
            assert await states.save_state("u", {"n": 2}, session_id="s") == 2
            assert await states.export_state("u", session_id="s") == {"n": 2}  # the highest round
            assert await states.export_state("u", session_id="s", round_id=1) == {"n": 1}
            assert await states.save_state("u", {"n": 10}, session_id="s", round_id=10) == 10
            assert await states.save_state("u", {"n": 11}, session_id="s") == 11  # after the highest
            assert await states.save_state("u", {"n": "1 again"}, session_id="s", round_id=1) == 1  # replaces
            assert await states.export_state("u", session_id="s", round_id=1) == {"n": "1 again"}
            assert await states.export_state("u", session_id="s") == {"n": 11}
            assert await states.export_state("u", session_id="s", round_id=5) is None
            assert await states.export_state("u", session_id="other") is None
            assert await states.export_state("someone-else", session_id="s") is None
            # no session id is the session "default"
            assert await states.save_state("u", {"default": True}) == 1
            assert await states.export_state("u", session_id="default") == {"default": True}
            nested = {"memory": {"content": [{"role": "user", "text": "你好 😀"}]}, "count": 3, "ok": None}
            await states.save_state("u", nested, session_id="nested")
            assert await states.export_state("u", session_id="nested") == nested

    asyncio.run(scenario())


def test_saved_and_exported_states_are_copies(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.state() as states:
            state = {"items": [1]}
            await states.save_state("u", state, session_id="s")
            state["items"].append(2)  # the caller keeps changing its object
            exported = await states.export_state("u", session_id="s")
            assert exported == {"items": [1]}
            exported["items"].append(3)
            assert await states.export_state("u", session_id="s") == {"items": [1]}

    asyncio.run(scenario())


def test_an_id_is_required(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.state() as states, backend.history() as history:
            with pytest.raises(ValueError, match="user_id is required"):
                await states.save_state(None, {})  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="user_id is required"):
                await history.create_session("")

    asyncio.run(scenario())


# -- session history -------------------------------------------------------------------------------


def test_create_get_and_append_messages(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.history() as history:
            fresh = await history.create_session("u")
            assert fresh.user_id == "u" and fresh.id and fresh.messages == []
            assert (await history.create_session("u", "  named  ")).id == "named"  # blanks trimmed
            assert (await history.create_session("u", "   ")).id not in ("", "   ")  # blank: a fresh id

            session = await history.create_session("u", "s1")
            await history.append_message(session, text_message("user", "one"))  # a dict
            await history.append_message(session, Message(role="assistant", content="two"))  # a Message
            await history.append_message(session, [text_message("user", "three"), None, {"role": "assistant", "content": "four"}])
            assert texts(session) == ["one", "two", "three", "four"]  # the caller's session follows

            stored = await history.get_session("u", "s1")
            assert stored is not None and stored.id == "s1" and stored.user_id == "u"
            assert texts(stored) == ["one", "two", "three", "four"]
            assert all(isinstance(m, Message) for m in stored.messages)
            assert [m.role for m in stored.messages] == ["user", "assistant", "user", "assistant"]
            assert [m.id for m in stored.messages] == [m.id for m in session.messages]  # the same messages

            stored.messages.clear()  # a returned session is a copy
            assert texts(await history.get_session("u", "s1")) == ["one", "two", "three", "four"]

            await history.create_session("u", "s1")  # creating an existing session starts it over
            assert (await history.get_session("u", "s1")).messages == []

    asyncio.run(scenario())


def test_list_delete_and_delete_user_sessions(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.history() as history:
            assert await history.list_sessions("u") == []
            first = await history.create_session("u", "first")
            await history.create_session("u", "second")
            await history.create_session("other", "theirs")
            await history.append_message(first, text_message("user", "hello"))

            listed = await history.list_sessions("u")
            assert [s.id for s in listed] == ["first", "second"]  # oldest first
            assert all(s.user_id == "u" and s.messages == [] for s in listed)  # no messages in a listing

            await history.delete_session("u", "first")
            await history.delete_session("u", "never-existed")  # nothing to do, no error
            assert [s.id for s in await history.list_sessions("u")] == ["second"]

            await history.delete_user_sessions("u")
            assert await history.list_sessions("u") == []
            assert [s.id for s in await history.list_sessions("other")] == ["theirs"]  # untouched

    asyncio.run(scenario())


def test_appending_to_a_deleted_session_keeps_the_messages(backend: Backend) -> None:
    """What AgentScope Runtime's memory adapter does to delete messages: delete the session, then
    append what remains through the session object it holds."""

    async def scenario() -> None:
        async with backend.history() as history:
            session = await history.create_session("u", "s")
            await history.append_message(session, [text_message("user", "a"), text_message("user", "b")])
            await history.delete_session("u", "s")
            await history.append_message(session, text_message("user", "kept"))
            stored = await history.get_session("u", "s")
            assert texts(stored) == ["kept"]
            assert [s.id for s in await history.list_sessions("u")] == ["s"]

    asyncio.run(scenario())


def test_get_session_of_a_missing_session_as_upstream_did() -> None:
    """AgentScope Runtime's in-memory service creates the session; its Redis service returns None."""

    async def scenario() -> None:
        async with InMemorySessionHistoryService() as history:
            made = await history.get_session("u", "missing")
            assert made is not None and made.id == "missing" and made.user_id == "u" and made.messages == []
            assert [s.id for s in await history.list_sessions("u")] == ["missing"]

    asyncio.run(scenario())


def test_redis_get_session_of_a_missing_session_is_none(redis_server) -> None:
    async def scenario() -> None:
        async with RedisSessionHistoryService(redis_server.url) as history:
            assert await history.get_session("u", "missing") is None
            assert await history.list_sessions("u") == []

    asyncio.run(scenario())


def test_stop_forgets_in_memory_data() -> None:
    async def scenario() -> None:
        states, history = InMemoryStateService(), InMemorySessionHistoryService()
        async with states, history:
            await states.save_state("u", {"a": 1})
            await history.create_session("u", "s")
        async with states, history:
            assert await states.export_state("u") is None
            assert await history.list_sessions("u") == []

    asyncio.run(scenario())


# -- ids -------------------------------------------------------------------------------------------

PAIRS = [
    ("a:b", "c"),
    ("a", "b:c"),
    ("a", "b"),
    ("{a}", "b"),
    ("a", "{b}"),
    ("{a", "}b"),
    ("a}:{b", "c"),
    ("用户", "会话"),
    ("用户:会话", ""),
    ("😀", "🚀:✨"),
    ("a%3Ab", "c"),  # looks like an encoded "a:b"
    ("a b", "c/d?e#f*g[h]"),
    # without encoding, each of these pairs would name the same key
    ("k}:state:x", "y"),
    ("k", "x}:state:y"),
    ("k}:session:x", "y"),
    ("k", "x}:session:y"),
    ("k}:history:x", "y"),
    ("k", "x}:history:y"),
]


def test_distinct_ids_never_share_data(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.state() as states, backend.history() as history:
            for index, (user, session_id) in enumerate(PAIRS):
                await states.save_state(user, {"pair": index}, session_id=session_id or None)
                if session_id:
                    session = await history.create_session(user, session_id)
                    await history.append_message(session, text_message("user", f"pair {index}"))
            for index, (user, session_id) in enumerate(PAIRS):
                assert await states.export_state(user, session_id=session_id or None) == {"pair": index}, (user, session_id)
                if session_id:
                    stored = await history.get_session(user, session_id)
                    assert stored.id == session_id and stored.user_id == user
                    assert texts(stored) == [f"pair {index}"]
            assert sorted(s.id for s in await history.list_sessions("a")) == ["b", "b:c", "{b}"]
            await history.delete_user_sessions("a")  # must not touch "a:b", "{a}", "a}:{b", "a%3Ab" ...
            assert texts(await history.get_session("a:b", "c")) == ["pair 0"]
            assert texts(await history.get_session("{a}", "b")) == ["pair 3"]
            assert texts(await history.get_session("a}:{b", "c")) == ["pair 6"]
            assert texts(await history.get_session("a%3Ab", "c")) == ["pair 10"]
            assert await history.list_sessions("a") == []

    asyncio.run(scenario())


def test_redis_keys_are_namespaced_and_tagged_by_user(redis_server) -> None:
    async def scenario() -> None:
        async with RedisStateService(redis_server.url) as states, RedisSessionHistoryService(redis_server.url) as history:
            for user, session_id in PAIRS:
                await states.save_state(user, {"x": 1}, session_id=session_id or None)
                if session_id:
                    await history.append_message(Session(id=session_id, user_id=user), text_message("user", "hi"))
        async with RedisStateService(redis_server.url, prefix="other-app") as elsewhere:
            await elsewhere.save_state("a", {"other": True}, session_id="b")
            async with RedisStateService(redis_server.url) as states:
                assert await states.export_state("a", session_id="b") == {"x": 1}  # prefixes keep apps apart

    asyncio.run(scenario())
    keys = redis_server.client().keys("*")
    assert keys and all(key.startswith(("agentpack:{", "other-app:{")) for key in keys)
    from urllib.parse import quote

    encoded_users = {quote(user, safe="") for user, _ in PAIRS}
    for key in keys:
        tag = key[key.index("{") + 1 : key.index("}")]  # what Redis Cluster hashes
        assert tag in encoded_users and ":" not in tag, key
        assert key.count("{") == 1 and key.count("}") == 1, key
    assert "agentpack:{%E7%94%A8%E6%88%B7}:state:%E4%BC%9A%E8%AF%9D" in keys
    assert "agentpack:{a}:history:b%3Ac" in keys and "agentpack:{a%3Ab}:history:c" in keys


# -- several instances on one Redis ----------------------------------------------------------------


def test_two_instances_see_each_others_writes(redis_server) -> None:
    async def scenario() -> None:
        async with RedisStateService(redis_server.url) as states_a, RedisStateService(redis_server.url) as states_b, \
                RedisSessionHistoryService(redis_server.url) as history_a, RedisSessionHistoryService(redis_server.url) as history_b:
            assert await states_a.save_state("用户", {"turn": 1}, session_id="😀") == 1
            assert await states_b.export_state("用户", session_id="😀") == {"turn": 1}
            assert await states_b.save_state("用户", {"turn": 2}, session_id="😀") == 2  # numbering is shared
            assert await states_a.export_state("用户", session_id="😀") == {"turn": 2}

            session = await history_a.create_session("用户", "会话")
            await history_a.append_message(session, text_message("user", "from A"))
            on_b = await history_b.get_session("用户", "会话")
            assert texts(on_b) == ["from A"]
            await history_b.append_message(on_b, text_message("assistant", "from B"))
            assert texts(await history_a.get_session("用户", "会话")) == ["from A", "from B"]
            assert [s.id for s in await history_b.list_sessions("用户")] == ["会话"]
            await history_b.delete_session("用户", "会话")
            assert await history_a.get_session("用户", "会话") is None

    asyncio.run(scenario())


def test_state_and_history_survive_an_instance_restart(redis_server) -> None:
    async def scenario() -> None:
        async with RedisStateService(redis_server.url) as states, RedisSessionHistoryService(redis_server.url) as history:
            await states.save_state("u", {"memory": ["hello"]}, session_id="s")
            await history.append_message(Session(id="s", user_id="u"), text_message("user", "hello"))
        # the instance is gone; a new one (new objects, new connections) reads the same data
        async with RedisStateService(redis_server.url) as states, RedisSessionHistoryService(redis_server.url) as history:
            assert await states.export_state("u", session_id="s") == {"memory": ["hello"]}
            assert texts(await history.get_session("u", "s")) == ["hello"]
            assert await states.save_state("u", {"memory": ["hello", "again"]}, session_id="s") == 2

    asyncio.run(scenario())


def test_concurrent_appends_from_two_instances_lose_nothing(redis_server) -> None:
    per_instance = 100

    async def scenario() -> None:
        # 200 commands at once on a loaded 2-core machine: what is tested is that none is lost,
        # not how fast Redis answers a burst, so the commands may take longer than the default 1 s
        roomy = {"socket_timeout": 10.0}
        async with RedisSessionHistoryService(redis_server.url, **roomy) as history_a, RedisSessionHistoryService(redis_server.url, **roomy) as history_b:
            await history_a.create_session("u", "busy")

            async def writer(history: SessionHistoryService, name: str) -> None:
                session = Session(id="busy", user_id="u")
                await asyncio.gather(*(history.append_message(session, text_message("user", f"{name}{i}")) for i in range(per_instance)))

            await asyncio.gather(writer(history_a, "a"), writer(history_b, "b"))
            stored = texts(await history_b.get_session("u", "busy"))
            assert len(stored) == 2 * per_instance
            assert sorted(stored) == sorted([f"a{i}" for i in range(per_instance)] + [f"b{i}" for i in range(per_instance)])

    asyncio.run(scenario())


def test_concurrent_saves_from_two_instances_get_distinct_rounds(redis_server) -> None:
    per_instance = 25

    async def scenario() -> None:
        roomy = {"socket_timeout": 10.0}  # a burst on a loaded machine (see the test above)
        async with RedisStateService(redis_server.url, **roomy) as states_a, RedisStateService(redis_server.url, **roomy) as states_b:
            saves = [
                states.save_state("u", {"by": name, "i": i}, session_id="s")
                for i in range(per_instance)
                for name, states in (("a", states_a), ("b", states_b))
            ]
            rounds = await asyncio.gather(*saves)
            assert sorted(rounds) == list(range(1, 2 * per_instance + 1))
            for round_id in (1, per_instance, 2 * per_instance):
                assert (await states_b.export_state("u", session_id="s", round_id=round_id))["i"] in range(per_instance)

    asyncio.run(scenario())


def test_max_messages_per_session_keeps_the_newest(redis_server) -> None:
    async def scenario() -> None:
        async with RedisSessionHistoryService(redis_server.url, max_messages_per_session=3) as history:
            session = await history.create_session("u", "s")
            for i in range(5):
                await history.append_message(session, text_message("user", f"m{i}"))
            await history.append_message(session, [text_message("user", "m5"), text_message("user", "m6")])
            assert texts(await history.get_session("u", "s")) == ["m4", "m5", "m6"]
            assert texts(session) == ["m4", "m5", "m6"]

    asyncio.run(scenario())
    with pytest.raises(ValueError, match="max_messages_per_session"):
        RedisSessionHistoryService(max_messages_per_session=0)


# -- TTL -------------------------------------------------------------------------------------------


def test_data_expires_after_the_ttl(redis_server) -> None:
    raw = redis_server.client()

    async def scenario() -> None:
        async with RedisStateService(redis_server.url, ttl_seconds=0.3) as states, \
                RedisSessionHistoryService(redis_server.url, ttl_seconds=0.3) as history:
            await states.save_state("u", {"a": 1}, session_id="s")
            session = await history.create_session("u", "s")
            await history.append_message(session, text_message("user", "hi"))
            keys = [states.state_key("u", "s"), *history.session_keys("u", "s")]
            for key in keys:
                assert 0 < raw.pttl(key) <= 300, key
            await eventually(lambda: raw.exists(*keys) == 0, 5, "the keys never expired")
            assert await states.export_state("u", session_id="s") is None
            assert await history.get_session("u", "s") is None
            assert await history.list_sessions("u") == []

    asyncio.run(scenario())


def test_reading_and_writing_refresh_the_ttl(redis_server) -> None:
    raw = redis_server.client()

    async def scenario() -> None:
        async with RedisStateService(redis_server.url, ttl_seconds=60) as states, \
                RedisSessionHistoryService(redis_server.url, ttl_seconds=60) as history:
            await states.save_state("u", {"a": 1}, session_id="s")
            key = states.state_key("u", "s")
            raw.pexpire(key, 1000)
            await states.export_state("u", session_id="s")
            assert raw.pttl(key) > 50_000  # a read extends it again
            raw.pexpire(key, 1000)
            await states.save_state("u", {"a": 2}, session_id="s")
            assert raw.pttl(key) > 50_000

            session = await history.create_session("u", "s")
            keys = history.session_keys("u", "s")
            await history.append_message(session, text_message("user", "hi"))
            for key in keys:
                raw.pexpire(key, 1000)
            await history.get_session("u", "s")
            assert all(raw.pttl(key) > 50_000 for key in keys)
            for key in keys:
                raw.pexpire(key, 1000)
            await history.append_message(session, text_message("user", "again"))
            assert all(raw.pttl(key) > 50_000 for key in keys)

    asyncio.run(scenario())


def test_no_ttl_keeps_data(redis_server) -> None:
    raw = redis_server.client()

    async def scenario() -> None:
        async with RedisStateService(redis_server.url, ttl_seconds=None) as states, \
                RedisSessionHistoryService(redis_server.url, ttl_seconds=None) as history:
            await states.save_state("u", {"a": 1}, session_id="s")
            await history.append_message(await history.create_session("u", "s"), text_message("user", "hi"))
            for key in [states.state_key("u", "s"), *history.session_keys("u", "s")]:
                assert raw.pttl(key) == -1, key

    asyncio.run(scenario())
    with pytest.raises(ValueError, match="ttl_seconds must be positive"):
        RedisStateService(ttl_seconds=0)


# -- when Redis fails ------------------------------------------------------------------------------


async def _every_call_fails_fast(states: RedisStateService, history: RedisSessionHistoryService, match: str, limit: float) -> None:
    """Every method (all at once, each timed on its own) raises ServiceUnavailable matching
    ``match`` within ``limit`` seconds, and health() says False as quickly."""
    calls = [
        states.save_state("u", {"a": 1}, session_id="s"),
        states.export_state("u", session_id="s"),
        history.create_session("u", "s"),
        history.get_session("u", "s"),
        history.list_sessions("u"),
        history.delete_session("u", "s"),
        history.append_message(Session(id="s", user_id="u"), text_message("user", "hi")),
        history.delete_user_sessions("u"),
    ]

    async def timed(call: Any) -> tuple[float, Any]:
        began = time.monotonic()
        try:
            result = await call
        except Exception as exc:
            result = exc
        return time.monotonic() - began, result

    for elapsed, result in await asyncio.gather(*map(timed, calls)):
        assert isinstance(result, ServiceUnavailable), repr(result)
        assert re.search(match, str(result)), str(result)
        assert elapsed < limit, f"{elapsed:.2f}s: {result}"
    for elapsed, healthy in await asyncio.gather(timed(states.health()), timed(history.health())):
        assert healthy is False and elapsed < limit


def test_an_unreachable_redis_is_a_clear_error_at_once() -> None:
    port = free_port()  # nothing listens there
    url = f"redis://127.0.0.1:{port}/0"

    async def scenario() -> None:
        async with RedisStateService(url) as states, RedisSessionHistoryService(url) as history:  # starting does not connect
            await _every_call_fails_fast(states, history, rf"Redis at 127\.0\.0\.1:{port} is unreachable", 1.0)
            with pytest.raises(ServiceUnavailable, match=r"^RedisStateService: "):
                await states.export_state("u")

    asyncio.run(scenario())


def test_a_redis_that_never_answers_is_an_error_within_the_timeout() -> None:
    """A peer that accepts connections and never answers (a frozen Redis, a black-holed proxy)."""
    with socket.socket() as frozen:
        frozen.bind(("127.0.0.1", 0))
        frozen.listen(64)  # the kernel completes connections; nothing ever reads or answers
        url = f"redis://127.0.0.1:{frozen.getsockname()[1]}/0"

        async def scenario() -> None:
            async with RedisStateService(url) as states:  # the defaults: 2s to connect, 1s per command
                began = time.monotonic()
                with pytest.raises(ServiceUnavailable, match=r"did not answer in time .*socket_timeout=1\.0s"):
                    await states.export_state("u")
                assert time.monotonic() - began < 2.0
            async with RedisStateService(url, socket_timeout=0.2) as states, RedisSessionHistoryService(url, socket_timeout=0.2) as history:
                await _every_call_fails_fast(states, history, r"did not answer in time .*socket_timeout=0\.2s", 1.0)

        asyncio.run(scenario())


def test_a_redis_restart_is_reported_and_its_data_is_gone(redis_server, caplog: pytest.LogCaptureFixture) -> None:
    """The test server keeps nothing on disk (as Redis without RDB/AOF): after a restart the data
    is gone.  While it is down every call fails clearly; once back, the restart is logged."""

    async def scenario() -> None:
        async with RedisStateService(redis_server.url) as states, RedisSessionHistoryService(redis_server.url) as history:
            await states.save_state("u", {"a": 1}, session_id="s")
            await history.append_message(Session(id="s", user_id="u"), text_message("user", "hi"))
            assert states.redis_restarts == 0

            redis_server.kill()
            await _every_call_fails_fast(states, history, r"is unreachable", 1.0)

            redis_server.start()  # the same port, empty
            with caplog.at_level(logging.WARNING, logger="agentpack.services"):
                assert await states.health() is True
                assert await states.export_state("u", session_id="s") is None
                assert await history.get_session("u", "s") is None
            assert states.redis_restarts == 1 and history.redis_restarts == 1
            warnings = [r.getMessage() for r in caplog.records if "restarted" in r.getMessage()]
            assert any("RedisStateService" in w and "persists its data (RDB snapshots or AOF)" in w for w in warnings), warnings
            assert any("RedisSessionHistoryService" in w for w in warnings), warnings

            assert await states.save_state("u", {"a": 2}, session_id="s") == 1  # and it works again

    asyncio.run(scenario())


def test_a_client_given_is_used_and_left_open(redis_server) -> None:
    import redis.asyncio as aioredis

    async def scenario() -> None:
        client = aioredis.from_url(redis_server.url, decode_responses=True)
        states = RedisStateService(redis_client=client)
        async with states:
            await states.save_state("u", {"a": 1})
        assert await states.health() is False
        assert await client.ping() is True  # the caller's client stays open
        async with states:  # and is used again after a restart of the service
            assert await states.export_state("u") == {"a": 1}
        raw = aioredis.from_url(redis_server.url)  # bytes replies work too
        async with RedisSessionHistoryService(redis_client=raw) as history:
            await history.append_message(await history.create_session("u", "s"), text_message("user", "hi"))
            assert texts(await history.get_session("u", "s")) == ["hi"]
            assert [s.id for s in await history.list_sessions("u")] == ["s"]
        await client.aclose()
        await raw.aclose()

    asyncio.run(scenario())


# -- packaging and wiring --------------------------------------------------------------------------


def test_importing_the_services_imports_no_redis_and_no_upper_layer() -> None:
    code = (
        "import sys, agentpack.services\n"
        "bad = sorted(m for m in sys.modules if m == 'redis' or m.startswith(('redis.', 'agentpack.app', "
        "'agentpack.run', 'agentpack.frontends', 'agentpack.interrupt', 'agentpack.frameworks', 'fastapi')))\n"
        "print(bad)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_an_app_wires_the_services_through_its_lifespan(redis_server) -> None:
    """The wiring the docs show: the lifespan starts both services into app.state, the handler
    loads and saves through them, and a second app instance continues the conversation."""
    from agentpack import AgentApp
    from tests.support import check_protocol, in_process, sse_events

    def make_app() -> AgentApp:
        @asynccontextmanager
        async def lifespan(app):
            async with RedisStateService(redis_server.url) as states, RedisSessionHistoryService(redis_server.url) as sessions:
                app.state.state_service, app.state.session_service = states, sessions
                yield

        app = AgentApp(lifespan=lifespan)

        @app.query(framework="text")
        async def handler(self, msgs, request, **kwargs):
            states, sessions = app.state.state_service, app.state.session_service
            state = await states.export_state(request.user_id, session_id=request.session_id) or {"turns": 0}
            session = await sessions.get_session(request.user_id, request.session_id)
            if session is None:
                session = await sessions.create_session(request.user_id, request.session_id)
            await sessions.append_message(session, msgs)
            yield f"turn {state['turns'] + 1}, {len(session.messages)} messages"
            await states.save_state(request.user_id, {"turns": state["turns"] + 1}, session_id=request.session_id)

        return app

    async def ask(app: AgentApp, text: str) -> str:
        async with in_process(app) as client:
            response = await client.post("/process", json=user_body(text, user_id="用户", session_id="a:b"))
            events = sse_events(response.text)
            assert check_protocol(events)["status"] == "completed"
            return "".join(e["text"] for e in events if e["object"] == "content" and e.get("delta"))

    async def scenario() -> None:
        assert await ask(make_app(), "hello") == "turn 1, 1 messages"
        assert await ask(make_app(), "again") == "turn 2, 2 messages"  # another instance of the app

    asyncio.run(scenario())
    raw = redis_server.client()
    assert json.loads(raw.hget("agentpack:{%E7%94%A8%E6%88%B7}:state:a%3Ab", "2")) == {"turns": 2}
