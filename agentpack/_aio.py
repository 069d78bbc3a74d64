"""asyncio helpers whose behaviour does not change between Python 3.10 and 3.13.

Before 3.12, ``asyncio.wait_for`` can swallow a ``cancel()`` that arrives just as the
awaited call completes, and ``asyncio.timeout`` does not exist before 3.11.  Code on the
cancel and release paths therefore waits with :func:`wait_bounded`, built on
``asyncio.wait``, which never swallows the caller's cancellation and never cancels the
awaited task behind the caller's back.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import sys
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["call", "is_async_callable", "is_async_gen_callable", "uncancel", "wait_bounded"]


def _unwrap(func: Any) -> Any:
    while isinstance(func, functools.partial):
        func = func.func
    return func


def is_async_callable(func: Any) -> bool:
    """Whether calling ``func`` gives a coroutine: ``async def`` functions and methods,
    partials of them, and objects whose ``__call__`` is ``async def``."""
    func = _unwrap(func)
    return inspect.iscoroutinefunction(func) or (callable(func) and inspect.iscoroutinefunction(func.__call__))


def is_async_gen_callable(func: Any) -> bool:
    """Like :func:`is_async_callable`, for async generators."""
    func = _unwrap(func)
    return inspect.isasyncgenfunction(func) or (callable(func) and inspect.isasyncgenfunction(func.__call__))


async def call(func: Callable[..., Any], *args: Any, in_thread: bool = True, **kwargs: Any) -> Any:
    """Call ``func`` however it was written, and return its result.

    Async callables are awaited.  Sync ones run in a worker thread (``in_thread``, the
    default), so a blocking function never stalls the event loop — and every other stream
    of the process with it; start-up hooks pass ``in_thread=False``.  An awaitable returned
    by a sync callable is awaited too.
    """
    if is_async_callable(func):
        return await func(*args, **kwargs)
    if in_thread:
        import anyio.to_thread

        result = await anyio.to_thread.run_sync(functools.partial(func, *args, **kwargs))
    else:
        result = func(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


async def wait_bounded(awaitable: Awaitable[Any], seconds: float) -> tuple[bool, Any]:
    """Wait at most ``seconds`` for ``awaitable``; ``(True, result)`` or ``(False, None)``.

    On timeout the work is cancelled (a task passed in is cancelled too) and left to end on
    its own.  An exception raised by the work is re-raised here.  If the caller is
    cancelled while waiting, the work is cancelled as well and the caller's
    ``CancelledError`` propagates unchanged.
    """
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        task.add_done_callback(_retrieve)
        return False, None
    return True, task.result()


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Consume an abandoned task's outcome so it is never reported as "never retrieved"."""
    if not task.cancelled():
        task.exception()


def uncancel(task: asyncio.Task[Any] | None = None) -> None:
    """Forget one handled cancellation of ``task`` (the current one by default).

    From 3.11, a task remembers how often it was cancelled and ``asyncio.timeout`` and
    task groups read that count; code that catches a cancellation on purpose and carries
    on must decrement it.  3.10 has no count, so there is nothing to do.
    """
    if sys.version_info < (3, 11):
        return
    task = task or asyncio.current_task()
    if task is not None and task.cancelling():
        task.uncancel()
