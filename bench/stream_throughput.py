"""50 concurrent 100-chunk streams: agentpack's /process vs a raw StreamingResponse, same run.

    python bench/stream_throughput.py [--concurrency 50] [--rounds 5] [--paced]

The client runs in this process, each server in its own; a round sends ``concurrency``
streams at once and waits for all of them to end.  Rounds alternate between the two servers
so both see the same machine.  Two figures per server:

- wall-clock streams/s — what a client on this 2-core machine sees; the Python client parses
  every line and is itself a large share of the cost, so this understates the server;
- server CPU per stream (from /proc) — what one stream costs the server; its inverse is the
  server's capacity per core, the figure the 0.75× target is about.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

import httpx
from common import cpu_seconds, start_server, stop_server, summary

BODY = {"input": [{"role": "user", "content": [{"type": "text", "text": "go"}]}]}


async def one_stream(client: httpx.AsyncClient, url: str) -> int:
    chunks = 0
    async with client.stream("POST", url, json=BODY) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                chunks += 1
    return chunks


async def one_round(client: httpx.AsyncClient, url: str, concurrency: int) -> float:
    started = time.perf_counter()
    counts = await asyncio.gather(*(one_stream(client, url) for _ in range(concurrency)))
    assert min(counts) >= 100, counts
    return time.perf_counter() - started


async def interleaved(
    urls: dict[str, str], pids: dict[str, int], concurrency: int, count: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Alternate rounds between the servers so both see the same machine conditions."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    durations: dict[str, list[float]] = {kind: [] for kind in urls}
    cpu: dict[str, list[float]] = {kind: [] for kind in urls}
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        for url in urls.values():
            await one_round(client, url, concurrency)  # warm-up
        for index in range(count):
            order = list(urls.items()) if index % 2 == 0 else list(reversed(urls.items()))
            for kind, url in order:
                before = cpu_seconds(pids[kind])
                durations[kind].append(await one_round(client, url, concurrency))
                cpu[kind].append((cpu_seconds(pids[kind]) - before) / concurrency)
    return durations, cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--paced", action="store_true", help="yield to the event loop between chunks (both apps)")
    args = parser.parse_args()
    if args.paced:
        os.environ["PACED"] = "1"
    servers = {kind: start_server(kind) for kind in ("fastapi", "agentpack")}
    paths = {"fastapi": "/raw", "agentpack": "/process"}
    try:
        urls = {kind: server[1] + paths[kind] for kind, server in servers.items()}
        pids = {kind: server[0].pid for kind, server in servers.items()}
        durations, cpu = asyncio.run(interleaved(urls, pids, args.concurrency, args.rounds))
    finally:
        for process, _, _ in servers.values():
            stop_server(process)
    results = {}
    for kind, values in durations.items():
        stats = summary(values)
        cpu_per_stream = sum(cpu[kind]) / len(cpu[kind])
        results[kind] = {
            "round_seconds": stats,
            "streams_per_second": args.concurrency / stats["median"],
            "server_cpu_ms_per_stream": cpu_per_stream * 1000,
            "streams_per_server_cpu_second": 1 / cpu_per_stream,
        }
    output = {
        "python": sys.version.split()[0],
        "concurrency": args.concurrency,
        "chunks_per_stream": 100,
        "paced": args.paced,
        "rounds": args.rounds,
        "results": results,
        "agentpack / raw StreamingResponse (wall clock)": results["agentpack"]["streams_per_second"]
        / results["fastapi"]["streams_per_second"],
        "agentpack / raw StreamingResponse (server capacity)": results["agentpack"]["streams_per_server_cpu_second"]
        / results["fastapi"]["streams_per_server_cpu_second"],
    }
    print(json.dumps(output, indent=2))


if __name__ == "__main__":
    main()
