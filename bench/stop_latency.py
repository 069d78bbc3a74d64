"""Cross-node stop latency: stop sent to node B -> client of node A sees the terminal event.

    python bench/stop_latency.py [--runs 200]

Starts a private redis-server and two agent nodes (separate processes, `agentpack run`),
then for each run: stream from node A until the first delta, send the stop to node B and
time until node A's stream delivers its `canceled` event.  Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

import httpx
from common import ROOT, free_port, start_nodes, start_redis, summary


async def one_run(client: httpx.AsyncClient, a: str, b: str, session: str) -> float:
    body = {"input": [{"role": "user", "content": "go"}], "session_id": session, "user_id": "bench"}
    async with client.stream("POST", f"{a}/process", json=body) as response:
        lines = response.aiter_lines()
        async for line in lines:
            if '"delta":true' in line:
                break
        started = time.perf_counter()
        stop = asyncio.ensure_future(client.post(f"{b}/process/stop", json={"session_id": session, "user_id": "bench"}))
        async for line in lines:
            if line.startswith("data: ") and json.loads(line[6:]).get("status") == "canceled":
                elapsed = time.perf_counter() - started
                break
        else:
            raise RuntimeError("stream ended without a canceled event")
        assert (await stop).json()["stopped"] is True
    return elapsed


async def measure(a: str, b: str, runs: int) -> list[float]:
    async with httpx.AsyncClient(timeout=30) as client:
        for i in range(10):  # warm-up
            await one_run(client, a, b, f"warm-{i}")
        return [await one_run(client, a, b, f"run-{i}") for i in range(runs)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    redis_port = free_port()
    redis = start_redis(redis_port)
    env = {**os.environ, "AGENTPACK_BENCH_REDIS": f"redis://127.0.0.1:{redis_port}/0", "PYTHONPATH": str(ROOT)}
    nodes = []
    try:
        nodes, urls = start_nodes("bench/stop_node.py", 2, env)
        latencies = asyncio.run(measure(urls[0], urls[1], args.runs))
    finally:
        for node in nodes:
            node.terminate()
            node.wait(timeout=20)
        redis.terminate()
        redis.wait(timeout=10)
    ordered = sorted(latencies)
    stats = summary(latencies)
    print(
        json.dumps(
            {
                "python": sys.version.split()[0],
                "runs": args.runs,
                "stop_to_canceled_ms": {
                    "p50": stats["median"] * 1000,
                    "p90": stats["p90"] * 1000,
                    "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
                    "max": ordered[-1] * 1000,
                    "min": ordered[0] * 1000,
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
