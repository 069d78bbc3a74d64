"""An agent served as a separate "node" process by the interrupt tests.

Configured by environment: AGENTPACK_TEST_REDIS (interrupt backend URL) and
AGENTPACK_TEST_LEASE (lease seconds).  The request says how the handler behaves:
``chunks`` (how many deltas), ``hang`` (after the first delta, wait until cancelled),
``swallow`` (catch the cancel and keep going) and ``fail`` (raise after the first delta).
Every run records in Redis what its handler saw: ``cleanup:<session>`` = how it ended.
"""

import asyncio
import os
from contextlib import asynccontextmanager

import redis.asyncio as aioredis

from agentpack import AgentApp

REDIS_URL = os.environ["AGENTPACK_TEST_REDIS"]


@asynccontextmanager
async def lifespan(app):
    pool = aioredis.BlockingConnectionPool.from_url(REDIS_URL, decode_responses=True, max_connections=32)
    app.state.redis = aioredis.Redis(connection_pool=pool)
    try:
        yield
    finally:
        await app.state.redis.aclose()


app = AgentApp(
    app_name="node",
    lifespan=lifespan,
    interrupt_redis_url=REDIS_URL,
    session_lease_seconds=float(os.environ.get("AGENTPACK_TEST_LEASE", "10")),
    enable_stream_task=True,
)


@app.query(framework="text")
async def handler(self, msgs, request, **kwargs):
    redis = app.state.redis
    chunks = int(getattr(request, "chunks", 3))
    hang = bool(getattr(request, "hang", False))
    swallow = bool(getattr(request, "swallow", False))
    fail = bool(getattr(request, "fail", False))
    record = f"cleanup:{request.session_id}"
    for i in range(chunks):
        try:
            yield f"tick {i} "
            if fail:
                raise RuntimeError("the handler failed on purpose")
            if hang:
                await asyncio.Event().wait()  # until the run is stopped
            else:
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            await redis.set(record, "cancelled", ex=600)
            if not swallow:
                raise
            swallow = False  # swallow once, then behave
    await redis.set(record, "finished", ex=600)


@app.get("/debug/tasks")
async def tasks():
    """Asyncio tasks alive in this node besides the one answering this request."""
    current = asyncio.current_task()
    others = [t for t in asyncio.all_tasks() if t is not current]
    return {
        "tasks": sorted(f"{t.get_name()} {t.get_coro().__qualname__}" for t in others),
        "where": sorted(f"{t.get_name()}: {' <- '.join(f'{f.f_code.co_name}:{f.f_lineno}' for f in t.get_stack(limit=8))}" for t in others),
    }
