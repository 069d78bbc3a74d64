"""``@app.endpoint``: a FastAPI route whose return is JSON and whose generators become SSE.

The route keeps the user function's signature, so FastAPI resolves query parameters,
bodies, ``Request`` and dependencies as usual.  Only the result is treated differently:
plain values are deep-serialized to JSON, generators stream ``data: <json>`` events, and
an exception mid-stream ends the stream with one error event instead of a cut connection.
"""

from __future__ import annotations

import functools
import inspect
import logging
import typing
from typing import Any, AsyncIterator, Callable

from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.responses import JSONResponse, Response

from agentpack.app.serialize import jsonable
from agentpack.protocol.sse import STREAM_HEADERS, encode_event

logger = logging.getLogger("agentpack.endpoint")

#: Seconds between SSE comment pings on idle streams, so proxies keep the connection open.
PING_INTERVAL = 15


def resolved_signature(func: Callable[..., Any]) -> inspect.Signature:
    """``func``'s signature with string annotations evaluated in ``func``'s own module.

    The route that FastAPI sees is our wrapper, which lives in another module; resolving
    here lets ``from __future__ import annotations`` in user code keep working.
    """
    signature = inspect.signature(func)
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception:  # unresolvable forward references: let FastAPI report them as usual
        return signature
    return signature.replace(
        parameters=[p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values()],
        return_annotation=inspect.Signature.empty,
    )


def error_event(exc: BaseException) -> dict[str, str]:
    return {"error": str(exc), "error_type": type(exc).__name__, "message": "Error in streaming generator"}


async def sse_frames(source: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    """Encode each item as an SSE frame; an exception becomes one final error event."""
    try:
        async for item in source:
            yield encode_event(jsonable(item))
    except Exception as exc:
        logger.exception("streaming endpoint failed")
        yield encode_event(error_event(exc))


@functools.cache
def _response_class() -> type:
    """sse-starlette's response, imported on the first stream, minus a per-frame cost."""
    from sse_starlette import EventSourceResponse

    class StreamResponse(EventSourceResponse):
        async def _send_with_timeout(self, send: Any, message: Any) -> None:
            # Without a send timeout there is nothing to time out: skip the per-frame
            # cancel scope, which costs more than the send itself on a busy stream.
            if self.send_timeout is None:
                await send(message)
            else:
                await super()._send_with_timeout(send, message)

    return StreamResponse


def stream_response(frames: AsyncIterator[bytes]) -> Response:
    """An SSE response that sends each frame the moment it is produced."""
    return _response_class()(frames, headers=STREAM_HEADERS, sep="\n", ping=PING_INTERVAL)


def make_endpoint(func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``func`` into a FastAPI endpoint with the behaviour described in the module doc."""
    if inspect.isasyncgenfunction(func):

        async def endpoint(*args: Any, **kwargs: Any) -> Response:
            return stream_response(sse_frames(func(*args, **kwargs)))

    elif inspect.isgeneratorfunction(func):

        async def endpoint(*args: Any, **kwargs: Any) -> Response:
            return stream_response(sse_frames(iterate_in_threadpool(func(*args, **kwargs))))

    else:

        async def endpoint(*args: Any, **kwargs: Any) -> Any:
            if inspect.iscoroutinefunction(func):
                result = await func(*args, **kwargs)
            else:
                result = await run_in_threadpool(func, *args, **kwargs)
            if isinstance(result, Response):
                return result
            if hasattr(result, "__aiter__"):
                return stream_response(sse_frames(result))
            return JSONResponse(jsonable(result))

    endpoint.__name__ = getattr(func, "__name__", "endpoint")
    endpoint.__qualname__ = getattr(func, "__qualname__", endpoint.__name__)
    endpoint.__doc__ = func.__doc__
    endpoint.__module__ = getattr(func, "__module__", __name__)
    endpoint.__signature__ = resolved_signature(func)  # type: ignore[attr-defined]
    return endpoint
