"""Calling a user's query handler, whatever shape it has.

Handlers are written as ``(self, msgs, request, **kwargs)`` — but real code omits ``self``,
omits ``**kwargs``, is sync or async, a generator or a plain function.  AgentScope Runtime
forces ``**kwargs`` on everyone by injecting keywords the handler never asked for; here the
signature is read once at decoration time and a handler only receives what it declares.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from fastapi.params import Depends
from starlette.concurrency import iterate_in_threadpool

from agentpack._aio import call, is_async_gen_callable
from agentpack.frameworks import Framework


async def _one(value: Any) -> AsyncIterator[Any]:
    yield value


async def _nothing() -> AsyncIterator[Any]:
    return
    yield  # pragma: no cover - makes this an async generator


def as_async_iterator(value: Any) -> AsyncIterator[Any]:
    """Treat a returned (async) iterator as a stream and anything else as one item."""
    if hasattr(value, "__aiter__"):
        iterator: AsyncIterator[Any] = value.__aiter__()
        return iterator
    if isinstance(value, Iterator):  # a generator or iterator: stream it, off the event loop
        return iterate_in_threadpool(value)
    if value is None:
        return _nothing()
    return _one(value)


class QueryHandler:
    """A registered ``@app.query`` function with what was learnt from its signature."""

    def __init__(
        self,
        func: Callable[..., Any],
        framework: Framework,
        binds_self: bool = False,
        accepts: frozenset[str] = frozenset(),
        var_keyword: bool = False,
        dependencies: list[inspect.Parameter] | None = None,
    ) -> None:
        self.func = func
        self.framework = framework
        self.binds_self = binds_self
        self.accepts = accepts
        self.var_keyword = var_keyword
        self.dependencies: list[inspect.Parameter] = dependencies or []

    @classmethod
    def inspect(cls, func: Callable[..., Any], framework: Framework) -> QueryHandler:
        signature = inspect.signature(func)
        params = list(signature.parameters.values())
        binds_self = bool(params) and params[0].name == "self"
        if binds_self:
            params = params[1:]
        named = frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        var_keyword = any(p.kind is p.VAR_KEYWORD for p in params)
        dependencies = [p for p in params if isinstance(p.default, Depends)]
        return cls(func, framework, binds_self, named, var_keyword, dependencies)

    def _keywords(self, offered: dict[str, Any]) -> dict[str, Any]:
        if self.var_keyword:
            return offered
        return {k: v for k, v in offered.items() if k in self.accepts}

    def stream(self, owner: Any, msgs: Any, request: Any, extra: dict[str, Any]) -> AsyncIterator[Any]:
        """Run the handler and yield what it produces, one item at a time, as it produces it.

        An async generator handler is its own stream (no generator around it: one step less
        per item).  Sync generators and functions run in the thread pool so a blocking handler
        never stalls the event loop (and with it every other stream of the process).
        """
        kwargs = self._keywords({"msgs": msgs, "request": request, **extra})
        args = (owner,) if self.binds_self else ()
        func = self.func
        if is_async_gen_callable(func):
            generator: AsyncIterator[Any] = func(*args, **kwargs)
            return generator
        return self._other_stream(func, args, kwargs)

    async def _other_stream(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> AsyncIterator[Any]:
        source: AsyncIterator[Any]
        if inspect.isgeneratorfunction(func):
            source = iterate_in_threadpool(func(*args, **kwargs))
        else:
            source = as_async_iterator(await call(func, *args, **kwargs))
        try:
            async for item in source:
                yield item
        finally:
            closer = getattr(source, "aclose", None)
            if closer is not None:
                await closer()
