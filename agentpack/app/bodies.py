"""JSON bodies that agentpack's own routes (``/process`` and its ``/stop``) read themselves —
by FastAPI's rules, with FastAPI's answers, and documented in the OpenAPI schema exactly as
FastAPI documents a body parameter.

Why not a body parameter: FastAPI checks the type of every parameter it validates against
``pydantic.v1`` (to refuse v1 models), and that check imports all of ``pydantic.v1`` the first
time it runs: 85 to 104 M instructions, about 5 % of an agent's start-up, paid by the start of
every instance for models that are never v1.  These routes take the request instead, so an
agent's start imports no ``pydantic.v1`` (an app's own routes with parameters still do).

What a client sees is FastAPI's answer for a body parameter, rule for rule: an empty body is a
422 ``missing`` at ``["body"]``; a body is parsed as JSON when its
``Content-Type`` is ``application/json`` or ``application/*+json`` (or absent, with the route's
``strict_content_type`` off), else validated as the bytes it is; malformed JSON is a 422
``json_invalid`` at ``["body", position]``; a body that cannot be read is a 400 (one over
``FastAPI(max_body_size=...)`` a 413, agentpack's ``max_body_bytes`` a 413 anyway); each field
error is pydantic's, under ``["body", ...]``, raised as :class:`RequestValidationError` (so
an app's own handler for it sees these too).  One difference remains: the handler's own
``Depends`` parameters are solved first, so a request wrong in both gets their 422 and, once
they pass, the body's — where FastAPI lists both in one answer.
"""

from __future__ import annotations

import email.message
import functools
import inspect
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fastapi.datastructures import DefaultPlaceholder
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.routing import BaseRoute

__all__ = ["OwnBodyRoute", "documented_routes", "read_body", "reading_body"]

M = TypeVar("M", bound=BaseModel)
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])

#: The name of the endpoint parameter FastAPI passes the request in.
REQUEST_PARAMETER = "http_request"

_NOT_SENT = object()
#: Where Starlette's body-limit signals come from (``FastAPI(max_body_size=...)``), which have no
#: public type: they pass through, so that the limit's middleware answers 413, as FastAPI lets it.
_STARLETTE_BODY_LIMIT = "starlette.middleware.body_limit"


def _missing() -> dict[str, Any]:
    """FastAPI's error for a required body that was not sent (pydantic's ``missing``)."""
    return {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}


def _is_json(content_type: str | None, strict: bool) -> bool:
    if not content_type:
        return not strict
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


def _strict_content_type(request: Request) -> bool:
    """The route's ``strict_content_type`` (FastAPI's default: on)."""
    setting = getattr(request.scope.get("route"), "strict_content_type", True)
    return bool(setting.value if isinstance(setting, DefaultPlaceholder) else setting)


async def read_body(request: Request, model: type[M]) -> M:
    """The request's body as ``model``; a :class:`RequestValidationError` (422) or an
    :class:`HTTPException` (400) as FastAPI raises them for a body parameter of that type."""
    body: Any = _NOT_SENT
    try:
        raw = await request.body()
        if raw:
            body = (
                json.loads(raw) if _is_json(request.headers.get("content-type"), _strict_content_type(request)) else raw
            )
    except json.JSONDecodeError as exc:
        error = {"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error", "input": {}}
        raise RequestValidationError([{**error, "ctx": {"error": exc.msg}}], body=exc.doc) from exc
    except HTTPException:
        raise
    except Exception as exc:  # a body that could not be read (not UTF-8, the client gone…)
        if type(exc).__module__ == _STARLETTE_BODY_LIMIT:  # FastAPI's max_body_size: its 413 answers
            raise
        raise HTTPException(status_code=400, detail="There was an error parsing the body") from exc
    if body is _NOT_SENT:
        raise RequestValidationError([_missing()], body=None)
    try:
        return model.model_validate(body, from_attributes=True)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        raise RequestValidationError(errors, body=body) from None


def reading_body(
    endpoint: Endpoint, name: str, model: type[BaseModel], dependencies: Sequence[inspect.Parameter] = ()
) -> Endpoint:
    """``endpoint`` — which takes the request as :data:`REQUEST_PARAMETER` and reads its body with
    :func:`read_body` — made ready for :class:`OwnBodyRoute`: FastAPI serves it with the request
    and ``dependencies``, and documents it as if it took a parameter ``name`` of type ``model`` first."""
    request = inspect.Parameter(REQUEST_PARAMETER, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request)
    body = inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=model)
    keyword = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in dependencies]

    @functools.wraps(endpoint)
    def documented(*args: Any, **kwargs: Any) -> Any:  # never called: only its signature is read
        raise NotImplementedError

    documented.__signature__ = inspect.Signature([body, *keyword])  # type: ignore[attr-defined]
    endpoint.__signature__ = inspect.Signature([request, *keyword])  # type: ignore[attr-defined]
    endpoint.documented = documented  # type: ignore[attr-defined]
    return endpoint


class OwnBodyRoute(APIRoute):
    """An :class:`APIRoute` for an endpoint made by :func:`reading_body`, able to give the route
    FastAPI would have made for the documented signature — the one the OpenAPI schema describes."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self._made_with = kwargs

    def documented(self) -> APIRoute:
        """This route as a body parameter would make it (built on demand: it imports ``pydantic.v1``)."""
        return APIRoute(self.path, self.endpoint.documented, **self._made_with)  # type: ignore[attr-defined]


def documented_routes(routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    """``routes`` as the OpenAPI schema should see them: each :class:`OwnBodyRoute` as its documented twin."""
    return [route.documented() if isinstance(route, OwnBodyRoute) else route for route in routes]
