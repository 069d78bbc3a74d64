"""How fast a node answers when Redis misbehaves: frozen (SIGSTOP) and restarted with no data.

    python bench/redis_faults.py [--runs 5]

Starts a private redis-server and two agent nodes (`agentpack run bench/stop_node.py`).
Frozen: time from request to the 503 for /readiness, /process and /process/stop.
Restarted: right after Redis comes back empty, time for node B to refuse a second run of a
session running on node A (409) and to stop it (stopped: true), and for node A's client to
see `canceled`.  Prints JSON.  Loopback only; not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time

import httpx
from common import ROOT, answers, free_port, start_nodes, start_redis, summary, wait


def timed(call) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = call()
    return (time.perf_counter() - started) * 1000, response


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    redis_port = free_port()
    redis = start_redis(redis_port)
    env = {**os.environ, "AGENTPACK_BENCH_REDIS": f"redis://127.0.0.1:{redis_port}/0", "PYTHONPATH": str(ROOT)}
    nodes, urls = [], []
    frozen: dict[str, list[float]] = {"readiness": [], "process": [], "stop": []}
    restart: dict[str, list[float]] = {"second_run_409": [], "stop_true": [], "canceled_seen": []}
    try:
        nodes, urls = start_nodes("bench/stop_node.py", 2, env, log_level="error")
        a, b = urls
        body = {"input": [{"role": "user", "content": "go"}], "user_id": "bench"}
        with httpx.Client(timeout=30) as client:
            for run in range(args.runs):
                os.kill(redis.pid, signal.SIGSTOP)
                try:
                    for name, call in (
                        ("readiness", lambda: client.get(f"{a}/readiness")),
                        ("process", lambda: client.post(f"{a}/process", json={**body, "session_id": f"f{run}"})),
                        (
                            "stop",
                            lambda: client.post(
                                f"{a}/process/stop", json={"session_id": f"f{run}", "user_id": "bench"}
                            ),
                        ),
                    ):
                        ms, response = timed(call)
                        assert response.status_code == 503, (name, response.status_code, response.text)
                        frozen[name].append(ms)
                finally:
                    os.kill(redis.pid, signal.SIGCONT)
                wait(lambda: answers(f"{a}/readiness") and answers(f"{b}/readiness"), 15, "nodes did not recover")

            for run in range(args.runs):
                session = f"restart-{run}"
                seen: dict[str, float] = {}
                ready = threading.Event()

                def stream() -> None:
                    with httpx.stream(
                        "POST", f"{a}/process", json={**body, "session_id": session}, timeout=60
                    ) as response:
                        for line in response.iter_lines():
                            if '"delta":true' in line:
                                ready.set()
                            if '"status":"canceled"' in line and '"object":"response"' in line:
                                seen["canceled"] = time.perf_counter()

                reader = threading.Thread(target=stream)
                reader.start()
                assert ready.wait(30)
                redis.kill()
                redis.wait()
                redis = start_redis(redis_port)
                back = time.perf_counter()
                ms, second = timed(lambda: client.post(f"{b}/process", json={**body, "session_id": session}))
                assert second.status_code == 409, second.text
                restart["second_run_409"].append(ms)
                ms, stop = timed(
                    lambda: client.post(f"{b}/process/stop", json={"session_id": session, "user_id": "bench"})
                )
                assert stop.json()["stopped"] is True, stop.text
                restart["stop_true"].append(ms)
                reader.join(timeout=30)
                restart["canceled_seen"].append((seen["canceled"] - back) * 1000)
                wait(lambda: answers(f"{a}/readiness") and answers(f"{b}/readiness"), 15, "nodes did not recover")
    finally:
        for node in nodes:
            node.terminate()
            node.wait(timeout=30)
        redis.terminate()
        redis.wait(timeout=10)

    def stats(values: list[float]) -> dict[str, float]:
        result = summary(values)
        return {"median_ms": round(result["median"], 1), "max_ms": round(max(values), 1)}

    print(
        json.dumps(
            {
                "python": sys.version.split()[0],
                "runs": args.runs,
                "frozen_redis_503": {name: stats(values) for name, values in frozen.items()},
                "after_restart_from_redis_back": {name: stats(values) for name, values in restart.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
