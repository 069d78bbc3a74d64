"""The app the deploy tests publish: answers with its VERSION (the tests edit it to tell a new
deployment from the old), counts slowly on request (a run long enough to stop from another
shell), and says which process answered and which variables the platform gave it."""

import asyncio
import os

from agentpack import AgentApp

VERSION = "v1"

app = AgentApp(app_name="deployed")


@app.query(framework="text")
async def answer(self, msgs, request, **kwargs):
    question = msgs[-1].text() if msgs else ""
    if question.startswith("count"):
        for i in range(int(question.split()[1])):
            yield f"{i} "
            await asyncio.sleep(0.1)
        return
    yield f"{VERSION}: "
    for word in question.split():
        yield word + " "
        await asyncio.sleep(0.05)


@app.endpoint("/whoami", methods=["GET"])
async def whoami():
    """The answering process, the interrupt backend and the names (not values) of the variables it got."""
    return {
        "pid": os.getpid(),
        "version": VERSION,
        "backend": app.runtime.backend.name,
        "env_names": sorted(k for k in os.environ if k.startswith(("AGENTPACK_", "DEPLOYED_", "AWS_LAMBDA_EXEC"))),
        "secret_is_set": bool(os.environ.get("DEPLOYED_SECRET")),
    }
