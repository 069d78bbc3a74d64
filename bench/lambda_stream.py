"""Lambda under the emulator: first-event latency streaming vs buffered, and per-request overhead.

    python bench/lambda_stream.py [--runs 30] [--requests 300] [--python 3.12]

One agent app (a ``framework="text"`` handler yielding 20 tokens 25 ms apart, ~0.5 s per
reply) is built twice for the lambda target — buffered and ``streaming = true`` — unpacked,
and served by ``LambdaEmulator`` (real awslambdaric for buffered, agentpack's Runtime API
loop for streaming).  Baseline: the same unpacked artifact on bare uvicorn
(``python -m agentpack.serve``) with the same interpreter, in the same run.

* first event: request sent → first ``data:`` line read, per mode (and → last line);
* overhead: ``GET /health`` one after another on a kept-alive connection, p50/p90 per path;
  the emulated path's overhead is its p50 minus uvicorn's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx
from common import HERE, ROOT, answers, free_port, summary, wait

sys.path.insert(0, str(ROOT))

from agentpack.builders.build import build
from agentpack.builders.interpreters import find_interpreter
from agentpack.emulators.aws_lambda import LambdaEmulator

APP = """
import asyncio
from agentpack import AgentApp

app = AgentApp(app_name="bench")


@app.query(framework="text")
async def answer(self, msgs, request, **kwargs):
    for _ in range(20):
        await asyncio.sleep(0.025)
        yield "token "
"""
BODY = {"input": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}


def make_artifact(work: Path, python: str, streaming: bool) -> Path:
    project = work / ("stream" if streaming else "buffered")
    project.mkdir()
    (project / "app.py").write_text(APP)
    (project / "requirements.txt").write_text("agentpack\n")
    settings = "streaming = true\n" if streaming else ""
    (project / "agentpack.toml").write_text(
        f'app = "app.py:app"\nname = "bench"\npython = "{python}"\n\n[targets.lambda]\n{settings}'
    )
    result = build(project, "lambda")
    code = work / f"code-{project.name}"
    with zipfile.ZipFile(result.artifact) as archive:
        for info in archive.infolist():
            archive.extract(info, code)
            if info.external_attr >> 16:
                os.chmod(code / info.filename, info.external_attr >> 16)
    return code


def first_and_last(client: httpx.Client, url: str) -> tuple[float, float]:
    started = time.perf_counter()
    first = last = 0.0
    with client.stream("POST", f"{url}/process", json=BODY) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                last = time.perf_counter() - started
                first = first or last
    return first, last


def health_latencies(client: httpx.Client, url: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.get(f"{url}/health")
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30, help="/process requests per mode")
    parser.add_argument("--requests", type=int, default=300, help="/health requests per path per block (3 blocks)")
    parser.add_argument("--python", default="3.12")
    args = parser.parse_args()
    interpreter = find_interpreter(args.python)
    if interpreter is None:
        raise SystemExit(f"python{args.python} is not installed")

    work = Path(tempfile.mkdtemp(prefix="agentpack-bench-lambda-"))
    emulators: list[LambdaEmulator] = []
    uvicorn_process = None
    try:
        buffered_code = make_artifact(work, args.python, False)
        stream_code = make_artifact(work, args.python, True)
        quiet = lambda line: None  # noqa: E731
        buffered = LambdaEmulator(buffered_code, interpreter, streaming=False, timeout=60, log=quiet).start()
        emulators.append(buffered)
        streaming = LambdaEmulator(stream_code, interpreter, streaming=True, timeout=60, log=quiet).start()
        emulators.append(streaming)
        port = free_port()
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(buffered_code)}
        uvicorn_process = subprocess.Popen(
            [
                interpreter,
                "-m",
                "agentpack.serve",
                "--app",
                "app.py:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            cwd=buffered_code,
            env=env,
        )
        direct = f"http://127.0.0.1:{port}"
        wait(lambda: answers(f"{direct}/health"), 60, "uvicorn did not answer")

        paths = {
            "uvicorn (same artifact)": direct,
            "lambda buffered (awslambdaric)": buffered.url,
            "lambda streaming (agentpack loop)": streaming.url,
        }
        clients = {name: httpx.Client(timeout=60) for name in paths}
        for name, url in paths.items():  # warm-up
            health_latencies(clients[name], url, 20)
            first_and_last(clients[name], url)

        firsts: dict[str, list[float]] = {name: [] for name in paths}
        lasts: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.runs):  # interleaved, so every path sees the same machine
            for name, url in paths.items():
                first, last = first_and_last(clients[name], url)
                firsts[name].append(first)
                lasts[name].append(last)
        health: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(3):
            for name, url in paths.items():
                health[name] += health_latencies(clients[name], url, args.requests)

        ms = lambda values: {k: round(v * 1000, 2) for k, v in summary(values).items()}  # noqa: E731
        base = summary(health["uvicorn (same artifact)"])["median"]
        result = {
            "python": args.python,
            "machine": f"{os.cpu_count()} cores",
            "runs": args.runs,
            "health_requests_per_path": 3 * args.requests,
            "handler": "20 tokens, 25 ms apart",
            "first_event_ms": {name: ms(values) for name, values in firsts.items()},
            "last_event_ms": {name: ms(values) for name, values in lasts.items()},
            "health_ms": {name: ms(values) for name, values in health.items()},
            "overhead_p50_ms_vs_uvicorn": {
                name: round((summary(values)["median"] - base) * 1000, 2)
                for name, values in health.items()
                if not name.startswith("uvicorn")
            },
            "init_seconds": {
                "buffered": buffered.describe()["environments"][0]["init_seconds"],
                "streaming": streaming.describe()["environments"][0]["init_seconds"],
            },
        }
        for client in clients.values():
            client.close()
    finally:
        for emulator in emulators:
            emulator.stop()
        if uvicorn_process is not None:
            uvicorn_process.terminate()
            uvicorn_process.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(result, indent=2)
    (HERE / "results" / "lambda_stream.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
