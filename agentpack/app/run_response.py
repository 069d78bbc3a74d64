"""The SSE response of ``/process``: it hands the socket to the run and watches the client.

Custom endpoints stream through sse-starlette.  ``/process`` does not, on purpose: here the
run's own task writes each event straight to the connection, so an event costs one hop
instead of a queue hand-off between two tasks, and the run decides the last word — the
terminal event — even when it is being stopped.  This response adds what remains: the
headers, a disconnect watch that cancels the run the moment the client leaves, comment
pings on idle streams, and the end of the body.

When the server cancels the request (its graceful shutdown ran out of time), the run is
stopped rather than cut: the client still gets the terminal ``canceled`` event, with the
reason, and a complete body, and the session is released.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Mapping, Optional

import anyio
from starlette.responses import Response

from agentpack._aio import wait_bounded
from agentpack.app.runner import CANCELLED_BY_SERVER, CLEANUP_GRACE, AgentRun, WriteFailed
from agentpack.protocol.sse import STREAM_HEADERS, encode_event

#: Seconds of silence after which a comment line is sent, so proxies keep the stream open.
PING_INTERVAL = 15.0
_PING = b": ping\n\n"


class RunStreamResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        run: AgentRun,
        headers: Optional[Mapping[str, str]] = None,
        ping_interval: float = PING_INTERVAL,
    ) -> None:
        # Not Response.__init__: with no body it would declare "content-length: 0".
        self.status_code = 200
        self.background = None
        self.init_headers({**STREAM_HEADERS, **(headers or {})})
        self.run = run
        self.ping_interval = ping_interval

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        connected = True
        last_write = time.monotonic()

        async def write(event: dict[str, Any]) -> None:
            nonlocal last_write
            last_write = time.monotonic()
            try:
                await send({"type": "http.response.body", "body": encode_event(event), "more_body": True})
            except Exception as exc:  # the client is gone: not the handler's failure
                raise WriteFailed(exc) from exc

        async def watch_client() -> None:
            nonlocal connected
            while (await receive())["type"] != "http.disconnect":
                pass
            connected = False

        async def ping() -> None:
            nonlocal last_write
            while True:
                await asyncio.sleep(max(0.0, last_write + self.ping_interval - time.monotonic()))
                if time.monotonic() - last_write >= self.ping_interval:
                    last_write = time.monotonic()
                    await send({"type": "http.response.body", "body": _PING, "more_body": True})

        async def end_body() -> None:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            task = self.run.start(write)
            helpers = [asyncio.create_task(watch_client()), asyncio.create_task(ping())]
            try:
                await asyncio.wait({task, helpers[0]}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                # The server gives up on this request: end the run with its terminal event
                # while the connection is still open, then let the cancellation go on.
                self.run.stop(CANCELLED_BY_SERVER)
                with anyio.CancelScope(shield=True):
                    ended, _ = await wait_bounded(asyncio.wait({task}), 2 * CLEANUP_GRACE)
                    if ended and connected and not task.cancelled() and task.exception() is None:
                        await wait_bounded(end_body(), 1.0)
                raise
            finally:
                for helper in helpers:
                    helper.cancel()
                with anyio.CancelScope(shield=True):
                    await self.run.settle()  # cancels the run if the client left first
                    await asyncio.gather(*helpers, return_exceptions=True)
            failed = task.exception() if task.done() and not task.cancelled() else None  # retrieved, always
            if connected and task.done() and not task.cancelled() and failed is None:
                await end_body()
        except OSError:  # the client vanished while we were writing
            connected = False
        finally:
            with anyio.CancelScope(shield=True):  # release the session even when cancelled
                await self.run.release()
