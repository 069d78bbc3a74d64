"""Loopback stand-in for Model Studio's (Bailian, API 2023-12-29) high-code agent calls.

The control plane checks what the API gateway checks (the ACS3 signature, version and action
headers, the payload hash: ``acs.py``) and each request as the SDK's request builders send it
(``alibabacloud_bailian20231229/client.py``): ``ApplyTempStorageLease`` is ``POST /{ws}/datacenter``
with a form body ``FileName`` + ``SizeInBytes``; ``HighCodeDeploy`` is ``POST
/openapi/{ws}/highCode/publish`` with a JSON body; ``GetPublishedAgent``, ``ListPublishedAgent``
and ``DeleteAgent`` are ``GET``/``GET``/``DELETE`` under ``/{ws}/application/agents``.

Beside it, on the same port and without the gateway's signature:

* the lease's upload URL (``PUT /upload/<lease>?Expires=…&Signature=…``, as OSS presigned URLs
  look), which takes the file only with the lease's headers and exactly the size leased;
* the agents' data plane, ``/apps/<agent id>/…``, which checks ``Authorization: Bearer <key>``
  and relays to what ``on_code(name, wheel_bytes, config)`` returned for the agent's code —
  tests start the uploaded wheel there under ``agentpack emulate``.

A publish takes ``publish_after_polls`` GetPublishedAgent polls (404 until then: a slow
publish); ``fail_next_deploy(code, message)`` makes the next HighCodeDeploy answer
``success: false`` with that error, as the response model allows.  The facts and their sources
are in README.md ("Model Studio").
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl

from .acs import AcsStandIn, ApiError, Call, Request, require

CodeHook = Callable[[str, bytes, dict], str | None]
TEST_API_KEY = "sk-loopback-test-key"
#: [assumed] no public limit for a high-code package; AgentCore's code packages take 500 MB
MAX_FILE = 500 * 1000 * 1000
WHEEL_RE = re.compile(r"^[A-Za-z0-9_.]+-[A-Za-z0-9_.!+]+-[a-z0-9_.]+-[a-z0-9_.]+-[a-z0-9_.]+\.whl$")
#: The actions whose answers use Model Studio's lower-case envelope (code/message/requestId/success)
LOWER_CASE = {"GetPublishedAgent", "ListPublishedAgent", "DeleteAgent"}


@dataclass
class LeaseRecord:
    lease_id: str
    file_name: str
    size: int
    headers: dict[str, str]
    token: str
    data: bytes | None = None


@dataclass
class Agent:
    code: str
    name: str
    description: str
    wheel: bytes = field(repr=False)
    file_name: str = ""
    telemetry: bool = False
    polls_left: int = 0
    url: str | None = None
    deploys: int = 1


class ModelStudioStandIn(AcsStandIn):
    product = "bailian"
    version = "2023-12-29"

    def __init__(self, workspace: str = "llm-test-ws", *, on_code: CodeHook | None = None,
                 publish_after_polls: int = 2, api_key: str = TEST_API_KEY, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.workspace = workspace
        self.on_code = on_code
        self.publish_after_polls = publish_after_polls
        self.api_key = api_key
        self.leases: dict[str, LeaseRecord] = {}
        self.agents: dict[str, Agent] = {}
        self.uploads: list[tuple[str, int]] = []  # (lease id, bytes) of each accepted upload
        self.relayed: list[str] = []  # data-plane requests relayed ("METHOD /path")
        self._deploy_failures: list[tuple[str, str]] = []
        self._agent_lock = threading.Lock()
        ws = "/{WorkspaceId}"
        self.route("POST", f"{ws}/datacenter", "ApplyTempStorageLease", self._apply_lease)
        self.route("POST", "/openapi/{WorkspaceId}/highCode/publish", "HighCodeDeploy", self._deploy)
        self.route("GET", f"{ws}/application/agents", "ListPublishedAgent", self._list)
        self.route("GET", f"{ws}/application/agents/{{appCode}}", "GetPublishedAgent", self._get)
        self.route("DELETE", f"{ws}/application/agents/{{appCode}}", "DeleteAgent", self._delete)

    # -- test controls ------------------------------------------------------------------------------
    def fail_next_deploy(self, code: str = "HighCode.DeployFailed", message: str = "the package could not be installed") -> None:
        self._deploy_failures.append((code, message))

    def by_name(self, name: str) -> Agent | None:
        with self._agent_lock:
            return next((a for a in self.agents.values() if a.name == name), None)

    @property
    def data_plane(self) -> str:
        """The invoke_url template that reaches the agents through this stand-in."""
        return f"http://127.0.0.1:{self.port}/apps/{{agent_id}}"

    # -- envelopes ----------------------------------------------------------------------------------
    def error_body(self, error: ApiError, request_id: str) -> dict[str, Any]:
        return {"Code": error.code, "Message": error.message, "RequestId": request_id, "code": error.code,
                "message": error.message, "requestId": request_id, "success": False, "httpStatusCode": error.status}

    def _workspace(self, request: Request) -> None:
        if request.params["WorkspaceId"] != self.workspace:
            raise ApiError(403, "Workspace.AccessDenied",
                           f"the caller has no access to workspace {request.params['WorkspaceId']!r}")

    # -- control plane ------------------------------------------------------------------------------
    def _apply_lease(self, request: Request) -> tuple[int, Any]:
        self._workspace(request)
        call = request.call
        require(call.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"),
                "ApplyTempStorageLease takes a form body (the SDK's req_body_type formData)")
        form = dict(parse_qsl(call.body.decode()))
        require(set(form) <= {"FileName", "SizeInBytes"}, f"unknown parameters {sorted(set(form) - {'FileName', 'SizeInBytes'})}")
        name, size = form.get("FileName", ""), form.get("SizeInBytes", "")
        require(bool(name) and "/" not in name, "FileName is required and is a file name, not a path", code="MissingFileName")
        require(size.isdigit() and int(size) > 0, "SizeInBytes must be a positive integer", code="InvalidSizeInBytes")
        if int(size) > MAX_FILE:
            raise ApiError(400, "DataCenter.FileTooLarge", f"the file is {size} bytes, over the limit")
        lease_id = uuid.uuid4().hex
        token = uuid.uuid4().hex
        headers = {"Content-Type": "application/octet-stream", "x-oss-meta-lease": lease_id}
        self.leases[lease_id] = LeaseRecord(lease_id, name, int(size), headers, token)
        url = f"http://127.0.0.1:{self.port}/upload/{lease_id}?Expires=3600&Signature={token}"
        return 200, {"Code": "Success", "Message": "", "RequestId": call.request_id, "Status": "200", "Success": True,
                     "Data": {"TempStorageLeaseId": lease_id, "Param": {"Method": "PUT", "Url": url, "Headers": headers}}}

    def _deploy(self, request: Request) -> tuple[int, Any]:
        self._workspace(request)
        require(request.call.headers.get("content-type", "").startswith("application/json"),
                "HighCodeDeploy takes a JSON body (the SDK's req_body_type json)")
        body = request.body
        allowed = {"agentName", "agentDesc", "agentId", "sourceCodeName", "sourceCodeOssUrl", "telemetryEnabled"}
        require(set(body) <= allowed, f"unknown fields {sorted(set(body) - allowed)}")
        name = body.get("agentName")
        require(isinstance(name, str) and 0 < len(name) <= 64, "agentName is required (1-64 characters)")
        lease = self.leases.get(str(body.get("sourceCodeOssUrl")))
        require(lease is not None, "sourceCodeOssUrl must be a TempStorageLeaseId of this workspace",
                code="InvalidSourceCodeOssUrl")
        assert lease is not None
        require(lease.data is not None, "nothing was uploaded to this lease", code="SourceCodeNotUploaded")
        require(body.get("sourceCodeName") == lease.file_name, "sourceCodeName must be the file name leased")
        require(WHEEL_RE.match(lease.file_name) is not None, "the source code must be a wheel (.whl)",
                code="InvalidSourceCode")
        if "telemetryEnabled" in body:
            require(isinstance(body["telemetryEnabled"], bool), "telemetryEnabled must be a boolean")
        if self._deploy_failures:
            code, message = self._deploy_failures.pop(0)
            return 200, {"success": False, "errorCode": code, "errorMsg": message}
        assert lease.data is not None
        with self._agent_lock:
            agent_id = body.get("agentId")
            if agent_id is not None:
                agent = self.agents.get(str(agent_id))
                require(agent is not None, f"agent {agent_id} does not exist", status=404, code="AgentNotFound")
                assert agent is not None
                agent.name, agent.wheel, agent.deploys = name, lease.data, agent.deploys + 1
            else:
                require(all(a.name != name for a in self.agents.values()), f"an agent named {name!r} exists; pass agentId",
                        status=409, code="AgentNameExists")
                agent_id = f"app-{uuid.uuid4().hex[:16]}"
                agent = Agent(str(agent_id), name, "", lease.data)
                self.agents[agent.code] = agent
            agent.description = str(body.get("agentDesc") or "")
            agent.file_name = lease.file_name
            agent.telemetry = bool(body.get("telemetryEnabled"))
            agent.polls_left = self.publish_after_polls
        agent.url = self.on_code(name, lease.data, {"agentId": agent.code}) if self.on_code else None
        del self.leases[lease.lease_id]  # a lease is used once
        return 200, {"success": True, "data": agent.code}

    def _visible(self, agent: Agent) -> dict[str, Any]:
        return {"code": agent.code, "name": agent.name, "description": agent.description, "type": "agent",
                "subType": "highCode"}

    def _get(self, request: Request) -> tuple[int, Any]:
        self._workspace(request)
        with self._agent_lock:
            agent = self.agents.get(request.params["appCode"])
            if agent is None or agent.polls_left > 0:
                if agent is not None:
                    agent.polls_left -= 1
                raise ApiError(404, "AgentNotFound", f"no published agent {request.params['appCode']}")
            data = self._visible(agent)
        return 200, {"code": "Success", "success": True, "httpStatusCode": 200, "requestId": request.call.request_id,
                     "data": data}

    def _list(self, request: Request) -> tuple[int, Any]:
        self._workspace(request)
        page_no, page_size = request.query.get("pageNo", "1"), request.query.get("pageSize", "10")
        require(page_no.isdigit() and page_size.isdigit() and int(page_size) <= 100, "pageNo and pageSize are integers")
        with self._agent_lock:
            published = [self._visible(a) for a in self.agents.values() if a.polls_left <= 0]
        start = (int(page_no) - 1) * int(page_size)
        return 200, {"code": "Success", "success": True, "httpStatusCode": 200, "requestId": request.call.request_id,
                     "data": {"list": published[start:start + int(page_size)], "pageNo": int(page_no),
                              "pageSize": int(page_size), "total": len(published)}}

    def _delete(self, request: Request) -> tuple[int, Any]:
        self._workspace(request)
        with self._agent_lock:
            agent = self.agents.pop(request.params["appCode"], None)
        if agent is None:
            raise ApiError(404, "AgentNotFound", f"no agent {request.params['appCode']}")
        return 200, {"code": "Success", "success": True, "httpStatusCode": 200, "requestId": request.call.request_id,
                     "data": agent.code}

    # -- the upload URL and the data plane ------------------------------------------------------------
    def _dispatch(self, call: Call, raw_path: str, query_pairs: list[tuple[str, str]],
                  headers: dict[str, list[str]]) -> tuple[int, Any, dict[str, str]]:
        if raw_path.startswith("/upload/"):
            return self._upload(call, raw_path[len("/upload/"):])
        return super()._dispatch(call, raw_path, query_pairs, headers)

    def _upload(self, call: Call, lease_id: str) -> tuple[int, Any, dict[str, str]]:
        call.action = "Upload"
        lease = self.leases.get(lease_id)
        if lease is None or call.query.get("Signature") != lease.token or call.method != "PUT":
            return 403, {"Code": "AccessDenied", "Message": "the presigned URL is not valid"}, {}
        wrong = [k for k, v in lease.headers.items() if call.headers.get(k.lower()) != v]
        if wrong:
            return 403, {"Code": "SignatureDoesNotMatch", "Message": f"headers {wrong} differ from the lease's"}, {}
        if len(call.body) != lease.size:
            return 400, {"Code": "InvalidArgument", "Message": f"{len(call.body)} bytes sent, {lease.size} leased"}, {}
        lease.data = call.body
        self.uploads.append((lease_id, len(call.body)))
        return 200, None, {}

    def _handle(self, http: BaseHTTPRequestHandler) -> None:
        if http.path.startswith("/apps/"):
            self._relay(http)
        else:
            super()._handle(http)

    def _relay(self, http: BaseHTTPRequestHandler) -> None:
        """The agent's data plane: a bearer key, then the request relayed to the agent's code, streamed back."""
        import httpx

        agent_id, _, rest = http.path[len("/apps/"):].partition("/")
        length = int(http.headers.get("Content-Length") or 0)
        body = http.rfile.read(length) if length else b""
        with self._agent_lock:
            agent = self.agents.get(agent_id)
            url = agent.url if agent is not None and agent.polls_left <= 0 else None
        if http.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._plain(http, 401, b'{"code":"InvalidApiKey","message":"Invalid API-key provided."}')
        if url is None:
            return self._plain(http, 404, b'{"code":"AppNotFound","message":"no published agent"}')
        self.relayed.append(f"{http.command} /{rest}")
        forward = {k: v for k, v in http.headers.items() if k.lower() not in ("host", "authorization", "content-length")}
        with httpx.Client(timeout=None) as client, client.stream(http.command, f"{url.rstrip('/')}/{rest}",
                                                                 headers=forward, content=body) as answer:
            http.send_response(answer.status_code)
            for name, value in answer.headers.items():
                if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                    http.send_header(name, value)
            http.send_header("Transfer-Encoding", "chunked")
            http.end_headers()
            for chunk in answer.iter_raw():
                if chunk:
                    http.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    http.wfile.flush()
            http.wfile.write(b"0\r\n\r\n")
            http.wfile.flush()

    @staticmethod
    def _plain(http: BaseHTTPRequestHandler, status: int, data: bytes) -> None:
        http.send_response(status)
        http.send_header("Content-Type", "application/json")
        http.send_header("Content-Length", str(len(data)))
        http.end_headers()
        http.wfile.write(data)
