"""Issue 21's hot path: agentpack's ``/process`` against FastAPI hand-written to write the same
bytes, in one run — server CPU per stream with auth on, time to first event, and cold start.

    python bench/hot_path.py [--concurrency 50] [--rounds 30] [--first-event 300] [--cold-runs 15]

The two servers (``bench/apps.py hot-agentpack`` and ``hot-baseline``) each run in their own
process under the same uvicorn settings; the client is this process.

- Same bytes: before anything is measured, one stream from each server with the same request
  ids is compared byte for byte (the message id and the two timestamps, which each server
  makes itself, are masked: same length, different value) together with the response's
  headers; the run stops if they differ.  Every measured stream is then checked to have
  exactly that many bytes.
- Server CPU per stream: rounds of ``concurrency`` streams at once, alternating between the
  servers; the server process's CPU time (user + system, the kernel's per-process CPU clock,
  ns resolution) over the round / streams.  Both sides check the bearer key the client sends
  (agentpack: ``api_keys=[...]``; the baseline: one ``compare_digest`` of the header) and
  agentpack runs with every limit at its default.  The client drains raw bytes without
  parsing them, so it never holds a server back.
- Time to first event: one request at a time, alternating servers: request sent -> the first
  ``data:`` frame received; a second baseline server takes its turn too (a control).  Then the same again against a second pair of servers that time
  themselves (``apps.timed``, h11): the request's first bytes in -> the first frame handed to
  the connection, the server's own part without the client's.
- Cold start: the minimal apps of ``bench/cold_start.py`` (bare FastAPI with a validated POST
  and a StreamingResponse; an AgentApp with a ``@app.query`` handler), process exec -> first
  200 on ``/health``, interleaved runs, bytecode caches warm.  Each round starts the baseline
  twice (a control: two sets of starts of the same app differ by as much as the machine's
  noise) and reports each round's own ratio beside the ratio of the medians.

Writes ``bench/results/hot_path.json`` (``--out``) and prints it.  Not a test: no thresholds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import httpx
from apps import API_KEY
from common import HERE, cpu_seconds, start_server, stop_server, summary

BODY = {"input": [{"role": "user", "content": [{"type": "text", "text": "go"}]}]}
AUTH = {"Authorization": f"Bearer {API_KEY}"}
KINDS = ("hot-baseline", "hot-agentpack")
#: What each server makes up itself and may differ in value (never in length) between the two.
_OWN_VALUES = re.compile(rb'("msg_id":"|"id":")msg_[0-9a-f]{32}"|"(created_at|completed_at)":\d{10}')
_COMPARED_HEADERS = ("content-type", "cache-control", "x-accel-buffering", "x-agentpack-session-id")


def server_cpu(pid: int) -> float:
    """CPU seconds the server process has used (user + system), to the nanosecond: Linux's
    CPU-time clock of another process (``clock_getcpuclockid``'s id); /proc's 10 ms ticks else."""
    try:
        return time.clock_gettime((~pid << 3) | 2)
    except OSError:
        return cpu_seconds(pid)


def _masked(body: bytes) -> bytes:
    return _OWN_VALUES.sub(lambda m: b"<" + (m.group(1) or m.group(2) or b"") + b">", body)


async def same_bytes(client: httpx.AsyncClient, urls: dict[str, str]) -> dict[str, object]:
    """One stream from each server for the same request ids; raises unless they are the same bytes."""
    body = {**BODY, "id": "response_" + "0" * 32, "session_id": "5a3e" * 8}  # as long as a made-up one
    seen: dict[str, tuple[bytes, dict[str, str]]] = {}
    for kind, url in urls.items():
        response = await client.post(url, json=body, headers=AUTH)
        assert response.status_code == 200, (kind, response.status_code, response.text[:300])
        seen[kind] = response.content, {h: response.headers.get(h, "") for h in _COMPARED_HEADERS}
    (base_body, base_headers), (ours_body, our_headers) = seen[KINDS[0]], seen[KINDS[1]]
    if len(base_body) != len(ours_body) or _masked(base_body) != _masked(ours_body):
        mismatch = HERE / "results" / "hot_path_mismatch.txt"  # written once, on the way out
        mismatch.write_bytes(base_body + b"\n=====\n" + ours_body)
        raise SystemExit(
            "the baseline does not write agentpack's bytes; both bodies: bench/results/hot_path_mismatch.txt"
        )
    if base_headers != our_headers:
        raise SystemExit(f"the headers differ: {base_headers} vs {our_headers}")
    refused = {kind: (await client.post(url, json=BODY)).status_code for kind, url in urls.items()}
    if set(refused.values()) != {401}:
        raise SystemExit(f"both servers must refuse a request without the key: {refused}")
    return {
        "identical_bytes_but_own_ids_and_timestamps": True,
        "stream_bytes": len(ours_body),
        "events": ours_body.count(b"data: "),
        "headers_compared": list(_COMPARED_HEADERS),
    }


async def drained(client: httpx.AsyncClient, url: str) -> int:
    size = 0
    async with client.stream("POST", url, json=BODY, headers=AUTH) as response:
        assert response.status_code == 200, response.status_code
        async for chunk in response.aiter_raw():
            size += len(chunk)
    return size


async def cpu_rounds(
    client: httpx.AsyncClient, urls: dict[str, str], pids: dict[str, int], concurrency: int, rounds: int, size: int
) -> dict[str, list[float]]:
    """Per round: the server's CPU seconds / streams; rounds alternate between the servers."""
    cpu: dict[str, list[float]] = {kind: [] for kind in urls}
    for url in urls.values():  # warm-up: first-request costs (imports, caches) are not the hot path
        await asyncio.gather(*(drained(client, url) for _ in range(concurrency)))
    for index in range(rounds):
        order = list(urls.items()) if index % 2 == 0 else list(reversed(urls.items()))
        for kind, url in order:
            before = server_cpu(pids[kind])
            sizes = await asyncio.gather(*(drained(client, url) for _ in range(concurrency)))
            cpu[kind].append((server_cpu(pids[kind]) - before) / concurrency)
            assert set(sizes) == {size}, (kind, sorted(set(sizes)), size)
    return cpu


def fair_order(labels: list[str], index: int) -> list[str]:
    """Round ``index``'s order: each rotation of ``labels``, then its reverse, so that over
    ``2 * len(labels)`` rounds every server is as often first, middle and last, and as often
    right after itself, as every other.  (A server answers faster right after itself — ~15 % on
    this machine's first events — so an order that never lets one follow itself, such as always
    putting it in the middle, measures that instead of the server.)"""
    rotation = (index // 2) % len(labels)
    order = labels[rotation:] + labels[:rotation]
    return order if index % 2 == 0 else order[::-1]


async def first_events(client: httpx.AsyncClient, urls: dict[str, str], count: int) -> dict[str, list[float]]:
    """Request sent -> first ``data:`` frame received, one stream at a time, in turn."""
    times: dict[str, list[float]] = {kind: [] for kind in urls}
    for _ in range(10):  # warm the connections
        for url in urls.values():
            await drained(client, url)
    for index in range(count):
        for kind in fair_order(list(urls), index):
            url = urls[kind]
            started = time.perf_counter()
            first, seen = None, b""
            async with client.stream("POST", url, json=BODY, headers=AUTH) as response:
                async for chunk in response.aiter_raw():
                    if first is None:
                        seen += chunk
                        if b"data: " in seen:
                            first = time.perf_counter() - started
            assert first is not None, kind
            times[kind].append(first)
    return times


#: The cold starts of each round: the baseline, agentpack, and the baseline again — a control
#: that shows how far two sets of starts of the very same app differ on this machine.
COLD = {"fastapi": "fastapi", "agentpack": "agentpack", "fastapi (again)": "fastapi"}


def cold_starts(runs: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """exec -> first 200 on /health for the minimal apps, interleaved (first runs warm the caches):
    the wall-clock time, and the CPU time the server process had used by then (which other work
    on a shared machine stretches far less than the wall clock)."""
    wall: dict[str, list[float]] = {label: [] for label in COLD}
    cpu: dict[str, list[float]] = {label: [] for label in COLD}
    for kind in set(COLD.values()):
        stop_server(start_server(kind)[0])
    for index in range(runs):
        for label in fair_order(list(COLD), index):
            process, _, seconds = start_server(COLD[label])
            cpu[label].append(server_cpu(process.pid))
            stop_server(process)
            wall[label].append(seconds)
    return wall, cpu


def cold_ratios(times: dict[str, list[float]]) -> dict[str, float]:
    """agentpack over the baseline: of the medians, and the median of each round's own ratio
    (both started back to back, so a slower spell of the machine touches both); and the
    control's, the baseline's second set of starts over its first."""

    def paired(a: list[float], b: list[float]) -> float:
        return statistics.median(x / y for x, y in zip(a, b, strict=True))

    medians = {label: statistics.median(values) for label, values in times.items()}
    return {
        "ratio (medians)": round(medians["agentpack"] / medians["fastapi"], 3),
        "ratio (median of each round's)": round(paired(times["agentpack"], times["fastapi"]), 3),
        "control: bare FastAPI again / bare FastAPI (medians)": round(
            medians["fastapi (again)"] / medians["fastapi"], 3
        ),
        "control (median of each round's)": round(paired(times["fastapi (again)"], times["fastapi"]), 3),
    }


#: A second baseline server in the time-to-first-event rounds: a control, as for cold starts.
FIRST_EVENT_CONTROL = "hot-baseline (again)"


async def measure_streams(args: argparse.Namespace) -> dict[str, object]:
    servers = {kind: start_server(kind) for kind in KINDS}
    servers[FIRST_EVENT_CONTROL] = start_server(KINDS[0])
    try:
        every = {kind: f"{server[1]}/process" for kind, server in servers.items()}
        urls = {kind: every[kind] for kind in KINDS}
        pids = {kind: servers[kind][0].pid for kind in KINDS}
        # Idle connections are dropped after 2 s, before uvicorn's 5 s keep-alive closes them: a
        # request sent on a connection the server is closing just then fails (HTTP/1.1's race).
        limits = httpx.Limits(
            max_connections=args.concurrency, max_keepalive_connections=args.concurrency, keepalive_expiry=2.0
        )
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            check = await same_bytes(client, urls)
            cpu = await cpu_rounds(client, urls, pids, args.concurrency, args.rounds, int(check["stream_bytes"]))
            first = await first_events(client, every, args.first_event)
    finally:
        for process, _, _ in servers.values():
            stop_server(process)
    return {"same_bytes": check, "cpu": cpu, "first": first, "first_at_server": await first_frames_at_server(args)}


async def first_frames_at_server(args: argparse.Namespace) -> dict[str, list[float]]:
    """The same alternating requests to servers that time themselves (``apps.timed``): first
    bytes of the request in -> first ``data:`` frame handed to the connection, in the server."""
    servers = {kind: start_server(kind, {"BENCH_TIMED_FIRST_FRAME": "1"}) for kind in KINDS}
    try:
        async with httpx.AsyncClient(timeout=60) as client:
            await first_events(
                client, {kind: f"{server[1]}/process" for kind, server in servers.items()}, args.first_event
            )
            return {
                kind: (await client.get(f"{server[1]}/__first_frames")).json()[10:] for kind, server in servers.items()
            }
    finally:
        for process, _, _ in servers.values():
            stop_server(process)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--first-event", type=int, default=300, help="streams per server for time to first event")
    parser.add_argument("--cold-runs", type=int, default=15)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "hot_path.json")
    args = parser.parse_args()

    streams = asyncio.run(measure_streams(args))
    cold, cold_cpu = cold_starts(args.cold_runs)
    cpu, first = streams["cpu"], streams["first"]
    base, ours = KINDS

    def ms(values: list[float]) -> dict[str, float]:
        return {k: round(v * 1000, 3) for k, v in summary(values).items()}

    per_round_ratio = [a / b for a, b in zip(cpu[ours], cpu[base], strict=True)]
    cpu_ratio = sum(cpu[ours]) / sum(cpu[base])
    first_ratio = statistics.median(first[ours]) / statistics.median(first[base])
    at_server = streams["first_at_server"]
    at_server_ratio = statistics.median(at_server[ours]) / statistics.median(at_server[base])
    result = {
        "python": sys.version.split()[0],
        "machine": f"{os.cpu_count()} cores, {platform.machine()}",
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "same_bytes": streams["same_bytes"],
        "server_cpu_ms_per_stream": {
            "baseline (FastAPI, same bytes, bearer check)": ms(cpu[base])
            | {"mean": round(statistics.mean(cpu[base]) * 1000, 3)},
            "agentpack (api_keys, default limits)": ms(cpu[ours])
            | {"mean": round(statistics.mean(cpu[ours]) * 1000, 3)},
            "ratio (total CPU)": round(cpu_ratio, 3),
            "ratio per round, median": round(statistics.median(per_round_ratio), 3),
            "goal": "<= 1.1",
        },
        "first_event_ms": {
            "baseline": ms(first[base]),
            "agentpack": ms(first[ours]),
            "baseline again": ms(first[FIRST_EVENT_CONTROL]),
            "ratio (medians)": round(first_ratio, 3),
            "control: baseline again / baseline (medians)": round(
                statistics.median(first[FIRST_EVENT_CONTROL]) / statistics.median(first[base]), 3
            ),
            "goal": "<= 1.0",
        },
        "first_frame_at_server_ms (request in -> first frame out, in the server; h11)": {
            "baseline": ms(at_server[base]),
            "agentpack": ms(at_server[ours]),
            "ratio (medians)": round(at_server_ratio, 3),
        },
        "cold_start_ms": {
            "bare FastAPI": ms(cold["fastapi"]),
            "agentpack": ms(cold["agentpack"]),
            "bare FastAPI again": ms(cold["fastapi (again)"]),
            **cold_ratios(cold),
            "goal": "<= 1.05",
        },
        "cold_start_server_cpu_ms": {
            "bare FastAPI": ms(cold_cpu["fastapi"]),
            "agentpack": ms(cold_cpu["agentpack"]),
            "bare FastAPI again": ms(cold_cpu["fastapi (again)"]),
            **cold_ratios(cold_cpu),
        },
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
