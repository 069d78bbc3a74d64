"""Session runs and stops: one run per session, stoppable from any process that shares a backend.

Backends are imported on first use: nothing Redis-related is imported unless a Redis
backend is configured.
"""

from __future__ import annotations

import importlib
from typing import Any

from agentpack.interrupt.base import (
    BackendUnavailable,
    BaseInterruptBackend,
    RunState,
    SessionBusy,
    session_key,
)

_LAZY = {
    "LocalInterruptBackend": "agentpack.interrupt.local",
    "RedisInterruptBackend": "agentpack.interrupt.redis",
    "SessionGuard": "agentpack.interrupt.guard",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agentpack.interrupt' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["BackendUnavailable", "BaseInterruptBackend", "RunState", "SessionBusy", "session_key", *_LAZY]
