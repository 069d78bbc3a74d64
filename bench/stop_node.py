"""The agent the stop-latency benchmark runs on each node: one delta, then waits to be stopped."""

import asyncio
import os

from agentpack import AgentApp

app = AgentApp(app_name="stop-bench", interrupt_redis_url=os.environ["AGENTPACK_BENCH_REDIS"])


@app.query(framework="text")
async def handler(msgs):
    yield "working "
    await asyncio.Event().wait()
