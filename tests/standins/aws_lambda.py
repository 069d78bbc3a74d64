"""Lambda's control plane for tests: moto's server, plus the published facts moto does not model.

moto (in this process, all services on one loopback port) answers the Lambda and IAM calls boto3
makes.  In front of it a WSGI layer records every request — method, path, query, JSON body, status
— and enforces what moto leaves out, each fact with its source in README.md beside this file (§10):

* **Who may call a public function URL** [urls-auth]: with ``AuthType: NONE`` the URL serves
  anonymous callers only when the resource policy of the alias grants *both*
  ``lambda:InvokeFunctionUrl`` (with ``FunctionUrlAuthType: NONE``) and ``lambda:InvokeFunction``
  (with ``InvokedViaFunctionUrl: true``) to the principal ``*``.  moto stores
  ``InvokedViaFunctionUrl`` as an unknown key rather than as the statement's condition, so the
  grants are read from the AddPermission / RemovePermission requests themselves
  (:meth:`LambdaControlPlane.public_url_refusal`).
* **Statement ids are unique** [api-addpermission]: a second AddPermission with a statement id the
  policy already holds is ``ResourceConflictException`` (409); moto would append a duplicate.
* **UpdateFunctionUrlConfig changes ``InvokeMode``** [api-urlconfig]; moto's update keeps the old
  mode, so the stand-in applies it to moto's function after a successful update.
* moto already leaves ``Environment`` out of GetFunction when the function has no variables, as
  Lambda does.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

REGION = "us-east-1"
KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
#: The grants a public URL needs [urls-auth]: (Action, the key that limits it, its value).
PUBLIC_URL_GRANTS = (
    ("lambda:InvokeFunctionUrl", "FunctionUrlAuthType", "NONE"),
    ("lambda:InvokeFunction", "InvokedViaFunctionUrl", True),
)


@dataclass
class LambdaRequest:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int = 0

    @property
    def function(self) -> str:
        parts = self.path.split("/")
        return unquote(parts[3]) if len(parts) > 3 and parts[2] == "functions" else ""


@dataclass
class LambdaControlPlane:
    """moto's server behind a recording, fact-checking WSGI layer (see the module doc)."""

    requests: list[LambdaRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._moto = DomainDispatcherApplication(create_backend_app)
        self._lock = threading.Lock()
        #: (function, qualifier) -> statement id -> the AddPermission body that made it
        self.policies: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self.server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    # -- for tests --------------------------------------------------------------------------------------
    def client(self, service: str = "lambda") -> Any:
        import boto3

        return boto3.client(service, endpoint_url=self.url, region_name=REGION, **KEYS)

    def session(self) -> Any:
        import boto3

        return boto3.session.Session(region_name=REGION, **KEYS)

    def create_role(self, name: str = "agentpack-tests") -> str:
        trust = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
        return str(self.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"])

    def writes(self, function: str) -> list[str]:
        """The successful requests that changed something about ``function``, as "METHOD path"."""
        with self._lock:
            return [f"{r.method} {r.path}" for r in self.requests
                    if r.method != "GET" and r.status < 300 and r.function == function]

    def of(self, method: str, suffix: str) -> list[LambdaRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path.rstrip("/").endswith(suffix)]

    def public_url_refusal(self, function: str, qualifier: str) -> list[str]:
        """The grants an anonymous call of the URL on ``qualifier`` lacks ([] when it would be served)."""
        with self._lock:
            statements = list(self.policies.get((function, qualifier), {}).values())
        return [f"{action} to * with {key} = {json.dumps(value)}" for action, key, value in PUBLIC_URL_GRANTS
                if not _granted(statements, action, key, value)]

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)

    # -- the WSGI layer ------------------------------------------------------------------------------------
    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(raw)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        request = LambdaRequest(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""),
                                dict(parse_qsl(environ.get("QUERY_STRING", ""))), body)
        refusal = self._check(request)
        if refusal is not None:
            request.status = 409
            with self._lock:
                self.requests.append(request)
            start_response("409 Conflict", [("Content-Type", "application/json"), ("x-amzn-ErrorType", "ResourceConflictException")])
            return [json.dumps({"Type": "User", "message": refusal}).encode()]
        seen: dict[str, int] = {}

        def recording_start(status: str, headers: list[Any], *args: Any) -> Any:
            seen["status"] = int(status.split()[0])
            return start_response(status, headers, *args)

        answer = self._moto(environ, recording_start)
        request.status = seen.get("status", 0)
        with self._lock:
            self.requests.append(request)
            if request.status < 300:
                self._track(request)
        return answer  # type: ignore[no-any-return]

    def _key(self, request: LambdaRequest) -> tuple[str, str]:
        return request.function, request.query.get("Qualifier", "")

    def _check(self, request: LambdaRequest) -> str | None:
        if request.method == "POST" and request.path.rstrip("/").endswith("/policy") and isinstance(request.body, dict):
            sid = request.body.get("StatementId", "")
            with self._lock:
                if sid in self.policies.get(self._key(request), {}):
                    return f"The statement id ({sid}) provided already exists. Please provide a new statement id, or remove the existing statement."
        return None

    def _track(self, request: LambdaRequest) -> None:
        parts = request.path.rstrip("/").split("/")
        if request.method == "POST" and parts[-1] == "policy" and isinstance(request.body, dict):
            self.policies.setdefault(self._key(request), {})[request.body["StatementId"]] = request.body
        elif request.method == "DELETE" and len(parts) > 5 and parts[-2] == "policy":
            self.policies.get(self._key(request), {}).pop(unquote(parts[-1]), None)
        elif request.method == "PUT" and parts[-1] == "url" and isinstance(request.body, dict) and "InvokeMode" in request.body:
            # UpdateFunctionUrlConfig takes InvokeMode [api-urlconfig]; moto's update keeps the old one
            from moto.awslambda.models import lambda_backends
            from moto.core import DEFAULT_ACCOUNT_ID

            function = lambda_backends[DEFAULT_ACCOUNT_ID][REGION].get_function(request.function)
            function.url_config.config["InvokeMode"] = request.body["InvokeMode"]
        elif request.method == "DELETE" and len(parts) == 4 and parts[2] == "functions":
            for key in [k for k in self.policies if k[0] == request.function]:
                del self.policies[key]


def _granted(statements: list[dict[str, Any]], action: str, key: str, value: Any) -> bool:
    return any(s.get("Action") == action and s.get("Principal") == "*" and s.get(key) == value for s in statements)
