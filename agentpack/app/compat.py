"""AgentScope Runtime's keywords that AgentApp accepts so its apps run unchanged, and why
some of them change nothing here (docs/migrating.md has the full table)."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any

#: ``AgentApp(...)`` keywords accepted so AgentScope Runtime apps construct unchanged, and
#: why they change nothing here.
NO_EFFECT = {
    "response_type": '/process always streams SSE (or JSON with "stream": false)',
    "stream": 'each request chooses with its own "stream" field',
    "request_model": "the body of /process is always AgentRequest",
    "mode": "deployment modes are chosen by `agentpack deploy --target`",
    "custom_endpoints": "routes are registered with @app.endpoint / @app.get",
    "enable_embedded_worker": "start workers with `agentpack worker APP`; without a broker, tasks run embedded",
}

#: ``AgentApp(...)`` keywords with no equivalent; the message says what to do instead.
UNSUPPORTED = {
    "runner": "register the handler with @app.query(framework=...) instead of passing runner=",
}

#: ``app.run(...)`` keywords with no uvicorn meaning, and why they change nothing here.
RUN_NO_EFFECT = {
    "stream": 'each request chooses with its own "stream" field',
    "embed_task_processor": "without a broker tasks run in this process; with one, start `agentpack worker APP`",
    "mode": "deployment modes are chosen by `agentpack deploy --target`",
    "runner": "the handler registered with @app.query is served",
    "custom_endpoints": "routes are registered with @app.endpoint / @app.get",
}


def constructor_keywords(fastapi_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keywords left for FastAPI: refuses the unsupported ones, warns about (and drops)
    the ones that change nothing."""
    for keyword, instead in UNSUPPORTED.items():
        if keyword in fastapi_kwargs:
            raise TypeError(f"AgentApp({keyword}=...) is not supported: {instead}")
    for keyword in [k for k in fastapi_kwargs if k in NO_EFFECT]:
        fastapi_kwargs.pop(keyword)
        warnings.warn(
            f"AgentApp({keyword}=...) has no effect in agentpack: {NO_EFFECT[keyword]}", UserWarning, stacklevel=3
        )
    return fastapi_kwargs


def uvicorn_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The ``run()`` keywords ``uvicorn.Config`` takes; warns about (and drops) every other one
    (the warnings point at the user's ``app.run()`` call, through ``serving.serve``)."""
    import uvicorn

    known = set(inspect.signature(uvicorn.Config.__init__).parameters) - {"self", "app", "host", "port"}
    options = {}
    for keyword, value in kwargs.items():
        if keyword in known:
            options[keyword] = value
        elif keyword in RUN_NO_EFFECT:
            warnings.warn(
                f"app.run({keyword}=...) has no effect in agentpack: {RUN_NO_EFFECT[keyword]}",
                UserWarning,
                stacklevel=4,
            )
        else:
            warnings.warn(
                f"app.run({keyword}=...) is neither an AgentScope Runtime run() keyword nor a uvicorn option; ignored",
                UserWarning,
                stacklevel=4,
            )
    return options


def deprecated_hook(
    name: str, instead: str, hooks: list[Callable[..., Any]], func: Callable[..., Any]
) -> Callable[..., Any]:
    """``@app.init`` / ``@app.shutdown``: kept working (the lifespan runs ``hooks``), with a warning
    pointing at the decorated line."""
    warnings.warn(
        f"@app.{name} is deprecated; pass lifespan= (or {instead}=) to AgentApp instead",
        DeprecationWarning,
        stacklevel=3,
    )
    hooks.append(func)
    return func
