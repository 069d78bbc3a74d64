"""A LangGraph or AutoGen agent whose one tool blocks until it is cancelled, served as a separate
node process (``agentpack run tests/nodes/framework_node.py``) for the cross-instance stop tests,
and the scripted models the framework tests share.

Configured by AGENTPACK_TEST_REDIS (interrupt backend and the record), AGENTPACK_TEST_FRAMEWORK
(``langgraph`` or ``autogen``) and AGENTPACK_TEST_STOP_GRACE (sets
``agentpack.frameworks.autogen.STOP_GRACE``).  The LangGraph agent streams a little text, then
calls ``wait_for_ever``; the AutoGen agent calls it at once, inside a ``RoundRobinGroupChat`` when
the user's message is ``team``.  The tool records in Redis, under ``tool:<session>``, ``started``
when it begins and ``cancelled`` when the cancellation reaches it.
"""

from __future__ import annotations

import asyncio
import json
import os
from contextlib import asynccontextmanager
from typing import Any, Iterator, Optional

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from pydantic import Field

from agentpack import AgentApp


class ScriptedChatModel(GenericFakeChatModel):
    """LangChain's GenericFakeChatModel, able to drive a ReAct agent: ``bind_tools`` (which the fake
    models lack) and streaming that also sends what the scripted ``AIMessage`` holds besides text —
    ``additional_kwargs["reasoning_content"]`` as reasoning chunks, each tool call as
    ``tool_call_chunks`` (arguments cut in two), ``usage_metadata`` on the last chunk.  Every call's
    input is kept in ``seen``."""

    seen: list = Field(default_factory=list)

    def bind_tools(self, tools: Any, **kwargs: Any) -> "ScriptedChatModel":
        return self

    def _stream(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        self.seen.append(list(messages))
        message = next(self.messages)
        message = AIMessage(content=message) if isinstance(message, str) else message
        chunks: list[AIMessageChunk] = []
        reasoning = message.additional_kwargs.get("reasoning_content")
        for word in reasoning.split(" ") if reasoning else []:
            chunks.append(AIMessageChunk(content="", additional_kwargs={"reasoning_content": word + " "}))
        words = message.content.split(" ") if message.content else []
        for i, word in enumerate(words):
            chunks.append(AIMessageChunk(content=word + (" " if i < len(words) - 1 else "")))
        for index, call in enumerate(message.tool_calls):
            args = json.dumps(call["args"])
            cut = len(args) // 2
            chunks.append(AIMessageChunk(content="", tool_call_chunks=[{"name": call["name"], "id": call["id"], "args": args[:cut], "index": index}]))
            chunks.append(AIMessageChunk(content="", tool_call_chunks=[{"name": None, "id": None, "args": args[cut:], "index": index}]))
        chunks.append(AIMessageChunk(content="", usage_metadata=message.usage_metadata, chunk_position="last"))
        for piece in chunks:
            chunk = ChatGenerationChunk(message=piece)
            if run_manager:
                run_manager.on_llm_new_token(piece.content if isinstance(piece.content, str) else "", chunk=chunk)
            yield chunk


def autogen_model_info() -> Any:
    from autogen_core.models import ModelFamily, ModelInfo

    return ModelInfo(vision=True, function_calling=True, json_output=False, family=ModelFamily.UNKNOWN, structured_output=False)


def blocking_tool(app: AgentApp, session: str) -> Any:
    """``wait_for_ever(city)``: records that it started, then waits until it is cancelled."""
    redis = app.state.redis

    async def wait_for_ever(city: str) -> str:
        """Look the city up (never returns)."""
        await redis.set(f"tool:{session}", "started", ex=600)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await redis.set(f"tool:{session}", "cancelled", ex=600)
            raise
        return city

    return wait_for_ever


def _langgraph_app(app: AgentApp) -> None:
    import warnings

    from langchain_core.tools import tool

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # create_react_agent moved to langchain (not installed here)
        from langgraph.prebuilt import create_react_agent

    @app.query(framework="langgraph")
    async def handler(self, msgs, request, **kwargs):
        call = {"name": "wait_for_ever", "args": {"city": "Paris"}, "id": "call_1"}
        model = ScriptedChatModel(messages=iter([AIMessage(content="Looking it up.", tool_calls=[call])]))
        agent = create_react_agent(model, [tool(blocking_tool(app, request.session_id))])
        async for item in agent.astream({"messages": msgs}, stream_mode="messages"):
            yield item


def _autogen_app(app: AgentApp) -> None:
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.teams import RoundRobinGroupChat
    from autogen_core import FunctionCall
    from autogen_core.models import CreateResult, RequestUsage
    from autogen_ext.models.replay import ReplayChatCompletionClient

    from agentpack.frameworks.autogen import cancellation_token

    @app.query(framework="autogen")
    async def handler(self, msgs, request, **kwargs):
        call = FunctionCall(id="call_1", name="wait_for_ever", arguments='{"city": "Paris"}')
        result = CreateResult(finish_reason="function_calls", content=[call], usage=RequestUsage(prompt_tokens=3, completion_tokens=2), cached=False)
        client = ReplayChatCompletionClient([result], model_info=autogen_model_info())
        agent = AssistantAgent(
            "assistant", model_client=client, tools=[blocking_tool(app, request.session_id)], model_client_stream=True, max_tool_iterations=3
        )
        runner: Any = RoundRobinGroupChat([agent], max_turns=1) if request.input[-1].text() == "team" else agent
        async for item in runner.run_stream(task=msgs, cancellation_token=cancellation_token()):
            yield item


def _node_app() -> Optional[AgentApp]:
    redis_url = os.environ.get("AGENTPACK_TEST_REDIS")
    framework = os.environ.get("AGENTPACK_TEST_FRAMEWORK")
    if not redis_url or not framework:
        return None
    import redis.asyncio as aioredis

    if os.environ.get("AGENTPACK_TEST_STOP_GRACE"):
        import agentpack.frameworks.autogen

        agentpack.frameworks.autogen.STOP_GRACE = float(os.environ["AGENTPACK_TEST_STOP_GRACE"])

    @asynccontextmanager
    async def lifespan(app: AgentApp):
        app.state.redis = aioredis.from_url(redis_url, decode_responses=True)
        try:
            yield
        finally:
            await app.state.redis.aclose()

    app = AgentApp(app_name=f"{framework}-node", interrupt_redis_url=redis_url, lifespan=lifespan)
    {"langgraph": _langgraph_app, "autogen": _autogen_app}[framework](app)
    return app


app = _node_app()
