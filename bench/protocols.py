"""A2A, the OpenAI Responses API and AG-UI against ``/process``: one handler, one server, same run.

    python bench/protocols.py [--runs 200] [--burst 2000] [--burst-runs 30]

One ``AgentApp`` with one ``framework="text"`` handler, served by uvicorn in its own process
(the client runs in this one, on one kept-alive connection); every request opens a fresh
session (``/process`` without ``session_id``, Responses without ``conversation``, AG-UI with a
new ``threadId``, A2A without ``contextId``).  The handler reads the user's text: ``"hi"``
makes it yield two pieces at once, ``"burst K"`` makes it yield K pieces as fast as it can.
Per protocol:

1. time to first answer delta: request sent → the first frame carrying answer text parsed
   (``/process`` a content delta with text, Responses ``response.output_text.delta``, AG-UI
   ``TEXT_MESSAGE_CONTENT``, A2A an ``artifactUpdate`` of the ``answer`` artifact with text);
   median and p90 over ``--runs`` requests, and the server CPU each request costs;
2. answer deltas per second at the client: K / (request sent → last answer delta parsed),
   median over ``--burst-runs`` streams.  The client parses every frame's JSON, as a real
   client does, so on this 2-core machine it shares the cores with the server and is part
   of the figure;
3. server CPU per K-delta stream, with a client that reads and drops the bytes (so it never
   makes the server wait, which would batch the server's socket writes and flatter whichever
   protocol has the slowest client): the protocol's cost to the server alone.

Server CPU is read from the kernel's CPU-time clock of the server process (ns resolution).
Runs rotate the order of the protocols (run i starts with protocol i mod 4), so each sees the
same machine state; every figure is also given relative to ``/process`` from the same run.
The goal is "each within 10 % of /process": first delta at most 1.10x, deltas/s at least 0.90x.
Prints the figures and writes them to bench/results/protocols.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from common import bench_env, cpu_seconds, free_port, stop_server, summary

HERE = Path(__file__).resolve().parent
CHUNK = "token "
PROTOCOLS = ("process", "responses", "agui", "a2a")


# -- the server ----------------------------------------------------------------------------------
def make_app():
    from agentpack import AgentApp

    app = AgentApp(app_name="bench")

    @app.query(framework="text")
    async def handler(msgs):
        text = ""
        for item in msgs[-1].content or []:
            text = getattr(item, "text", None) or text
        if text.startswith("burst "):
            for _ in range(int(text.split()[1])):
                yield CHUNK
        else:
            yield "hello"
            yield " world"

    return app


def serve(port: int) -> None:
    import uvicorn

    uvicorn.run(make_app(), host="127.0.0.1", port=port, log_level="error", access_log=False)


def start() -> tuple[subprocess.Popen, str]:
    """This file as the server (``--serve PORT``), answering ``/health`` before this returns."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve", str(port)], env=bench_env())
    deadline = time.monotonic() + 60
    with httpx.Client(timeout=1) as client:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}")
            try:
                if client.get(f"{url}/health").status_code == 200:
                    return process, url
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("server did not answer within 60s")
            time.sleep(0.01)


# -- the four requests, and what counts as an answer delta in each ----------------------------
def request(protocol: str, text: str) -> tuple[str, dict[str, Any], dict[str, str]]:
    """(path, body, headers) of one request in a fresh session."""
    if protocol == "process":
        return "/process", {"input": [{"role": "user", "content": [{"type": "text", "text": text}]}]}, {}
    if protocol == "responses":
        return "/compatible-mode/v1/responses", {"model": "x", "input": text, "stream": True}, {}
    if protocol == "agui":
        body = {
            "threadId": uuid.uuid4().hex,
            "runId": uuid.uuid4().hex,
            "messages": [{"id": "1", "role": "user", "content": text}],
        }
        return "/ag-ui", body, {}
    message = {"messageId": uuid.uuid4().hex, "role": "ROLE_USER", "parts": [{"text": text}]}
    body = {"jsonrpc": "2.0", "id": 1, "method": "SendStreamingMessage", "params": {"message": message}}
    return "/a2a", body, {"A2A-Version": "1.0"}


def _process_delta(event: dict[str, Any]) -> bool:
    return event.get("object") == "content" and event.get("delta") is True and bool(event.get("text"))


def _responses_delta(event: dict[str, Any]) -> bool:
    return event.get("type") == "response.output_text.delta" and bool(event.get("delta"))


def _agui_delta(event: dict[str, Any]) -> bool:
    return event.get("type") == "TEXT_MESSAGE_CONTENT" and bool(event.get("delta"))


def _a2a_delta(event: dict[str, Any]) -> bool:
    update = (event.get("result") or {}).get("artifactUpdate")
    if not update:
        return False
    artifact = update.get("artifact") or {}
    return artifact.get("name") == "answer" and any(part.get("text") for part in artifact.get("parts") or [])


IS_DELTA: dict[str, Callable[[dict[str, Any]], bool]] = {
    "process": _process_delta,
    "responses": _responses_delta,
    "agui": _agui_delta,
    "a2a": _a2a_delta,
}


async def one_stream(client: httpx.AsyncClient, url: str, protocol: str, text: str) -> tuple[float, float, int]:
    """(seconds to the first answer delta, seconds to the last, answer deltas) of one request.

    Every frame's ``data:`` JSON is parsed (``event:`` lines are read and skipped); the stream
    is read to its end."""
    path, body, headers = request(protocol, text)
    is_delta = IS_DELTA[protocol]
    first = last = 0.0
    deltas = 0
    pending = tail = b""
    started = time.perf_counter()
    async with client.stream("POST", url + path, json=body, headers=headers) as response:
        assert response.status_code == 200, (protocol, response.status_code)
        async for chunk in response.aiter_bytes():
            # SSE lines end in \n, \r\n (sse-starlette, under A2A) or \r: made \n, a \r split
            # between two chunks kept for the next one
            chunk = tail + chunk
            tail = b"\r" if chunk.endswith(b"\r") else b""
            pending += (chunk[:-1] if tail else chunk).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            *frames, pending = pending.split(b"\n\n")
            for frame in frames:
                for line in frame.split(b"\n"):
                    if line.startswith(b"data:") and is_delta(json.loads(line[5:])):
                        last = time.perf_counter() - started
                        if deltas == 0:
                            first = last
                        deltas += 1
    return first, last, deltas


async def drain(client: httpx.AsyncClient, url: str, protocol: str, text: str) -> tuple[float, float, int]:
    """(0, seconds to the end of the body, bytes) of one request whose body is read and dropped:
    a client that never makes the server wait, so the server's cost per event is the same
    for every protocol (each event its own socket write; a client slower than the server
    lets writes pile up in the transport's buffer and go out in fewer, larger sends)."""
    path, body, headers = request(protocol, text)
    size = 0
    started = time.perf_counter()
    async with client.stream("POST", url + path, json=body, headers=headers) as response:
        assert response.status_code == 200, (protocol, response.status_code)
        async for chunk in response.aiter_raw():
            size += len(chunk)
    return 0.0, time.perf_counter() - started, size


# -- measuring -----------------------------------------------------------------------------------
def server_cpu(pid: int) -> float:
    """CPU seconds the server process has used, to the nanosecond: Linux's CPU-time clock of
    another process (clock id ``~pid << 3 | 2``, what ``clock_getcpuclockid`` returns).  The
    10 ms ticks of /proc (``common.cpu_seconds``) are too coarse for one short request; they
    are the fallback."""
    try:
        return time.clock_gettime((~pid << 3) | 2)
    except OSError:
        return cpu_seconds(pid)


async def measured(
    client: httpx.AsyncClient, url: str, pid: int, protocol: str, text: str, read: Callable[..., Any] = one_stream
) -> tuple[float, float, int, float, float]:
    """``read`` (:func:`one_stream` or :func:`drain`) plus the server's and this client's CPU
    seconds for it (a short pause after the stream lets the server finish the request's
    clean-up inside the window)."""
    server, client_cpu = server_cpu(pid), time.process_time()
    first, last, deltas = await read(client, url, protocol, text)
    client_cpu = time.process_time() - client_cpu
    await asyncio.sleep(0.005)
    return first, last, deltas, server_cpu(pid) - server, client_cpu


def rotated(index: int) -> list[str]:
    shift = index % len(PROTOCOLS)
    return list(PROTOCOLS[shift:] + PROTOCOLS[:shift])


async def measure(url: str, pid: int, runs: int, burst: int, burst_runs: int) -> dict[str, dict[str, list[float]]]:
    data: dict[str, dict[str, list[float]]] = {
        p: {
            key: []
            for key in (
                "first",
                "short_cpu",
                "burst_first",
                "rate",
                "burst_seconds",
                "client_cpu",
                "drained_seconds",
                "drained_cpu",
                "bytes",
            )
        }
        for p in PROTOCOLS
    }
    async with httpx.AsyncClient(timeout=120) as client:
        for protocol in PROTOCOLS:  # warm-up: imports on first request (A2A's SDK), caches, the connection
            for _ in range(3):
                await one_stream(client, url, protocol, "hi")
            await one_stream(client, url, protocol, f"burst {burst}")
        for index in range(runs):
            for protocol in rotated(index):
                first, _, deltas, cpu, _ = await measured(client, url, pid, protocol, "hi")
                assert deltas == 2, (protocol, deltas)
                data[protocol]["short_cpu"].append(cpu)
                data[protocol]["first"].append(first)
        for index in range(burst_runs):
            for protocol in rotated(index):
                first, last, deltas, _, client_cpu = await measured(client, url, pid, protocol, f"burst {burst}")
                assert deltas == burst, (protocol, deltas)
                data[protocol]["burst_first"].append(first)
                data[protocol]["client_cpu"].append(client_cpu)
                data[protocol]["burst_seconds"].append(last)
                data[protocol]["rate"].append(deltas / last)
        for index in range(burst_runs):
            for protocol in rotated(index):
                _, end, size, cpu, _ = await measured(client, url, pid, protocol, f"burst {burst}", drain)
                data[protocol]["drained_cpu"].append(cpu)
                data[protocol]["drained_seconds"].append(end)
                data[protocol]["bytes"].append(size)
    return data


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("uvicorn", "h11", "starlette", "fastapi", "a2a-sdk", "sse-starlette", "protobuf", "ag-ui-protocol"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200, help="short requests per protocol (time to first delta)")
    parser.add_argument("--burst", type=int, default=2000, help="text deltas per burst stream")
    parser.add_argument("--burst-runs", type=int, default=30, help="burst streams per protocol")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    process, url = start()
    try:
        data = asyncio.run(measure(url, process.pid, args.runs, args.burst, args.burst_runs))
    finally:
        stop_server(process)

    ms = lambda values: {k: round(v * 1000, 3) for k, v in summary(values).items()}  # noqa: E731
    results: dict[str, Any] = {}
    for protocol, values in data.items():
        results[protocol] = {
            "first_delta_ms": ms(values["first"]),
            "server_cpu_ms_per_short_request": ms(values["short_cpu"]),
            "deltas_per_second": {k: round(v) for k, v in summary(values["rate"]).items()},
            "burst_stream_ms": ms(values["burst_seconds"]),
            "burst_first_delta_ms": ms(values["burst_first"]),
            "client_cpu_ms_per_burst_stream": ms(values["client_cpu"]),
            "burst_bytes": int(statistics.median(values["bytes"])),
            "drained_burst_stream_ms": ms(values["drained_seconds"]),
            "server_cpu_ms_per_burst_stream": ms(values["drained_cpu"]),
            "server_deltas_per_cpu_second": round(args.burst / statistics.median(values["drained_cpu"])),
        }
    base = results["process"]
    ratios: dict[str, Any] = {}
    for protocol in PROTOCOLS[1:]:
        row = results[protocol]
        first_ratio = row["first_delta_ms"]["median"] / base["first_delta_ms"]["median"]
        rate_ratio = row["deltas_per_second"]["median"] / base["deltas_per_second"]["median"]
        ratios[protocol] = {
            "first_delta_median / process": round(first_ratio, 3),
            "first_delta_p90 / process": round(row["first_delta_ms"]["p90"] / base["first_delta_ms"]["p90"], 3),
            "deltas_per_second / process": round(rate_ratio, 3),
            "server_cpu_per_short_request / process": round(
                row["server_cpu_ms_per_short_request"]["median"] / base["server_cpu_ms_per_short_request"]["median"], 3
            ),
            "server_cpu_per_burst_stream / process (drained client)": round(
                row["server_cpu_ms_per_burst_stream"]["median"] / base["server_cpu_ms_per_burst_stream"]["median"], 3
            ),
            # the goal: "each within 10 % of /process" (first delta no more than 1.10x, rate no less than 0.90x)
            "within_10_percent": {"first_delta": first_ratio <= 1.10, "deltas_per_second": rate_ratio >= 0.90},
        }
    output = {
        "python": sys.version.split()[0],
        "machine": f"{os.cpu_count()} cores",
        "versions": versions(),
        "runs": args.runs,
        "burst_deltas": args.burst,
        "burst_runs": args.burst_runs,
        "results": results,
        "against_process": ratios,
    }
    text = json.dumps(output, indent=2)
    (HERE / "results" / "protocols.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
