"""``@app.endpoint``: a FastAPI route whose return is JSON and whose generators become SSE.

The route keeps the user function's signature, so FastAPI resolves query parameters,
bodies, ``Request`` and dependencies as usual.  Only the result is treated differently:
plain values are deep-serialized to JSON, generators stream ``data: <json>`` events, and
an exception mid-stream ends the stream with one error event instead of a cut connection.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.concurrency import iterate_in_threadpool
from starlette.responses import JSONResponse, Response

from agentpack._aio import call, is_async_gen_callable
from agentpack.protocol.serialize import jsonable
from agentpack.run.stream import IteratorProducer, StreamResponse


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


def make_endpoint(func: Callable[..., Any], debug: bool | None = None) -> Callable[..., Any]:
    """Wrap ``func`` into a FastAPI endpoint with the behaviour described in the module doc;
    ``debug``: a failing stream's error event carries the exception's text (the app's setting)."""

    def stream_response(source: AsyncIterator[Any]) -> Response:
        return StreamResponse(IteratorProducer(source, debug))

    if is_async_gen_callable(func):

        async def endpoint(*args: Any, **kwargs: Any) -> Response:
            return stream_response(func(*args, **kwargs))

    elif inspect.isgeneratorfunction(func):

        async def endpoint(*args: Any, **kwargs: Any) -> Response:
            return stream_response(iterate_in_threadpool(func(*args, **kwargs)))

    else:

        async def endpoint(*args: Any, **kwargs: Any) -> Response:
            result = await call(func, *args, **kwargs)
            if isinstance(result, Response):
                return result
            if hasattr(result, "__aiter__"):
                return stream_response(result)
            return JSONResponse(jsonable(result))

    endpoint.__name__ = getattr(func, "__name__", "endpoint")
    endpoint.__qualname__ = getattr(func, "__qualname__", endpoint.__name__)
    endpoint.__doc__ = func.__doc__
    endpoint.__module__ = getattr(func, "__module__", __name__)
    endpoint.__signature__ = resolved_signature(func)  # type: ignore[attr-defined]
    return endpoint
