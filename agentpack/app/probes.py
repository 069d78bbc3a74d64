"""The built-in routes every AgentApp has: ``GET /``, ``/health``, ``/readiness``, ``/liveness``.

``/readiness`` is the one a platform should route traffic by: 503 with a reason until the
app has started and while a backend it needs (Redis, the broker, your own checks) does not
answer.  ``/liveness`` only says the process serves HTTP.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse

from agentpack._version import __version__

if TYPE_CHECKING:
    from agentpack.app.agent_app import AgentApp

SYSTEM_TAG = "system"


def add_probes(app: AgentApp) -> None:
    async def root() -> dict[str, Any]:
        return {
            "service": app.app_name,
            "name": app.app_name,
            "description": app.app_description,
            "version": app.version,
            "agentpack_version": __version__,
            "endpoints": app.registered_endpoints(),
        }

    async def health() -> dict[str, Any]:
        return {"status": "healthy", "timestamp": time.time(), "running_sessions": len(app.runtime.guard)}

    async def liveness() -> dict[str, Any]:
        return {"status": "alive", "timestamp": time.time()}

    async def readiness() -> JSONResponse:
        reason = await app.runtime.readiness_problem()
        if reason is None:
            return JSONResponse({"status": "ready", "timestamp": time.time()})
        return JSONResponse({"status": "not_ready", "reason": reason, "timestamp": time.time()}, status_code=503)

    # response_model=None: these return plain dicts, and skipping FastAPI's response model
    # inference keeps AgentApp() as cheap to build as a bare FastAPI app.
    for path, endpoint, summary in (
        ("/", root, "Describe this agent and list its endpoints"),
        ("/health", health, "Health"),
        ("/readiness", readiness, "Readiness: 200 once started and its backends answer"),
        ("/liveness", liveness, "Liveness"),
    ):
        app.add_api_route(path, endpoint, methods=["GET"], tags=[SYSTEM_TAG], summary=summary, response_model=None)
