"""Background jobs: jobs/s and submit-to-finished latency, embedded queue vs Celery, same run.

    python bench/tasks_throughput.py [--jobs 500] [--latency-runs 100]

Each mode serves bench/task_app.py with `agentpack run` (Celery mode adds a private
redis-server as broker and backend and an `agentpack worker` with 2 processes).
- throughput: submit --jobs jobs from 16 client threads, then check each until it is
  finished; jobs/s = jobs / (first submit -> every job seen finished);
- latency: one job at a time, polled every 2 ms until finished (so add up to ~2 ms of
  polling granularity to the true figure).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
from common import ROOT, answers, free_port, summary, wait


async def until_finished(client: httpx.AsyncClient, url: str, task_id: str, interval: float) -> None:
    while True:
        status = (await client.get(f"{url}/echo/{task_id}")).json()["status"]
        if status == "finished":
            return
        if status in ("error", "canceled"):
            raise RuntimeError(f"job {task_id} ended {status}")
        await asyncio.sleep(interval)


def throughput(url: str, jobs: int, clients: int = 16) -> float:
    """Submit from ``clients`` threads (httpx's async pool is slower than the server under this load)."""
    local = threading.local()

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=60)
        return local.client

    def submit(i: int) -> str:
        return client().post(f"{url}/echo", json={"i": i}).json()["task_id"]

    def finished(task_id: str) -> None:
        while True:
            status = client().get(f"{url}/echo/{task_id}").json()["status"]
            if status == "finished":
                return
            if status in ("error", "canceled"):
                raise RuntimeError(f"job {task_id} ended {status}")
            time.sleep(0.005)

    with ThreadPoolExecutor(clients) as pool:
        started = time.perf_counter()
        ids = list(pool.map(submit, range(jobs)))
        list(pool.map(finished, ids))
        return jobs / (time.perf_counter() - started)


async def latency(url: str, runs: int) -> list[float]:
    async with httpx.AsyncClient(timeout=60) as client:
        values = []
        for i in range(runs):
            started = time.perf_counter()
            task_id = (await client.post(f"{url}/echo", json={"i": i})).json()["task_id"]
            await until_finished(client, url, task_id, 0.002)
            values.append(time.perf_counter() - started)
        return values


def measure(mode: str, jobs: int, runs: int) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    processes = []
    try:
        if mode == "celery":
            redis_port = free_port()
            processes.append(
                subprocess.Popen(
                    [
                        shutil.which("redis-server") or "redis-server",
                        "--port",
                        str(redis_port),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ],
                    stdout=subprocess.DEVNULL,
                )
            )
            env.update(
                AGENTPACK_BENCH_BROKER=f"redis://127.0.0.1:{redis_port}/0",
                AGENTPACK_BENCH_BACKEND=f"redis://127.0.0.1:{redis_port}/1",
                AGENTPACK_BENCH_QUEUE=f"bench-{uuid.uuid4().hex[:6]}",
            )
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "agentpack",
                        "worker",
                        "bench/task_app.py",
                        "-c",
                        "2",
                        "--log-level",
                        "warning",
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,  # the worker's banner would mix with the figures
                    stderr=subprocess.DEVNULL,
                )
            )
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "agentpack",
                    "run",
                    "bench/task_app.py",
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                ],
                cwd=ROOT,
                env=env,
            )
        )
        wait(lambda: answers(f"{url}/readiness"), 60, "the app was not ready")
        asyncio.run(latency(url, 10))  # warm-up (and waits for the worker to consume)
        jobs_per_second = throughput(url, jobs)
        values = asyncio.run(latency(url, runs))
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=30)
    stats = summary(values)
    ordered = sorted(values)
    return {
        "jobs_per_second": jobs_per_second,
        "submit_to_finished_ms": {
            "p50": stats["median"] * 1000,
            "p90": stats["p90"] * 1000,
            "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--latency-runs", type=int, default=100)
    args = parser.parse_args()
    results = {mode: measure(mode, args.jobs, args.latency_runs) for mode in ("embedded", "celery")}
    print(json.dumps({"python": sys.version.split()[0], "jobs": args.jobs, "results": results}, indent=2))


if __name__ == "__main__":
    main()
