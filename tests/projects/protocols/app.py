"""An app that speaks A2A, the Responses API and AG-UI from one handler, built and emulated by
the protocol emulation test (its extras are this project's requirements)."""

from agentpack import AgentApp

app = AgentApp(app_name="Protocols", app_description="one handler, every protocol", a2a_config={"task_timeout": 20})


@app.query(framework="text")
async def answer(msgs, request):
    for piece in ["Hello", " from", " the", " emulator"]:
        yield piece
