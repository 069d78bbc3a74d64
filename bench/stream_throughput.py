"""50 concurrent 100-chunk streams: agentpack's /process vs a raw StreamingResponse, same run.

    python bench/stream_throughput.py [--concurrency 50] [--rounds 5] [--paced]

The client runs in this process, each server in its own; a round sends ``concurrency``
streams at once and waits for all of them to end.  Figures are streams/s and chunks/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

import httpx

from common import start_server, stop_server, summary

BODY = {"input": [{"role": "user", "content": [{"type": "text", "text": "go"}]}]}


async def one_stream(client: httpx.AsyncClient, url: str) -> int:
    chunks = 0
    async with client.stream("POST", url, json=BODY) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                chunks += 1
    return chunks


async def rounds(url: str, concurrency: int, count: int) -> list[float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await asyncio.gather(*(one_stream(client, url) for _ in range(concurrency)))  # warm-up
        durations = []
        for _ in range(count):
            started = time.perf_counter()
            counts = await asyncio.gather(*(one_stream(client, url) for _ in range(concurrency)))
            durations.append(time.perf_counter() - started)
            assert min(counts) >= 100, counts
        return durations


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--paced", action="store_true", help="yield to the event loop between chunks (both apps)")
    args = parser.parse_args()
    if args.paced:
        os.environ["PACED"] = "1"
    results = {}
    for kind, path in (("fastapi", "/raw"), ("agentpack", "/process"), ("fastapi-again", "/raw")):
        process, url, _ = start_server(kind.split("-")[0])
        try:
            durations = asyncio.run(rounds(url + path, args.concurrency, args.rounds))
        finally:
            stop_server(process)
        stats = summary(durations)
        results[kind] = {"round_seconds": stats, "streams_per_second": args.concurrency / stats["median"]}
    baseline = (results["fastapi"]["streams_per_second"] + results["fastapi-again"]["streams_per_second"]) / 2
    output = {
        "python": sys.version.split()[0],
        "concurrency": args.concurrency,
        "chunks_per_stream": 100,
        "paced": args.paced,
        "results": results,
        "agentpack / raw StreamingResponse": results["agentpack"]["streams_per_second"] / baseline,
    }
    print(json.dumps(output, indent=2))


if __name__ == "__main__":
    main()
