"""The apps the benchmarks compare: a bare FastAPI baseline and the same service on AgentApp.

Both stream 100 chunks per request: the baseline as a raw ``StreamingResponse`` of
``data: {"text": ...}`` lines, agentpack as the full Agent API protocol.
"""

import asyncio
import json
import os
import sys
from typing import Any

CHUNKS = int(os.environ.get("BENCH_CHUNKS", "100"))
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


def agentpack_app(**keywords: Any):
    from agentpack import AgentApp

    app = AgentApp(app_name="bench", **keywords)

    @app.query(framework="text")
    async def handler(msgs):
        for _ in range(CHUNKS):
            await pace()
            yield CHUNK

    return app


#: The API key of the hot-path apps (issue 21): auth is on for both sides of that comparison.
API_KEY = "bench-key-0123456789abcdef0123456789abcdef"


def hot_path_baseline():
    """Issue 21's baseline: ``/process`` hand-written on FastAPI, writing the *same bytes* as
    agentpack (the same event JSON in the same SSE framing, the same headers), with a bearer
    key checked the simple way and the body validated by a small pydantic model."""
    import hmac
    import time
    import uuid

    from fastapi import FastAPI, Header, HTTPException
    from fastapi.responses import StreamingResponse
    from pydantic import BaseModel

    class Content(BaseModel):
        type: str
        text: str | None = None

    class Msg(BaseModel):
        role: str
        content: list[Content] | str

    class Query(BaseModel):
        input: list[Msg]
        stream: bool = True
        id: str | None = None
        session_id: str | None = None
        user_id: str | None = None

    expected = f"Bearer {API_KEY}".encode()
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    app = FastAPI()

    @app.get("/health")
    async def health():
        return {"status": "healthy"}

    @app.post("/process")
    async def process(query: Query, authorization: str = Header("")):
        if not hmac.compare_digest(authorization.encode(), expected):
            raise HTTPException(401, "bad key", headers={"WWW-Authenticate": "Bearer"})
        session_id = query.session_id or uuid.uuid4().hex
        user_id = query.user_id or session_id
        response_id = query.id or f"response_{uuid.uuid4().hex}"
        msg_id = f"msg_{uuid.uuid4().hex}"
        created_at = int(time.time())

        def response(sequence, status, completed_at=None, output=None):
            return {
                "sequence_number": sequence,
                "object": "response",
                "status": status,
                "error": None,
                "id": response_id,
                "created_at": created_at,
                "completed_at": completed_at,
                "output": output,
                "usage": None,
                "session_id": session_id,
            }

        def message(sequence, status, content):
            return {
                "sequence_number": sequence,
                "object": "message",
                "status": status,
                "error": None,
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "content": content,
                "code": None,
                "message": None,
                "usage": None,
                "metadata": {},
            }

        def content(sequence, status, delta, text):
            return {
                "sequence_number": sequence,
                "object": "content",
                "status": status,
                "error": None,
                "type": "text",
                "index": 0,
                "delta": delta,
                "msg_id": msg_id,
                "text": text,
            }

        async def frames():
            yield f"data: {dumps(response(0, 'created'))}\n\n"
            yield f"data: {dumps(response(1, 'in_progress'))}\n\n"
            yield f"data: {dumps(message(2, 'in_progress', None))}\n\n"
            sequence, pieces = 3, []
            for _ in range(CHUNKS):
                await pace()
                pieces.append(CHUNK)
                yield f"data: {dumps(content(sequence, 'in_progress', True, CHUNK))}\n\n"
                sequence += 1
            done = content(sequence, "completed", None, "".join(pieces))
            yield f"data: {dumps(done)}\n\n"
            whole = message(sequence + 1, "completed", [done])
            yield f"data: {dumps(whole)}\n\n"
            end = response(sequence + 2, "completed", int(time.time()), [whole])
            yield f"data: {dumps(end)}\n\n"

        headers = {
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            "x-agentpack-session-id": session_id,
            "x-agentpack-user-id": user_id,
        }
        return StreamingResponse(frames(), media_type="text/event-stream", headers=headers)

    return app


def hot_path_agentpack():
    """Issue 21's agentpack side: the same handler as :func:`agentpack_app`, auth on (one API
    key), every limit at its default (body limit, concurrent runs, run timeout)."""
    return agentpack_app(api_keys=[API_KEY])


KINDS = {
    "fastapi": bare_fastapi,
    "agentpack": agentpack_app,
    "hot-baseline": hot_path_baseline,
    "hot-agentpack": hot_path_agentpack,
}


#: With BENCH_TIMED_FIRST_FRAME=1 the server notes, for each request, the time from its first
#: bytes arriving to its first ``data:`` frame handed to the connection (see :func:`timed`).
TIMED = os.environ.get("BENCH_TIMED_FIRST_FRAME") == "1"


def timed(app: Any) -> Any:
    """``app`` with the server-side time to first frame noted, for ``bench/hot_path.py``: the
    part of the time to first event that is the server's own, without the client's (which on a
    2-core machine shares the cores with both servers).  Patches uvicorn's h11 protocol (this
    benchmark's server, forced to h11) and answers ``GET /__first_frames`` with the times in
    seconds."""
    import time

    from uvicorn.protocols.http import h11_impl

    arrived: list[float] = []
    times: list[float] = []
    receive_data = h11_impl.H11Protocol.data_received
    send = h11_impl.RequestResponseCycle.send

    def data_received(self: Any, data: bytes) -> None:
        if data.startswith(b"POST "):
            arrived[:] = [time.perf_counter()]
        receive_data(self, data)

    async def timed_send(self: Any, message: Any) -> None:
        if arrived and message["type"] == "http.response.body" and message.get("body", b"").startswith(b"data:"):
            times.append(time.perf_counter() - arrived.pop())
        await send(self, message)

    h11_impl.H11Protocol.data_received = data_received
    h11_impl.RequestResponseCycle.send = timed_send

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/__first_frames":
            body = json.dumps(times).encode()
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    return wrapped


def serve(kind: str, port: int) -> None:
    import uvicorn

    app = KINDS[kind]()
    if TIMED:
        uvicorn.run(timed(app), host="127.0.0.1", port=port, log_level="error", access_log=False, http="h11")
        return
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False)


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
