"""The apps the benchmarks compare: a bare FastAPI baseline and the same service on AgentApp.

Both stream 100 chunks per request: the baseline as a raw ``StreamingResponse`` of
``data: {"text": ...}`` lines, agentpack as the full Agent API protocol.
"""

import asyncio
import json
import os
import sys

CHUNKS = 100
CHUNK = "token "
#: With PACED=1 both apps give the event loop a turn between chunks, as a handler reading
#: tokens from a model does; then every chunk is its own write on both sides.
PACED = os.environ.get("PACED") == "1"


async def pace() -> None:
    if PACED:
        await asyncio.sleep(0)


def bare_fastapi():
    """The same service written directly on FastAPI: a validated JSON body in, raw SSE out."""
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse
    from pydantic import BaseModel

    class Query(BaseModel):
        input: list[dict]

    app = FastAPI()

    @app.get("/health")
    async def health():
        return {"status": "healthy"}

    @app.post("/raw")
    async def raw(query: Query):
        async def frames():
            for _ in range(CHUNKS):
                await pace()
                yield f"data: {json.dumps({'text': CHUNK})}\n\n"

        return StreamingResponse(frames(), media_type="text/event-stream")

    return app


def agentpack_app():
    from agentpack import AgentApp

    app = AgentApp(app_name="bench")

    @app.query(framework="text")
    async def handler(msgs):
        for _ in range(CHUNKS):
            await pace()
            yield CHUNK

    return app


def serve(kind: str, port: int) -> None:
    import uvicorn

    app = bare_fastapi() if kind == "fastapi" else agentpack_app()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False)


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
