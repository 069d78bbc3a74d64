"""An agent written the way AgentScope Runtime apps are written.

Only the imports differ from an AgentScope Runtime app: a lifespan that prepares a
session store, an ``@agent_app.query(framework="agentscope")`` handler that yields
``(msg, last)`` and saves its state when interrupted, and a hand-written ``/stop`` route.
A scripted "model" stands in for an LLM so that it runs without an API key.

    agentpack run examples/agentscope_style/app.py
"""

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI

from agentpack import AgentApp, AgentRequest

try:  # real AgentScope messages when agentscope is installed, a look-alike otherwise
    from agentscope.message import Msg
except ImportError:
    from agentpack import Msg


class InMemorySession:
    """Stands in for agentscope's RedisSession: remembers each session's history."""

    def __init__(self):
        self.saved = {}

    async def load_session_state(self, session_id, user_id, agent):
        agent.history = list(self.saved.get((user_id, session_id), []))

    async def save_session_state(self, session_id, user_id, agent):
        self.saved[(user_id, session_id)] = list(agent.history)


#: Seconds per streamed word of the scripted "model".
WORD_DELAY = 0.02


class ScriptedAgent:
    """Produces cumulative messages like an AgentScope agent streaming from a model."""

    def __init__(self, name):
        self.name = name
        self.history = []
        self.interrupted = False

    async def reply(self, msgs):
        question = msgs[-1].get_text_content() if msgs else ""
        self.history.append(question)
        thinking = Msg(self.name, [{"type": "thinking", "thinking": "The user wants a story."}], "assistant")
        yield thinking, True
        words = f"Once upon a time a robot named {self.name} read: {question}. It explored a distant galaxy.".split(" ")
        answer = Msg(self.name, "", "assistant")
        for i in range(len(words)):
            answer.content = " ".join(words[: i + 1])
            await asyncio.sleep(WORD_DELAY)
            yield answer, i == len(words) - 1
        self.history.append(answer.content)

    async def interrupt(self):
        self.interrupted = True


@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.session = InMemorySession()
    try:
        yield
    finally:
        print("AgentApp is shutting down...")


agent_app = AgentApp(
    app_name="Friday",
    app_description="A helpful assistant",
    lifespan=lifespan,
)


@agent_app.query(framework="agentscope")
async def query_func(
    self,
    msgs,
    request: AgentRequest = None,
    **kwargs,
):
    session_id = request.session_id
    user_id = request.user_id

    agent = ScriptedAgent(name="Friday")
    await agent_app.state.session.load_session_state(session_id=session_id, user_id=user_id, agent=agent)

    try:
        async for msg, last in agent.reply(msgs):
            yield msg, last
    except asyncio.CancelledError:
        print(f"Task {session_id} was manually interrupted.")
        await agent.interrupt()
        raise
    finally:
        await agent_app.state.session.save_session_state(session_id=session_id, user_id=user_id, agent=agent)


@agent_app.post("/stop")
async def stop_task(request: AgentRequest):
    await agent_app.stop_chat(
        user_id=request.user_id,
        session_id=request.session_id,
    )
    return {
        "status": "success",
        "message": "Interrupt signal broadcasted.",
    }


agent_app.run(host="127.0.0.1", port=8090)
