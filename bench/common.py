"""Helpers shared by the benchmarks: free ports, server processes, waiting with deadlines, stats."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(kind: str, extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str, float]:
    """Start ``bench/apps.py KIND`` and return (process, url, seconds from exec to first 200 on /health)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**bench_env(), **(extra_env or {})}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(HERE / "apps.py"), kind, str(port)], env=env)
    deadline = started + 60
    with httpx.Client(timeout=1) as client:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{kind} server exited with {process.returncode}")
            try:
                if client.get(f"{url}/health").status_code == 200:
                    return process, url, time.perf_counter() - started
            except httpx.TransportError:
                pass
            if time.perf_counter() > deadline:
                process.kill()
                raise RuntimeError(f"{kind} server did not answer within 60s")
            time.sleep(0.002)


def bench_env() -> dict[str, str]:
    """The environment for measured processes: bytecode caches allowed, as on a real server.

    (This machine sets PYTHONDONTWRITEBYTECODE=1, which would make every start recompile
    every module and measure the compiler instead of the import.)
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(ROOT)
    return env


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=20)


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": statistics.median(ordered),
        "p90": ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))],
        "min": ordered[0],
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait(condition, timeout: float, what: str) -> None:
    """Poll ``condition`` until true; raise naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} within {timeout}s")
        time.sleep(0.02)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def start_redis(port: int) -> subprocess.Popen:
    """A private redis-server on ``port`` (no persistence), answering before this returns."""
    import shutil

    process = subprocess.Popen(
        [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    wait(lambda: _redis_pings(port), 10, f"redis-server on port {port} did not answer")
    return process


def _redis_pings(port: int) -> bool:
    import redis

    try:
        return bool(redis.Redis(port=port, socket_connect_timeout=0.2).ping())
    except redis.exceptions.ConnectionError:
        return False


def start_nodes(
    app: str, count: int, env: dict[str, str], log_level: str = "warning"
) -> tuple[list[subprocess.Popen], list[str]]:
    """``count`` agent nodes (``agentpack run APP`` processes), each ready on /readiness."""
    processes, urls = [], []
    for _ in range(count):
        port = free_port()
        command = [sys.executable, "-m", "agentpack", "run", app, "--port", str(port), "--log-level", log_level]
        processes.append(subprocess.Popen(command, cwd=ROOT, env=env))
        urls.append(f"http://127.0.0.1:{port}")
    for url in urls:
        wait(lambda: answers(f"{url}/readiness"), 30, f"{url} not ready")
    return processes, urls
