"""How AgentApp answers requests it refuses — one exception handler per kind of refusal:

- an invalid body: 422, FastAPI's ``{"detail": [...]}``;
- a session that is already running (:class:`~agentpack.interrupt.SessionBusy`): 409;
- a backend or broker that cannot be reached (:class:`~agentpack.interrupt.BackendUnavailable`,
  :class:`~agentpack.tasks.BrokerUnavailable`): 503 naming it;
- an instance running its ``max_concurrent_runs`` already (:class:`~agentpack.app.limits.RunsFull`):
  503 with ``Retry-After``.

Routes just raise; the answer is decided here, once.  Every body is rendered so that no
input — however odd its text — turns a 4xx into a 500.
"""

from __future__ import annotations

from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request

from agentpack.app.limits import RunsFull
from agentpack.interrupt.base import BackendUnavailable, SessionBusy
from agentpack.protocol.excerpts import bounded_errors
from agentpack.run.json_response import SafeJSONResponse


async def validation_error(request: Request, exc: Exception) -> SafeJSONResponse:
    """FastAPI's 422 body (``{"detail": [...]}`` with ``loc``, ``msg``, ``type``, ``input``), the
    ``input`` of each error bounded (:func:`bounded_errors`); ``more_errors`` counts the rest."""
    assert isinstance(exc, RequestValidationError)
    listed, more = bounded_errors(exc.errors())
    body: dict[str, Any] = {"detail": jsonable_encoder(listed)}
    if more:
        body["more_errors"] = more
    return SafeJSONResponse(body, status_code=422)


async def runs_full(request: Request, exc: Exception) -> SafeJSONResponse:
    """503 with ``Retry-After``: the instance runs its ``max_concurrent_runs`` already."""
    assert isinstance(exc, RunsFull)
    return SafeJSONResponse(
        {"detail": str(exc), "error": str(exc)}, status_code=503, headers={"Retry-After": str(exc.retry_after)}
    )


async def session_busy(request: Request, exc: Exception) -> SafeJSONResponse:
    assert isinstance(exc, SessionBusy)
    return SafeJSONResponse({"detail": str(exc), "session_id": exc.session_id}, status_code=409)


async def unavailable(request: Request, exc: Exception) -> SafeJSONResponse:
    """503 naming what is down.  ``error`` (and a broker failure's ``answer``, e.g. a failed
    task submission's ``status: failed``) are keys AgentScope Runtime clients read."""
    extra = getattr(exc, "answer", None) or {}
    return SafeJSONResponse({"detail": str(exc), "error": str(exc), **extra}, status_code=503)


def install(app: Any) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(SessionBusy, session_busy)
    app.add_exception_handler(BackendUnavailable, unavailable)
    app.add_exception_handler(RunsFull, runs_full)


def install_task_answers(app: Any) -> None:
    """Register the broker's 503 on ``app``: with its first task route, since only a submission
    raises it, so an app without tasks never imports the task layer (it is on every cold start)."""
    from agentpack.tasks.base import BrokerUnavailable

    app.add_exception_handler(BrokerUnavailable, unavailable)
