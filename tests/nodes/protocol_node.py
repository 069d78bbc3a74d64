"""An agent whose one handler produces every kind of output the protocols map — reasoning, a
tool call, its result, streamed text, usage — served in-process by the protocol tests
(:func:`make_app`) and as a separate node process (``agentpack run tests/nodes/protocol_node.py``,
configured by AGENTPACK_TEST_REDIS and AGENTPACK_TEST_A2A_TIMEOUT).

The user's last message steers it:

- ``hang``: after the first text delta, wait until the run is stopped;
- ``fail``: raise after the first text delta;
- ``slow``: 0.3 s between text deltas (to see them arrive one by one);
- ``session``: answer ``<session_id>|<user_id>`` (what the run was given);
- ``count N``: answer N text deltas and nothing else (for benchmarks);
- anything else: the full show, ending "Hello there!".

How each run ended is kept in ``ENDINGS`` (and in Redis as ``ending:<session>`` on a node).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Optional

from agentpack import AgentApp, Msg

#: session id -> how its last run's handler ended ("done", "cancelled", "failed")
ENDINGS: dict[str, str] = {}
ANSWER = ["Hello", " there", "!"]


async def _note(app: AgentApp, session: str, ending: str) -> None:
    ENDINGS[session] = ending
    redis = getattr(app.state, "redis", None)
    if redis is not None:
        await redis.set(f"ending:{session}", ending, ex=600)


def make_app(**kwargs: Any) -> AgentApp:
    app = AgentApp(app_name="Probe", app_description="an agent that shows every kind of output", **kwargs)

    @app.query(framework="agentscope")
    async def handler(self, msgs, request, **_: Any):
        command = (request.input[-1].text() if request.input else "").strip()
        session = request.session_id
        if command.startswith("count "):
            text = Msg(name="probe", role="assistant", content="")
            for i in range(int(command.split()[1])):
                text.content += "x"
                yield text, False
            yield text, True
            return
        if command == "session":
            yield Msg(name="probe", role="assistant", content=f"{request.session_id}|{request.user_id}"), True
            return
        yield Msg(name="probe", role="assistant", content=[{"type": "thinking", "thinking": "The user greets me; I add first."}]), True
        yield Msg(name="probe", role="assistant", content=[{"type": "tool_use", "id": "call_1", "name": "add", "input": {"a": 1, "b": 2}}]), True
        yield Msg(name="probe", role="system", content=[{"type": "tool_result", "id": "call_1", "name": "add", "output": "3"}]), True
        text = Msg(name="probe", role="assistant", content="", usage={"input_tokens": 7, "output_tokens": 3})
        try:
            for i, piece in enumerate(ANSWER):
                text.content += piece
                yield text, i == len(ANSWER) - 1
                if command == "fail":
                    raise RuntimeError("the handler failed on purpose")
                if command == "hang":
                    await asyncio.Event().wait()
                if command == "slow":
                    await asyncio.sleep(0.3)
        except asyncio.CancelledError:
            await _note(app, session, "cancelled")
            raise
        except RuntimeError:
            await _note(app, session, "failed")
            raise
        await _note(app, session, "done")

    return app


def _node_app() -> Optional[AgentApp]:
    redis_url = os.environ.get("AGENTPACK_TEST_REDIS")
    if not redis_url:
        return None
    from contextlib import asynccontextmanager

    import redis.asyncio as aioredis

    @asynccontextmanager
    async def lifespan(app: AgentApp):
        app.state.redis = aioredis.from_url(redis_url, decode_responses=True)
        try:
            yield
        finally:
            await app.state.redis.aclose()

    timeout = os.environ.get("AGENTPACK_TEST_A2A_TIMEOUT")
    config = {"task_timeout": int(timeout)} if timeout else None
    return make_app(interrupt_redis_url=redis_url, lifespan=lifespan, a2a_config=config)


app = _node_app()
