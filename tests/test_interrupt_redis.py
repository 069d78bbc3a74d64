"""Interrupts across processes through a real redis-server, with agent nodes as separate processes."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from typing import Optional

import httpx
import pytest

from agentpack.interrupt.base import RunState
from agentpack.interrupt.guard import SessionGuard
from agentpack.interrupt.redis import RedisInterruptBackend
from tests.support import BackgroundStream, check_protocol, user_body, wait_until, http
from tests.nodes.cluster import Node


def long_run(session: str, **extra) -> dict:
    """A run that streams one delta and then waits until it is stopped."""
    return user_body("go", session_id=session, user_id="u", chunks=1000, hang=True, **extra)


@pytest.fixture
def cluster(redis_server):
    nodes: list[Node] = []

    def start(count: int = 2, lease: float = 10.0) -> list[Node]:
        for _ in range(count):
            nodes.append(Node(redis_server.url, lease=lease))
        return nodes[-count:]

    yield start
    for node in nodes:
        node.close()


def test_stop_sent_to_another_node_cancels_the_run(cluster, redis_server):
    node_a, node_b = cluster(2)
    stream = BackgroundStream(node_a.url, long_run("s-cross")).begin()
    answer = node_b.stop_session("s-cross")
    assert answer.status_code == 200 and answer.json()["stopped"] is True
    terminal = check_protocol(stream.result())
    assert terminal["status"] == "canceled"
    assert terminal["error"]["code"] == "CANCELED"
    redis = redis_server.client()
    assert redis.get("cleanup:s-cross") == "cancelled"  # the handler's except-branch ran on node A
    wait_until(lambda: http.get(f"{node_b.url}/health").json() and redis.hget("agentpack:{u:s-cross}:state", "state") == "STOPPED", 10, "state STOPPED")
    assert redis.exists("agentpack:{u:s-cross}:lease") == 0


def test_stop_of_an_idle_session_is_false_and_writes_nothing(cluster, redis_server):
    (node,) = cluster(1)
    answer = node.stop_session("never-ran")
    assert answer.json() == {"stopped": False, "user_id": "u", "session_id": "never-ran"}
    assert redis_server.client().keys("agentpack:{u:never-ran}*") == []


def test_stop_before_the_runner_listens_is_not_lost(redis_server):
    """A stop that lands between taking the lease and subscribing is caught by the durable flag."""

    class SlowToListen(RedisInterruptBackend):
        def __init__(self, url: str, stopper: RedisInterruptBackend) -> None:
            super().__init__(url)
            self.stopper = stopper

        async def watch(self, key, callback):
            assert await self.stopper.request_stop(key, 60)  # published while nobody listens
            await super().watch(key, callback)

    class Run:
        reason: Optional[str] = None

        def stop(self, reason: str = "") -> None:
            self.reason = reason

    async def scenario() -> None:
        stopper = RedisInterruptBackend(redis_server.url)
        backend = SlowToListen(redis_server.url, stopper)
        await stopper.start()
        await backend.start()
        guard = SessionGuard(backend, lease_seconds=5)
        run = Run()
        active = await guard.begin("u:early", run)
        assert run.reason == "stopped by a stop request"
        await guard.end(active, RunState.STOPPED)
        assert await guard.state("u:early") is RunState.STOPPED
        await backend.aclose()
        await stopper.aclose()

    asyncio.run(scenario())


def test_a_killed_node_frees_its_session_within_the_lease(cluster):
    lease = 1.5
    node_a, node_b = cluster(2, lease=lease)
    stream = BackgroundStream(node_a.url, long_run("s-crash")).begin()
    node_a.kill()
    killed_at = time.monotonic()
    body = user_body("again", session_id="s-crash", user_id="u", chunks=2)

    def runs_on_b() -> bool:
        return http.post(f"{node_b.url}/process", json=body, timeout=10).status_code == 200

    wait_until(runs_on_b, lease * 4, "the session never became free on node B")
    freed_after = time.monotonic() - killed_at
    assert freed_after < lease * 2, f"freed after {freed_after:.2f}s with a {lease}s lease"
    stream.join(timeout=10)
    assert isinstance(stream.error, httpx.RemoteProtocolError)


def test_same_session_on_two_nodes_runs_once(cluster):
    node_a, node_b = cluster(2)
    for attempt in range(5):
        session = f"s-race-{attempt}"
        barrier = threading.Barrier(2)
        codes: dict[str, int] = {}

        def post(node: Node) -> None:
            barrier.wait()
            response = http.post(f"{node.url}/process", json=long_run(session, stream=False), timeout=30)
            codes[node.url] = response.status_code

        threads = [threading.Thread(target=post, args=(node,)) for node in (node_a, node_b)]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(codes) == 1, 30, "neither request was refused")
        assert list(codes.values()) == [409]
        winner = node_b if node_a.url in codes else node_a
        assert winner.stop_session(session).json()["stopped"] is True
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(codes.values()) == [200, 409]


def test_many_sessions_half_stopped_at_random_moments(cluster, redis_server):
    node_a, node_b = cluster(2)
    rng = random.Random(20261125)
    plan = {f"s-many-{i}": (rng.random() < 0.5, rng.randint(1, 20)) for i in range(200)}
    for node in (node_a, node_b):  # warm up: process-wide helpers (the Redis stop channel, pools) start once
        http.post(f"{node.url}/process", json=user_body(session_id="warm-up", user_id="u", chunks=1, stream=True))
    before = {node.url: http.get(f"{node.url}/debug/tasks").json()["tasks"] for node in (node_a, node_b)}

    async def one(client: httpx.AsyncClient, index: int, session: str) -> tuple[str, dict]:
        runner, stopper = (node_a, node_b) if index % 2 else (node_b, node_a)
        stop, after_deltas = plan[session]
        body = user_body("go", session_id=session, user_id="u", chunks=40 if stop else 5)
        body["hang"] = stop
        events = []
        async with client.stream("POST", f"{runner.url}/process", json=body) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                events.append(json.loads(line[6:]))
                deltas = sum(1 for e in events if e["object"] == "content" and e.get("delta"))
                if stop and deltas == 1:
                    answer = await client.post(f"{stopper.url}/process/stop", json={"session_id": session, "user_id": "u"})
                    assert answer.json()["stopped"] is True, (answer.json(), events)
                    stop = False
        return session, check_protocol(events)

    async def scenario() -> list[tuple[str, dict]]:
        # No keep-alive: a POST sent on a pooled connection just as the server closes it for
        # being idle (uvicorn's 5 s keep-alive; this test runs ~9 s) is reset by the kernel — a
        # race of HTTP/1.1 keep-alive itself, not of the stops this test is about.
        limits = httpx.Limits(max_connections=500, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            return await asyncio.gather(*(one(client, i, s) for i, s in enumerate(plan)))

    results = asyncio.run(scenario())
    for session, terminal in results:
        expected = "canceled" if plan[session][0] else "completed"
        assert terminal["status"] == expected, session
    redis = redis_server.client()
    wait_until(lambda: not redis.keys("agentpack:*:lease"), 10, lambda: f"leases left behind: {redis.keys('agentpack:*:lease')}")
    assert not redis.keys("agentpack:*:stop")
    states = {s: redis.hget(f"agentpack:{{u:{s}}}:state", "state") for s in plan}
    assert all(states[s] == ("STOPPED" if plan[s][0] else "FINISHED") for s in plan)
    for node in (node_a, node_b):

        def tasks(url: str = node.url) -> list[str]:
            return http.get(f"{url}/debug/tasks").json()["tasks"]

        expected = before[node.url]
        wait_until(lambda: tasks() == expected, 10, lambda: f"asyncio tasks left behind: {tasks()} vs {expected}")
        assert http.get(f"{node.url}/health").json()["running_sessions"] == 0


def test_redis_restart_mid_run_then_stop_still_works(cluster, redis_server):
    node_a, node_b = cluster(2, lease=1.5)
    stream = BackgroundStream(node_a.url, long_run("s-restart")).begin()
    redis_server.kill()
    assert node_b.stop_session("s-restart").status_code == 503  # Redis is down: a clear 503, no hang
    redis_server.start()  # same port, empty data
    redis = redis_server.client()
    wait_until(lambda: node_a.ready() and node_b.ready(), 15, "nodes did not reconnect")
    wait_until(lambda: redis.exists("agentpack:{u:s-restart}:lease"), 15, "node A did not take its lease back")
    assert stream.is_alive(), "the run continued through the outage"
    assert node_b.stop_session("s-restart").json()["stopped"] is True
    assert check_protocol(stream.result())["status"] == "canceled"


def test_redis_down_at_start_up(redis_server):
    redis_server.kill()
    node = Node(redis_server.url)
    try:
        readiness = http.get(f"{node.url}/readiness", timeout=10)
        assert readiness.status_code == 503
        assert f"Redis at 127.0.0.1:{redis_server.port}" in readiness.json()["reason"]
        refused = http.post(f"{node.url}/process", json=user_body(session_id="s-down"), timeout=10)
        assert refused.status_code == 503
        assert "Redis" in refused.json()["detail"]
        redis_server.start()
        wait_until(node.ready, 15, "node did not become ready once Redis answered")
        events = []
        with http.stream("POST", f"{node.url}/process", json=user_body(session_id="s-down", user_id="u", chunks=2)) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
        assert check_protocol(events)["status"] == "completed"
    finally:
        node.close()


def test_closing_the_backend_closes_every_pooled_connection(redis_server):
    observer = redis_server.client()

    # Counting only this backend's connections (by client name) keeps other tests' clients,
    # which the garbage collector closes whenever it likes, out of the figure.
    name = "agentpack-close-test"

    def clients() -> int:
        return sum(1 for client in observer.client_list() if client.get("name") == name)

    async def scenario() -> None:
        backend = RedisInterruptBackend(f"{redis_server.url}?client_name={name}")
        await backend.start()
        await asyncio.gather(*(backend.get_state(f"u:s{i}") for i in range(10)))  # several pooled connections
        assert clients() > 1, "the pool and the stop listener each hold connections"
        await backend.aclose()
        wait_until(lambda: clients() == 0, 10, lambda: f"{clients()} connections left open")

    asyncio.run(scenario())
