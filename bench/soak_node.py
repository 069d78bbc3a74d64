"""The agent the soak benchmark runs on each node: streams ``chunks`` deltas, ``pause`` seconds apart."""

import asyncio
import os

from agentpack import AgentApp

app = AgentApp(
    app_name="soak",
    interrupt_redis_url=os.environ["AGENTPACK_BENCH_REDIS"],
    session_lease_seconds=float(os.environ.get("AGENTPACK_BENCH_LEASE", "3")),
)


@app.query(framework="text")
async def handler(msgs, request):
    pause = float(getattr(request, "pause", 0.02))
    for i in range(int(getattr(request, "chunks", 20))):
        yield f"tick {i} "
        await asyncio.sleep(pause)


@app.get("/debug/tasks")
async def tasks():
    """How many asyncio tasks are alive besides the one answering this request."""
    return {"tasks": len(asyncio.all_tasks()) - 1}
