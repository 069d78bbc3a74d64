"""The AgentApp guide's example, for real: an agent on a real model through an OpenAI-compatible
endpoint, that keeps each conversation in the session-history service, calls a tool, and stops
when told.

Configured by the environment:

- ``OPENAI_BASE_URL`` — any OpenAI-compatible endpoint; default DashScope's compatible mode,
  ``https://dashscope.aliyuncs.com/compatible-mode/v1`` (OpenAI, DeepSeek, vLLM, Ollama… work too);
- ``OPENAI_API_KEY`` (or ``DASHSCOPE_API_KEY``);
- ``MODEL`` — default ``qwen-plus``;
- ``REDIS_URL`` — keep conversations (and stops) in Redis, shared by every instance; without it,
  in this process's memory.

    OPENAI_API_KEY=sk-... agentpack run examples/real_model/app.py --ask "What time is it in Paris?"
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator
from zoneinfo import ZoneInfo

from openai import AsyncOpenAI

from agentpack import AgentApp, InMemorySessionHistoryService, Message, Msg, RedisSessionHistoryService

BASE_URL = os.environ.get("OPENAI_BASE_URL", "https://dashscope.aliyuncs.com/compatible-mode/v1")
MODEL = os.environ.get("MODEL", "qwen-plus")
REDIS_URL = os.environ.get("REDIS_URL") or None
SYSTEM = "You are Friday, a helpful assistant. Use the tools when they help; answer briefly."
#: Most model calls one answer may take (each tool round is one).
MAX_STEPS = 4

CITIES = {"paris": "Europe/Paris", "beijing": "Asia/Shanghai", "北京": "Asia/Shanghai", "hangzhou": "Asia/Shanghai", "new york": "America/New_York", "london": "Europe/London"}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "current_time",
            "description": "The current local time in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


async def current_time(city: str) -> str:
    zone = CITIES.get(city.strip().lower())
    if zone is None:
        return f"I do not know the time zone of {city}."
    return dt.datetime.now(ZoneInfo(zone)).strftime(f"%H:%M on %A in {city}")


@asynccontextmanager
async def lifespan(app: AgentApp) -> AsyncIterator[None]:
    history = RedisSessionHistoryService(redis_url=REDIS_URL) if REDIS_URL else InMemorySessionHistoryService()
    llm = AsyncOpenAI(base_url=BASE_URL, api_key=os.environ.get("OPENAI_API_KEY") or os.environ.get("DASHSCOPE_API_KEY") or "unset")
    async with history:
        app.state.session_service, app.state.llm = history, llm
        try:
            yield
        finally:
            await llm.close()


app = AgentApp(app_name="Friday", app_description="A helpful assistant on a real model", lifespan=lifespan, interrupt_redis_url=REDIS_URL)


def as_chat(message: Any) -> dict[str, Any]:
    """A stored or incoming Agent API message as a chat-completions message (its text)."""
    role = "assistant" if message.role == "assistant" else "user" if message.role == "user" else "system"
    return {"role": role, "content": message.text()}


@app.query(framework="agentscope")
async def chat(self, msgs, request, **kwargs):
    sessions, llm = app.state.session_service, app.state.llm
    session = await sessions.get_session(request.user_id, request.session_id) or await sessions.create_session(request.user_id, request.session_id)
    asked = [Message(role=m.role, content=m.text()) for m in request.input if m.role == "user"]
    messages = [{"role": "system", "content": SYSTEM}, *(as_chat(m) for m in session.messages), *(as_chat(m) for m in asked)]
    answer = Msg("Friday", "", "assistant")
    try:
        for _ in range(MAX_STEPS):
            stream = await llm.chat.completions.create(
                model=MODEL, messages=messages, tools=TOOLS, stream=True, stream_options={"include_usage": True}
            )
            thinking = Msg("Friday", [{"type": "thinking", "thinking": ""}], "assistant")
            calls: dict[int, dict[str, str]] = {}
            async with stream:  # a stop closes the model's stream instead of leaving it open
                async for chunk in stream:
                    if chunk.usage:
                        answer.usage = {"input_tokens": chunk.usage.prompt_tokens, "output_tokens": chunk.usage.completion_tokens}
                    if not chunk.choices:
                        continue
                    delta = chunk.choices[0].delta
                    reasoning = getattr(delta, "reasoning_content", None)  # DashScope and DeepSeek send the model's thinking here
                    if reasoning:
                        thinking.content[0]["thinking"] += reasoning
                        yield thinking, False
                    if delta.content:
                        answer.content += delta.content
                        yield answer, False
                    for call in delta.tool_calls or []:
                        known = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                        known["id"] = call.id or known["id"]
                        if call.function is not None:
                            known["name"] += call.function.name or ""
                            known["arguments"] += call.function.arguments or ""
            if thinking.content[0]["thinking"]:
                yield thinking, True
            if not calls:
                break
            requested = [{"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}} for c in calls.values()]
            messages.append({"role": "assistant", "content": answer.content or None, "tool_calls": requested})
            uses = [{"type": "tool_use", "id": c["id"], "name": c["name"], "input": json.loads(c["arguments"] or "{}")} for c in calls.values()]
            yield Msg("Friday", uses, "assistant"), True
            for use in uses:
                output = await current_time(**use["input"]) if use["name"] == "current_time" else f"there is no tool {use['name']}"
                yield Msg("system", [{"type": "tool_result", "id": use["id"], "name": use["name"], "output": output}], "system"), True
                messages.append({"role": "tool", "tool_call_id": use["id"], "content": output})
        yield answer, True
    finally:  # also when stopped: the conversation keeps what was asked and what was said so far
        said = [Message(role="assistant", content=answer.content)] if answer.content else []
        await asyncio.shield(sessions.append_message(session, [*asked, *said]))
