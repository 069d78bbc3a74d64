"""asyncio helpers whose behaviour does not change between Python 3.10 and 3.13.

Before 3.12, ``asyncio.wait_for`` can swallow a ``cancel()`` that arrives just as the
awaited call completes, and ``asyncio.timeout`` does not exist before 3.11.  Code on the
cancel and release paths therefore waits with :func:`wait_bounded`, built on
``asyncio.wait``, which never swallows the caller's cancellation and never cancels the
awaited task behind the caller's back.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Optional

__all__ = ["uncancel", "wait_bounded"]


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


def _retrieve(task: "asyncio.Future[Any]") -> None:
    """Consume an abandoned task's outcome so it is never reported as "never retrieved"."""
    if not task.cancelled():
        task.exception()


def uncancel(task: Optional["asyncio.Task[Any]"] = None) -> None:
    """Forget one handled cancellation of ``task`` (the current one by default).

    From 3.11, a task remembers how often it was cancelled and ``asyncio.timeout`` and
    task groups read that count; code that catches a cancellation on purpose and carries
    on must decrement it.  3.10 has no count, so there is nothing to do.
    """
    task = task or asyncio.current_task()
    forget = getattr(task, "uncancel", None)
    if forget is not None and task is not None and task.cancelling():
        forget()
