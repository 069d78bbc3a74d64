"""Soak: rounds of 200 concurrent streams for a fixed time, a third of the clients leaving
mid-stream and a third stopped (from the other node) at random moments.

    python bench/soak.py [--seconds 60] [--streams 200] [--auth] [--max-runs N] [--run-timeout S]

Starts a private redis-server and two agent nodes (`agentpack run`, with this interpreter),
and after every round checks what must hold: no errors, exactly one terminal event on every
stream that was not abandoned (canceled for the stopped ones), no lease or stop flag left in
Redis, no asyncio task left in the nodes, and the nodes' RSS.  Prints one JSON summary with
the stop -> canceled latency under that load.  Loopback only; not a test (no thresholds).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
from common import ROOT, free_port, start_nodes, start_redis, wait

TERMINAL = ("completed", "failed", "canceled")
PAUSE = 0.1  # seconds between deltas of one stream (set by --pause)
#: Headers every request sends: with --auth, the nodes' API key as a bearer token.
HEADERS: dict[str, str] = {}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def one_stream(
    client: httpx.AsyncClient, runner: str, stopper: str, session: str, fate: str, rng: random.Random, out: dict
) -> None:
    after = rng.randint(1, 15)
    body = {"input": [{"role": "user", "content": "go"}], "session_id": session, "user_id": "soak"}
    body["chunks"] = 100_000 if fate in ("stop", "leave") else rng.randint(5, 30)
    body["pause"] = PAUSE
    terminals: list[str] = []
    deltas = 0
    stop_sent = None
    try:
        async with client.stream("POST", f"{runner}/process", json=body, headers=HEADERS) as response:
            if response.status_code != 200:
                out["errors"].append(f"{session}: HTTP {response.status_code} {(await response.aread())[:200]!r}")
                return
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if '"object":"content"' in line[:64]:  # read without parsing: 500 streams are many lines
                    if '"delta":true,' not in line:
                        continue
                    deltas += 1
                    if deltas == after and fate == "leave":
                        return  # the client goes away mid-stream
                    if deltas == after and fate == "stop":
                        stop_sent = time.perf_counter()
                        answer = await client.post(
                            f"{stopper}/process/stop", json={"session_id": session, "user_id": "soak"}, headers=HEADERS
                        )
                        if answer.json().get("stopped") is not True:
                            out["errors"].append(f"{session}: stop answered {answer.text}")
                    continue
                event = json.loads(line[6:])
                if event.get("object") == "response" and event.get("status") in TERMINAL:
                    terminals.append(event["status"])
                    if event["status"] == "canceled" and stop_sent is not None:
                        out["stop_ms"].append((time.perf_counter() - stop_sent) * 1000)
    except httpx.HTTPError as exc:
        out["errors"].append(f"{session}: {type(exc).__name__}: {exc}")
        return
    expected = "canceled" if fate == "stop" else "completed"
    if terminals != [expected]:
        out["errors"].append(f"{session} ({fate}): terminal events {terminals}, expected [{expected!r}]")


async def one_round(urls: list[str], streams: int, round_no: int, rng: random.Random) -> dict:
    out: dict = {"errors": [], "stop_ms": []}
    limits = httpx.Limits(max_connections=streams * 2, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        jobs = []
        for i in range(streams):
            runner, stopper = (urls[0], urls[1]) if i % 2 else (urls[1], urls[0])
            fate = ("complete", "leave", "stop")[i % 3]
            jobs.append(one_stream(client, runner, stopper, f"r{round_no}-s{i}", fate, rng, out))
        await asyncio.gather(*jobs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--pause", type=float, default=0.1, help="seconds between deltas of one stream")
    parser.add_argument("--auth", action="store_true", help="the nodes require an API key (AGENTPACK_API_KEYS)")
    parser.add_argument(
        "--max-runs", type=int, help="AGENTPACK_MAX_CONCURRENT_RUNS of each node (default: its default)"
    )
    parser.add_argument("--run-timeout", type=float, help="AGENTPACK_RUN_TIMEOUT_SECONDS (default: its default)")
    parser.add_argument("--max-body", type=int, help="AGENTPACK_MAX_BODY_BYTES (default: its default)")
    args = parser.parse_args()
    global PAUSE
    PAUSE = args.pause
    rng = random.Random(20261129)
    redis_port = free_port()
    redis = start_redis(redis_port)
    env = {**os.environ, "AGENTPACK_BENCH_REDIS": f"redis://127.0.0.1:{redis_port}/0", "PYTHONPATH": str(ROOT)}
    if args.auth:
        key = secrets.token_urlsafe(32)
        env["AGENTPACK_API_KEYS"] = key
        HEADERS["Authorization"] = f"Bearer {key}"
    for flag, variable in (
        ("max_runs", "AGENTPACK_MAX_CONCURRENT_RUNS"),
        ("run_timeout", "AGENTPACK_RUN_TIMEOUT_SECONDS"),
        ("max_body", "AGENTPACK_MAX_BODY_BYTES"),
    ):
        if getattr(args, flag) is not None:
            env[variable] = str(getattr(args, flag))
    limits = {
        v: env.get(v, "default")
        for v in ("AGENTPACK_MAX_CONCURRENT_RUNS", "AGENTPACK_RUN_TIMEOUT_SECONDS", "AGENTPACK_MAX_BODY_BYTES")
    }
    nodes: list[subprocess.Popen] = []
    urls: list[str] = []
    try:
        import redis as redis_client

        store = redis_client.Redis(port=redis_port, decode_responses=True)
        nodes, urls = start_nodes("bench/soak_node.py", 2, env)
        if args.auth:  # the key is required: a request without it is refused
            assert httpx.post(f"{urls[0]}/process", json={"input": []}).status_code == 401
        baseline_tasks = [httpx.get(f"{u}/debug/tasks", headers=HEADERS).json()["tasks"] for u in urls]
        rounds = []
        errors: list[str] = []
        stop_ms: list[float] = []
        started = time.monotonic()
        while time.monotonic() - started < args.seconds:
            out = asyncio.run(one_round(urls, args.streams, len(rounds), rng))

            def settled() -> bool:
                return not store.keys("agentpack:*:lease") and not store.keys("agentpack:*:stop")

            try:
                wait(settled, 10, "leases or stop flags left in Redis")
            except RuntimeError as exc:
                out["errors"].append(f"{exc}: {store.keys('agentpack:*:lease')[:5]}")
            try:
                wait(
                    lambda: (
                        [httpx.get(f"{u}/debug/tasks", headers=HEADERS).json()["tasks"] for u in urls] == baseline_tasks
                    ),
                    10,
                    "asyncio tasks left",
                )
            except RuntimeError as exc:
                out["errors"].append(
                    f"{exc}: {[httpx.get(f'{u}/debug/tasks', headers=HEADERS).json()['tasks'] for u in urls]} vs {baseline_tasks}"
                )
            rounds.append({"errors": len(out["errors"]), "rss_mb": [round(rss_mb(n.pid), 1) for n in nodes]})
            errors += out["errors"]
            stop_ms += out["stop_ms"]
        ordered = sorted(stop_ms)
        print(
            json.dumps(
                {
                    "python": sys.version.split()[0],
                    "seconds": round(time.monotonic() - started, 1),
                    "rounds": len(rounds),
                    "streams": len(rounds) * args.streams,
                    "concurrent_streams": args.streams,
                    "seconds_between_deltas": args.pause,
                    "auth": args.auth,
                    "limits": limits,
                    "errors": len(errors),
                    "first_errors": errors[:10],
                    "error_kinds": dict(collections.Counter(e.split(": ", 1)[-1][:90] for e in errors).most_common(8)),
                    "stops_measured": len(ordered),
                    "stop_to_canceled_ms": {
                        "p50": round(ordered[len(ordered) // 2], 2) if ordered else None,
                        "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2) if ordered else None,
                        "max": round(ordered[-1], 2) if ordered else None,
                    },
                    "leases_left": len(store.keys("agentpack:*:lease")),
                    "stop_flags_left": len(store.keys("agentpack:*:stop")),
                    "tasks_left": [
                        httpx.get(f"{u}/debug/tasks", headers=HEADERS).json()["tasks"] - b
                        for u, b in zip(urls, baseline_tasks, strict=True)
                    ],
                    "rss_mb_first_round": rounds[0]["rss_mb"] if rounds else None,
                    "rss_mb_last_round": rounds[-1]["rss_mb"] if rounds else None,
                    "rss_mb_node_a_by_round": [r["rss_mb"][0] for r in rounds],
                    "errors_by_round": [r["errors"] for r in rounds],
                },
                indent=2,
            )
        )
    finally:
        for node in nodes:
            node.terminate()
            node.wait(timeout=30)
        redis.terminate()
        redis.wait(timeout=10)


if __name__ == "__main__":
    main()
