"""What emulation costs, per target, against the same app on bare uvicorn in the same run.

    python bench/emulate_overhead.py --venv-python V/bin/python [--runs 7] [--requests 500] [--targets fc,agentrun,lambda]

For each target, the quickstart example is built twice (with the ``.pyc`` agentpack ships by
default, and with ``--no-bytecode``) and each artifact is emulated ``--runs`` times:

- cold start: from the instance's process start to the first 200 on ``/health`` through the
  front (start command, imports, lifespan, the platform's bind check and initializer, first
  request); and the whole ``emulate`` from the call (adds unpacking the zip);
- per-request overhead: ``/health`` through the emulated front, p50, minus the same request
  sent straight to the instance (FC/AgentRun) or to the app on bare uvicorn (Lambda, which
  has no direct path), sequential requests on one keep-alive connection.

Baseline: the same app served by ``python -m uvicorn`` from a virtual environment of the same
Python version (its site-packages compiled by pip, as usual), process start to first 200.
Loopback only; prints JSON (and writes bench/results/emulate_overhead.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import ROOT, free_port

sys.path.insert(0, str(ROOT))

from agentpack.emulators.emulation import start

PROJECT = ROOT / "examples" / "quickstart"


def build(target: str, out: Path, bytecode: bool) -> Path:
    command = [
        sys.executable,
        "-m",
        "agentpack",
        "build",
        str(PROJECT),
        "--target",
        target,
        "--out",
        str(out),
        "--json",
    ]
    if not bytecode:
        command.append("--no-bytecode")
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return Path(json.loads(done.stdout.strip().splitlines()[-1])["artifact"])


def first_ok(url: str, started: float) -> float:
    with httpx.Client(timeout=5) as client:
        while True:
            try:
                if client.get(f"{url}/health").status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.002)


def p50_ms(url: str, requests: int) -> float:
    times = []
    with httpx.Client(timeout=10) as client:
        for _ in range(20):
            client.get(f"{url}/health")
        for _ in range(requests):
            started = time.perf_counter()
            client.get(f"{url}/health")
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def bare_uvicorn(python_venv: str) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [python_venv, "-m", "uvicorn", "app:app", "--port", str(port), "--log-level", "warning"],
        cwd=PROJECT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    return process, url, first_ok(url, started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--targets", default="fc,agentrun,lambda")
    parser.add_argument(
        "--venv-python",
        default=os.environ.get("AGENTPACK_BENCH_VENV_PYTHON"),
        help="the python of a Python 3.12 venv with agentpack installed, for the bare-uvicorn baseline "
        "(default: $AGENTPACK_BENCH_VENV_PYTHON)",
    )
    args = parser.parse_args()
    if not args.venv_python:
        parser.error(
            "pass --venv-python (or set AGENTPACK_BENCH_VENV_PYTHON): the python of a Python 3.12 virtual "
            "environment with agentpack installed (python3.12 -m venv V && V/bin/pip install -e .)"
        )
    results: dict = {"python": "3.12", "runs": args.runs, "requests": args.requests, "targets": {}}
    baseline_starts, baseline_p50 = [], []
    with tempfile.TemporaryDirectory(prefix="agentpack-bench-") as scratch:
        for target in args.targets.split(","):
            artifacts = {
                variant: build(target, Path(scratch) / f"{target}-{variant}", variant == "pyc")
                for variant in ("pyc", "sources")
            }
            row: dict = {}
            for variant, artifact in artifacts.items():
                colds, totals, overheads = [], [], []
                for _ in range(args.runs):
                    marks: dict[str, float] = {}
                    started = time.perf_counter()
                    emulation = start(
                        artifact,
                        target,
                        port=0,
                        log=lambda line: None,
                        progress=lambda step, _: marks.setdefault(step, time.perf_counter()),
                    )
                    try:
                        totals.append(first_ok(emulation.url, started))
                        colds.append(totals[-1] - (marks["start"] - started))
                        through = p50_ms(emulation.url, args.requests)
                        if target == "lambda":
                            process, url, cold = bare_uvicorn(args.venv_python)
                            try:
                                direct = p50_ms(url, args.requests)
                            finally:
                                process.terminate()
                                process.wait(timeout=20)
                        else:
                            direct = p50_ms(f"http://127.0.0.1:{emulation.server.instances[0].port}", args.requests)
                        overheads.append(through - direct)
                    finally:
                        emulation.stop()
                row[variant] = {
                    "cold_start_ms_median": round(statistics.median(colds) * 1000, 1),
                    "cold_start_ms_min": round(min(colds) * 1000, 1),
                    "emulate_call_to_first_200_ms_median": round(statistics.median(totals) * 1000, 1),
                    "per_request_overhead_ms_p50": round(statistics.median(overheads), 3),
                }
            results["targets"][target] = row
        for _ in range(args.runs):
            process, url, cold = bare_uvicorn(args.venv_python)
            try:
                baseline_starts.append(cold)
                baseline_p50.append(p50_ms(url, args.requests))
            finally:
                process.terminate()
                process.wait(timeout=20)
    results["bare_uvicorn_from_a_venv"] = {
        "cold_start_ms_median": round(statistics.median(baseline_starts) * 1000, 1),
        "health_p50_ms": round(statistics.median(baseline_p50), 3),
    }
    text = json.dumps(results, indent=2)
    print(text)
    (ROOT / "bench" / "results" / "emulate_overhead.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
