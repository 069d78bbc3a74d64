"""The smallest useful agent: it streams a reply word by word, no API key needed.

    agentpack run examples/quickstart/app.py --ask "What is agentpack?"
"""

import asyncio

from agentpack import AgentApp

app = AgentApp(app_name="Friday", app_description="A tiny streaming assistant")

ANSWER = (
    "agentpack serves this agent over the Agent API. Each word you see arrives as its own "
    "server-sent event, flushed the moment the handler yields it."
)


@app.query(framework="text")
async def answer(self, msgs, request, **kwargs):
    question = msgs[-1].text() if msgs else ""
    if question:
        yield f'You asked: "{question}". '
    for word in ANSWER.split(" "):
        yield word + " "
        await asyncio.sleep(0.02)  # stands in for a model producing tokens


@app.endpoint("/echo")
async def echo(text: str = "hello"):
    """A custom endpoint: query parameters in, JSON out."""
    return {"echo": text}


if __name__ == "__main__":
    app.run(port=8090)
