"""The app the emulation tests build and run: counts its start-ups, streams slowly, and shares
stops across instances through Redis when AGENTPACK_REDIS_URL is set."""

import asyncio
import os
from contextlib import asynccontextmanager

from agentpack import AgentApp

STARTS = {"count": 0}


@asynccontextmanager
async def lifespan(app):
    STARTS["count"] += 1
    yield


app = AgentApp(app_name="emulated", lifespan=lifespan)


@app.query(framework="text")
async def answer(msgs, request):
    pause = float(getattr(request, "pause", 0.05))
    for i in range(int(getattr(request, "chunks", 10))):
        yield f"word{i} "
        await asyncio.sleep(pause)


@app.endpoint("/whoami", methods=["GET"])
async def whoami():
    """Which process answered, how often its lifespan started, and what the platform told it."""
    from agentpack.adapters.http_function import current_invocation

    invocation = current_invocation()
    return {
        "pid": os.getpid(),
        "starts": STARTS["count"],
        "request_id": invocation.request_id if invocation else None,
        "has_credentials": bool(invocation and invocation.credentials),
        "env": {k: v for k, v in os.environ.items() if k.startswith(("FC_", "AGENTPACK_", "EMULATED_"))},
    }


@app.endpoint("/echo")
async def echo(text: str = "hello"):
    return {"echo": text}
