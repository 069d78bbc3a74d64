"""Checks of AgentApp's own constructor keywords: a wrong value fails at construction, with a
message that says what to write instead — not at the first request."""

from __future__ import annotations

import os
import sys
from typing import Any
from urllib.parse import urlsplit

BROKER_SCHEMES = {"redis", "rediss", "amqp", "amqps", "pyamqp", "sqs", "memory", "sentinel"}
RESULT_SCHEMES = BROKER_SCHEMES | {"db+postgresql", "db+sqlite", "rpc"}
REDIS_SCHEMES = {"redis", "rediss", "unix"}
RESERVED_PATHS = {"/", "/health", "/readiness", "/liveness"}


def check_url(keyword: str, value: str | None, schemes: set[str]) -> None:
    if value is None:
        return
    if not isinstance(value, str) or urlsplit(value).scheme not in schemes:
        allowed = ", ".join(f"{s}://" for s in sorted(schemes))
        raise ValueError(f"{keyword}={value!r} is not a URL agentpack can use; it must start with one of {allowed}")


def check_path(keyword: str, path: Any) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"{keyword}={path!r} must be a path starting with '/', e.g. '/process'")
    return path.rstrip("/") or "/"


def check_endpoint_path(endpoint_path: Any) -> str:
    path = check_path("endpoint_path", endpoint_path)
    if path in RESERVED_PATHS:
        raise ValueError(f"endpoint_path={endpoint_path!r} collides with a built-in route; choose e.g. '/process'")
    return path


def check_callables(**hooks: Any) -> None:
    for name, hook in hooks.items():
        if hook is not None and not callable(hook):
            raise TypeError(f"{name} must be callable, got {type(hook).__name__}")


def task_urls(broker_url: str | None, backend_url: str | None) -> str | None:
    """Check the Celery URLs; returns the result backend to use (a Redis broker keeps results too)."""
    check_url("broker_url", broker_url, BROKER_SCHEMES)
    check_url("backend_url", backend_url, RESULT_SCHEMES)
    if backend_url and not broker_url:
        raise ValueError("backend_url is set without broker_url; tasks need a broker to be sent to (set broker_url=)")
    if broker_url and not backend_url:
        if urlsplit(broker_url).scheme not in ("redis", "rediss"):
            raise ValueError(
                f"broker_url={broker_url!r} needs backend_url= to keep task results, e.g. backend_url='redis://localhost:6379/1'"
            )
        return broker_url
    return backend_url


def interrupt_choice(redis_url: str | None, backend: Any, base: type) -> None:
    check_url("interrupt_redis_url", redis_url, REDIS_SCHEMES)
    if backend is not None and redis_url is not None:
        raise ValueError("give interrupt_redis_url= or interrupt_backend=, not both")
    if backend is not None and not isinstance(backend, base):
        hint = "; pass a Redis URL as interrupt_redis_url=" if isinstance(backend, str) else ""
        raise TypeError(
            f"interrupt_backend must be a BaseInterruptBackend instance, got {type(backend).__name__}{hint}"
        )


def check_seconds(keyword: str, value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{keyword}={value!r} must be a number of seconds >= 0")
    return float(value)


def check_a2a_config(value: Any) -> None:
    if value is not None and not (isinstance(value, dict) or hasattr(value, "model_dump")):
        raise TypeError("a2a_config must be a dict or an AgentCardWithRuntimeConfig-like pydantic model")


def script_name() -> str | None:
    """The module name a script run as ``__main__`` gets when a worker imports it."""
    main = sys.modules.get("__main__")
    file = getattr(main, "__file__", None)
    return os.path.splitext(os.path.basename(file))[0] if file else None
