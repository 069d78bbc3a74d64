"""Sessions are never stuck, crossed, cut or refused by mistake — through real uvicorn servers
(agentpack nodes as separate processes) and real redis-server processes.

These run on every supported Python in CI (.ci/run): the worst of these bugs existed only on
3.10/3.11, where a cancellation can be swallowed inside redis-py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from typing import Any, Optional
from urllib.parse import unquote

import httpx
import pytest

from agentpack import AgentApp
from tests.support import BackgroundStream, check_protocol, user_body, wait_until, http
from tests.nodes.cluster import Node
from tests.nodes.partition import Partition

pytestmark = pytest.mark.integration


@pytest.fixture
def nodes(redis_server):
    started: list[Node] = []

    def start(count: int = 1, **options: Any) -> list[Node]:
        for _ in range(count):
            started.append(Node(redis_server.url, **options))
        return started[-count:]

    yield start
    for node in started:
        node.close()


def held_leases(redis) -> list[str]:
    return redis.keys("agentpack:*:lease")


def long_run(session: str, user: str = "u", **extra: Any) -> dict:
    return user_body("go", session_id=session, user_id=user, chunks=1000, hang=True, **extra)


async def _leave_after_first_delta(client: httpx.AsyncClient, url: str, session: str) -> None:
    async with client.stream("POST", f"{url}/process", json=long_run(session)) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if '"delta":true' in line:
                return  # closing the stream here is the client leaving mid-run


def test_clients_that_leave_mid_stream_never_leave_a_session_held(nodes, redis_server):
    (node,) = nodes(1, lease=0.3)
    redis = redis_server.client()

    async def scenario() -> None:
        limits = httpx.Limits(max_connections=250, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            await asyncio.gather(*(_leave_after_first_delta(client, node.url, f"gone-{i}") for i in range(200)))

    asyncio.run(scenario())
    wait_until(lambda: not held_leases(redis), 20, lambda: f"{len(held_leases(redis))} sessions left held")
    wait_until(lambda: http.get(f"{node.url}/health").json()["running_sessions"] == 0, 10, "runs left in the node")
    # every session is usable again at once, and a stop of one says there is nothing to stop
    assert http.post(f"{node.url}/process", json=user_body(session_id="gone-7", user_id="u", chunks=2, stream=False)).status_code == 200
    assert node.stop_session("gone-8").json()["stopped"] is False
    assert node.terminate(within=30) in (0, -signal.SIGTERM)
    assert not held_leases(redis)


@pytest.mark.parametrize("user, session", [("用户-北京", "会话-日本"), ("🙂", "emoji 🚀 session")])
def test_unicode_ids_run_stop_and_state_across_nodes(nodes, redis_server, user, session):
    node_a, node_b = nodes(2)
    stream = BackgroundStream(node_a.url, long_run(session, user)).begin()
    busy = http.post(f"{node_b.url}/process", json=long_run(session, user))
    assert busy.status_code == 409
    answer = http.post(f"{node_b.url}/process/stop", json={"session_id": session, "user_id": user})
    assert answer.json() == {"stopped": True, "user_id": user, "session_id": session}
    assert check_protocol(stream.result())["status"] == "canceled"
    again = http.post(f"{node_b.url}/process", json=user_body(session_id=session, user_id=user, chunks=2, stream=False))
    assert again.status_code == 200 and again.json()["status"] == "completed"
    assert unquote(again.headers["x-agentpack-session-id"]) == session
    assert not held_leases(redis_server.client())


def test_sigterm_past_the_grace_ends_every_stream_with_canceled_and_frees_every_session(nodes, redis_server):
    (node,) = nodes(1, grace=1.0)
    streams = [BackgroundStream(node.url, long_run(f"long-{i}")) for i in range(20)]
    for stream in streams:
        stream.start()
    for stream in streams:
        assert stream.started.wait(30), "a run never streamed"
    assert len(held_leases(redis_server.client())) == 20
    assert node.terminate(within=60) in (0, -signal.SIGTERM)
    for stream in streams:
        terminal = check_protocol(stream.result())
        assert terminal["status"] == "canceled"
        assert terminal["error"] == {"code": "CANCELED", "message": "the server is shutting down"}
        assert stream.error is None, "the stream was cut instead of ended"
    assert not held_leases(redis_server.client())
    assert not redis_server.client().keys("agentpack:*:stop")
    # each stream was ended properly, so none is reported as a failed request
    assert "Exception in ASGI application" not in node.log_text()


def _terminal_then_next(url: str, first: dict, next_body: dict, stop: Optional[Any] = None) -> int:
    """Read ``first`` up to its terminal event, then at once send ``next_body``; its status code."""
    with httpx.Client(timeout=30) as reader, httpx.Client(timeout=30) as sender:
        if not first.get("stream", True):
            assert reader.post(f"{url}/process", json=first).status_code == 200
            return sender.post(f"{url}/process", json=next_body).status_code
        with reader.stream("POST", f"{url}/process", json=first) as response:
            for line in response.iter_lines():
                if stop is not None and '"delta":true' in line:
                    stop()
                    stop = None
                if line.startswith("data: ") and json.loads(line[6:]).get("status") in ("completed", "failed", "canceled") and '"object":"response"' in line:
                    return sender.post(f"{url}/process", json=next_body).status_code  # before reading the end of the body
    raise AssertionError("the stream ended without a terminal event")


def _back_to_back(url: str, session: str, stop_url: str) -> None:
    quick = user_body("next", session_id=session, user_id="u", chunks=1, stream=False)
    for round_ in range(60):
        kind = ("completed", "failed", "canceled", "json")[round_ % 4]
        first = user_body("go", session_id=session, user_id="u", chunks=3)
        stop = None
        if kind == "failed":
            first["fail"] = True
        elif kind == "canceled":
            first["hang"] = True
            stop = lambda: http.post(f"{stop_url}/process/stop", json={"session_id": session, "user_id": "u"})  # noqa: E731
        elif kind == "json":
            first["stream"] = False
        assert _terminal_then_next(url, first, quick, stop) == 200, f"round {round_} ({kind}): the follow-up was refused"


def test_back_to_back_follow_ups_are_never_refused_with_redis(nodes):
    node_a, node_b = nodes(2)
    _back_to_back(node_a.url, "b2b-redis", node_b.url)


def test_back_to_back_follow_ups_are_never_refused_locally(serve):
    app = AgentApp()

    @app.query(framework="text")
    async def handler(msgs, request):
        for i in range(int(getattr(request, "chunks", 3))):
            yield f"tick {i} "
            if getattr(request, "fail", False):
                raise RuntimeError("on purpose")
            if getattr(request, "hang", False):
                await asyncio.Event().wait()

    url = serve(app)
    _back_to_back(url, "b2b-local", url)


def test_a_background_run_frees_its_session_before_it_reads_as_finished(nodes):
    (node,) = nodes(1)
    for round_ in range(10):
        body = user_body("go", session_id="b2b-task", user_id="u", chunks=2)
        task_id = http.post(f"{node.url}/process/task", json=body).json()["task_id"]

        def finished() -> bool:
            return http.get(f"{node.url}/process/task/{task_id}").json().get("status") == "finished"

        wait_until(finished, 30, "the background run did not finish", interval=0.001)
        follow_up = http.post(f"{node.url}/process", json={**body, "stream": False})
        assert follow_up.status_code == 200, f"round {round_}: {follow_up.text}"


def test_colons_in_ids_never_cross_sessions_on_redis(nodes, redis_server):
    node_a, node_b = nodes(2)
    victim = BackgroundStream(node_a.url, long_run("X:s1", user="alice")).begin()
    other = BackgroundStream(node_a.url, long_run("s1", user="alice:X")).begin()  # not a 409: another session
    assert http.post(f"{node_b.url}/process/stop", json={"session_id": "s1", "user_id": "alice:X"}).json()["stopped"] is True
    assert check_protocol(other.result())["status"] == "canceled"
    assert victim.is_alive(), "stopping one user's session stopped another's"
    assert http.post(f"{node_b.url}/process/stop", json={"session_id": "X:s1", "user_id": "alice"}).json()["stopped"] is True
    assert check_protocol(victim.result())["status"] == "canceled"


def test_a_frozen_redis_is_a_503_not_a_hang_and_recovers(nodes, redis_server):
    (node,) = nodes(1)
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        readiness = http.get(f"{node.url}/readiness", timeout=10)
        assert readiness.status_code == 503 and "Redis" in readiness.json()["reason"]
        refused = http.post(f"{node.url}/process", json=user_body(session_id="frozen", user_id="u"), timeout=10)
        assert refused.status_code == 503 and "Redis" in refused.json()["detail"]
        assert node.stop_session("frozen").status_code == 503
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    wait_until(node.ready, 15, "the node did not recover once Redis answered")
    done = http.post(f"{node.url}/process", json=user_body(session_id="frozen", user_id="u", chunks=2, stream=False), timeout=10)
    assert done.status_code == 200


def test_after_a_redis_restart_no_stop_is_lost_and_no_second_run_gets_in(nodes, redis_server):
    node_a, node_b = nodes(2, lease=3.0)
    for node in (node_a, node_b):
        assert node.ready()  # both have talked to this Redis: they will notice it restarting
    stream = BackgroundStream(node_a.url, long_run("s-restart")).begin()
    redis_server.kill()
    redis_server.start()  # same port, no data: every lease and flag is gone
    second = http.post(f"{node_b.url}/process", json=long_run("s-restart"), timeout=30)
    assert second.status_code == 409, "a second run of a running session was let in after the restart"
    answer = http.post(f"{node_b.url}/process/stop", json={"session_id": "s-restart", "user_id": "u"}, timeout=30)
    assert answer.json()["stopped"] is True, "the stop was lost"
    assert check_protocol(stream.result())["status"] == "canceled"


def test_the_stop_flag_is_reread_as_soon_as_the_stop_channel_comes_back(nodes, redis_server):
    """A stop that lands while the runner's notice channel is down is found at reconnect, not at
    the next renewal (the lease here is long, so the renewal would come much later)."""
    node_a, node_b = nodes(2, lease=60.0)
    stream = BackgroundStream(node_a.url, long_run("s-blip")).begin()
    redis = redis_server.client()
    done = threading.Event()

    def stop_when_a_is_unsubscribed() -> None:
        # drop every pub/sub client, then stop while node A resubscribes
        redis.client_kill_filter(_type="pubsub")
        node_b.stop_session("s-blip")
        done.set()

    stop_when_a_is_unsubscribed()
    assert done.is_set()
    assert check_protocol(stream.result(timeout=10))["status"] == "canceled"  # well before the 20 s renewal



@pytest.fixture
def partitioned(redis_server):
    """Two nodes that reach Redis through one proxy that can cut the network (tests/nodes/partition.py)."""
    proxy = Partition(redis_server.port)
    started: list[Node] = []

    def start(lease: float) -> list[Node]:
        started.extend(Node(proxy.url, lease=lease) for _ in range(2))
        return started

    yield proxy, start
    for node in started:
        node.close()
    proxy.close()


def _outage_longer_than(proxy: Partition, lease: float) -> None:
    """The fault itself: no byte reaches Redis or comes back for two lease times."""
    proxy.cut()
    try:
        until = time.monotonic() + lease * 2
        wait_until(lambda: time.monotonic() > until, lease * 4, "the clock stood still")
    finally:
        proxy.heal()


def test_a_lease_that_lapsed_in_an_outage_lets_no_second_run_in_and_loses_no_stop(partitioned, redis_server):
    """Redis out of reach for longer than a lease without restarting: when it answers again the
    run is still the session's run, whichever instance asks first."""
    proxy, start = partitioned
    lease = 3.0
    node_a, node_b = start(lease)
    stream = BackgroundStream(node_a.url, long_run("s-lapse")).begin()
    redis = redis_server.client()
    wait_until(lambda: redis.exists("agentpack:{u:s-lapse}:lease"), 10, "the run never took its lease")
    _outage_longer_than(proxy, lease)
    assert not redis.exists("agentpack:{u:s-lapse}:lease"), "the lease should have lapsed in the outage"
    second = http.post(f"{node_b.url}/process", json=long_run("s-lapse"), timeout=30)
    assert second.status_code == 409, "a second run of a running session was let in after the lease lapsed"
    answer = http.post(f"{node_b.url}/process/stop", json={"session_id": "s-lapse", "user_id": "u"}, timeout=30)
    assert answer.json()["stopped"] is True, "the stop was lost"
    assert check_protocol(stream.result(timeout=30))["status"] == "canceled"


def test_a_stop_right_after_an_outage_reaches_the_run_whose_lease_lapsed(partitioned, redis_server):
    """The stop comes first this time: it finds the run by the lease it held, at once."""
    proxy, start = partitioned
    lease = 3.0
    node_a, node_b = start(lease)
    stream = BackgroundStream(node_a.url, long_run("s-lapse-stop")).begin()
    redis = redis_server.client()
    wait_until(lambda: redis.exists("agentpack:{u:s-lapse-stop}:lease"), 10, "the run never took its lease")
    _outage_longer_than(proxy, lease)
    answer = http.post(f"{node_b.url}/process/stop", json={"session_id": "s-lapse-stop", "user_id": "u"}, timeout=30)
    assert answer.json()["stopped"] is True, "the stop was lost"
    assert check_protocol(stream.result(timeout=30))["status"] == "canceled"
    wait_until(lambda: not held_leases(redis), 10, "the session was left held")


def test_after_a_redis_restart_only_held_sessions_wait(nodes, redis_server):
    """A long lease makes the renewal period long (20 s here): sessions nobody held, and stops of
    idle sessions, are answered once every node has reported its leases back, not after it."""
    node_a, node_b = nodes(2, lease=60.0)
    for node in (node_a, node_b):
        assert node.ready()  # both have talked to this Redis: they will notice it restarting
    stream = BackgroundStream(node_a.url, long_run("s-held")).begin()
    wait_until(lambda: redis_server.client().exists("agentpack:{u:s-held}:lease"), 10, "the run never took its lease")
    redis_server.kill()
    redis_server.start()  # same port, no data
    # well inside the 20 s renewal period: a wait for it would time out here
    fresh = http.post(f"{node_b.url}/process", json=user_body(session_id="s-fresh", user_id="u", chunks=2, stream=False), timeout=10)
    assert fresh.status_code == 200
    assert http.post(f"{node_b.url}/process/stop", json={"session_id": "s-idle", "user_id": "u"}, timeout=10).json()["stopped"] is False
    # and the session that was held is still refused and still stoppable
    assert http.post(f"{node_b.url}/process", json=long_run("s-held"), timeout=10).status_code == 409
    assert http.post(f"{node_b.url}/process/stop", json={"session_id": "s-held", "user_id": "u"}, timeout=10).json()["stopped"] is True
    assert check_protocol(stream.result(timeout=30))["status"] == "canceled"
