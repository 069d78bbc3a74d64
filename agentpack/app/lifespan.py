"""One lifespan out of agentpack's own start-up, the user's hooks and the user's ``lifespan``.

Order on start: agentpack's start-up (framework imports, backends) -> deprecated
``@app.init`` functions -> ``before_start(app)`` -> the user's ``lifespan`` enters -> ready.
On stop, the reverse: the user's ``lifespan`` exits -> ``after_finish(app)`` ->
``@app.shutdown`` functions -> agentpack's shutdown.  Clean-up steps always run, even when
start-up failed halfway, and one failing clean-up step never skips the next.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from agentpack._aio import call
from agentpack.run.stream import CLEANUP_GRACE, streams_ended

if TYPE_CHECKING:
    from agentpack.app.agent_app import AgentApp

logger = logging.getLogger("agentpack.lifespan")

Hook = Callable[..., Any]
Lifespan = Callable[[Any], Any]


async def call_hook(hook: Hook, app: AgentApp) -> None:
    """Call a sync or async hook with the app, or with nothing if it takes no argument."""
    takes_app = any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        for p in inspect.signature(hook).parameters.values()
    )
    await call(hook, *((app,) if takes_app else ()), in_thread=False)


async def _cleanup(step: str, hook: Hook, app: AgentApp) -> None:
    try:
        await call_hook(hook, app)
    except Exception:
        logger.exception("%s failed; continuing shutdown", step)


#: Variables that say the app runs on a platform with many instances (FC, AgentRun, Lambda).
_PLATFORM_MARKERS = ("FC_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_NAME", "AGENTPACK_PLATFORM")
#: Set to "1" by agentpack's emulators when they run a single instance.
SINGLE_INSTANCE = "AGENTPACK_SINGLE_INSTANCE"


def warn_if_stops_stay_local(app: AgentApp) -> None:
    """On a platform that runs several instances, a stop or a second request for a session
    may land on another instance than the run: say so when the backend cannot reach there."""
    import os

    platform = next((name for name in _PLATFORM_MARKERS if os.environ.get(name)), None)
    if os.environ.get(SINGLE_INSTANCE) == "1":  # an emulator that runs one instance: nothing to cross
        return
    if platform is not None and not app.runtime.backend.shared:
        logger.warning(
            "this app runs where requests may reach several instances (%s is set) but its interrupt backend "
            "is %s: stops and session locks will not cross instances; set AGENTPACK_REDIS_URL (or "
            "interrupt_redis_url=) to a Redis all instances reach",
            platform,
            app.runtime.backend.name,
        )


def compose(
    user_lifespan: Lifespan | None,
    before_start: Hook | None,
    after_finish: Hook | None,
    init_hooks: list[Hook],
    shutdown_hooks: list[Hook],
) -> Callable[[AgentApp], Any]:
    """Build the lifespan FastAPI runs; the user's yielded state becomes ``request.state``.

    ``init_hooks`` / ``shutdown_hooks`` are the lists the deprecated ``@app.init`` /
    ``@app.shutdown`` decorators append to; they are read when the app starts.
    """

    async def start_agentpack(app: AgentApp) -> None:
        warn_if_stops_stay_local(app)
        await app.runtime.start()
        if app.query_handler is not None:
            await app.query_handler.framework.prepare()
            await app.protocols.startup()

    async def stop_agentpack(app: AgentApp) -> None:
        if app.query_handler is not None:
            await app.protocols.shutdown()  # their runs end (and say so) while the backends are up
        await app.runtime.aclose()
        # last: the server exits when this returns, and streams the shutdown ended are still
        # writing their last events (a run releases its session before its terminal event)
        await streams_ended(CLEANUP_GRACE)

    @asynccontextmanager
    async def lifespan(app: AgentApp) -> AsyncIterator[Any]:
        cleanups: list[tuple[str, Hook]] = [("agentpack shutdown", stop_agentpack)]
        try:
            await start_agentpack(app)
            for hook in init_hooks:
                await call_hook(hook, app)
            cleanups += [("@app.shutdown function", hook) for hook in shutdown_hooks]
            if before_start is not None:
                await call_hook(before_start, app)
            if after_finish is not None:
                cleanups.append(("after_finish", after_finish))
            if user_lifespan is None:
                app.runtime.mark_ready()
                yield None
            else:
                async with user_lifespan(app) as state:
                    app.runtime.mark_ready()
                    yield state
        finally:
            app.runtime.mark_not_ready("the app is shutting down")
            for step, hook in reversed(cleanups):
                await _cleanup(step, hook, app)

    return lifespan
