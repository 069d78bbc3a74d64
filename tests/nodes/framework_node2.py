"""An agno or Agent Framework agent served as a separate node process, for the cross-instance stop
tests of tests/test_framework_agno.py and tests/test_framework_ms_agent_framework.py.

Configured by environment:

- AGENTPACK_TEST_REDIS: the interrupt backend (and where the tool records what happened to it);
- AGENTPACK_TEST_FRAMEWORK: ``agno`` or ``ms_agent_framework``;
- AGENTPACK_TEST_OPENAI_URL: the base URL of the OpenAI chat stand-in the test runs
  (tests/standins/openai_chat.py), which the agent's model talks to.

The agent has one tool, ``slow_lookup``, which records ``tool:<session>`` = ``started`` in Redis and
then waits until it is cancelled, when it records ``cancelled`` and re-raises.
"""

from __future__ import annotations

import asyncio
import os
from contextlib import asynccontextmanager

import redis.asyncio as aioredis

from agentpack import AgentApp

REDIS_URL = os.environ["AGENTPACK_TEST_REDIS"]
FRAMEWORK = os.environ.get("AGENTPACK_TEST_FRAMEWORK", "agno")
OPENAI_URL = os.environ["AGENTPACK_TEST_OPENAI_URL"]
MODEL = "stand-in-model"


@asynccontextmanager
async def lifespan(app):
    app.state.redis = aioredis.from_url(REDIS_URL, decode_responses=True)
    try:
        yield
    finally:
        await app.state.redis.aclose()


app = AgentApp(app_name="framework-node", lifespan=lifespan, interrupt_redis_url=REDIS_URL,
               session_lease_seconds=float(os.environ.get("AGENTPACK_TEST_LEASE", "10")))


def lookup_tool(session: str):
    """The blocking tool, recording its fate under ``tool:<session>``."""

    async def slow_lookup(topic: str) -> str:
        """Look a topic up in the archive (slow)."""
        redis = app.state.redis
        await redis.set(f"tool:{session}", "started", ex=600)
        try:
            await asyncio.Event().wait()  # until the run is stopped
        except asyncio.CancelledError:
            await redis.set(f"tool:{session}", "cancelled", ex=600)
            raise
        return f"nothing about {topic}"

    return slow_lookup


if FRAMEWORK == "agno":

    @app.query(framework="agno")
    async def handler(self, msgs, request, **kwargs):
        from agno.agent import Agent
        from agno.models.openai import OpenAIChat

        agent = Agent(model=OpenAIChat(id=MODEL, base_url=OPENAI_URL, api_key="test-key"),
                      tools=[lookup_tool(request.session_id)], telemetry=False)
        async for event in agent.arun(input=msgs, stream=True, stream_events=True):
            yield event

elif FRAMEWORK == "ms_agent_framework":

    @app.query(framework="ms_agent_framework")
    async def handler(self, msgs, request, **kwargs):
        from agent_framework import Agent
        from agent_framework.openai import OpenAIChatCompletionClient

        client = OpenAIChatCompletionClient(model=MODEL, base_url=OPENAI_URL, api_key="test-key")
        agent = Agent(client=client, tools=[lookup_tool(request.session_id)])
        async for update in agent.run(msgs, stream=True):
            yield update

else:
    raise RuntimeError(f"AGENTPACK_TEST_FRAMEWORK must be agno or ms_agent_framework, not {FRAMEWORK!r}")
