"""Loopback stand-in for the AgentRun control plane (API version 2025-09-10).

Agent runtimes move through a status machine as the real service's do: CREATING or
UPDATING until enough ``GetAgentRuntime`` polls (and seconds) have passed, then READY — or
FAILED with a ``statusReason`` when a test scripted it, or never, when a test wants a
deployer to time out. Versions are published from READY runtimes, endpoints route to a
version and report an ``endpointPublicUrl``. Answers use the service's envelope
``{code, requestId, data}``; errors ``{code, message, requestId}``.

``on_code(name, zip_bytes, config)`` is called after every successful create or update with
the runtime's code and configuration; the URL it returns becomes the public URL of the
endpoints whose target version runs that code.
"""

from __future__ import annotations

import base64
import binascii
import copy
import io
import re
import sys
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .acs import AcsStandIn, ApiError, Request, crc64_xz, now_iso, require

CodeHook = Callable[[str, bytes, dict], Optional[str]]

NAME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_-]{0,127}$")
ENV_KEY_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
ROLE_RE = re.compile(r"^acs:ram::\d+:role/[^/]+$")
LANGUAGES = {"python3.10", "python3.12", "nodejs18", "nodejs20", "java8", "java11"}
ARTIFACT_TYPES = {"Code", "Container"}
MAX_INLINE_ZIP = 100 * 1024 * 1024
IN_PROGRESS = {"CREATING", "UPDATING", "DELETING"}
MAX_OSS_ZIP = 500 * 1024 * 1024  # [assumed] FC's limit for code from OSS
# sessionAffinityType values [sdk _create_agent_runtime_input.py: NONE, HEADER_FIELD, GENERATED_COOKIE, COOKIE alias]
AFFINITY_TYPES = {"NONE", "HEADER_FIELD", "GENERATED_COOKIE", "COOKIE"}
# networkMode values [Serverless-Devs agentrun-sdk-python agentrun/utils/model.py NetworkMode]
NETWORK_MODES = {"PUBLIC", "PRIVATE", "PUBLIC_AND_PRIVATE"}
# credentials [Serverless-Devs agentrun-sdk-python agentrun/credential/model.py; name rule: the "voucher
# management" page, https://www.alibabacloud.com/help/en/functioncompute/voucher-management]
CREDENTIAL_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
CREDENTIAL_AUTH_TYPES = {"jwt", "api_key", "basic", "ak_sk", "custom_header"}
CREDENTIAL_SOURCE_TYPES = {"external_llm", "external_tool", "internal"}
#: what a list answer shows instead of a variable's value [assumed: issue 19 item 10, list answers may mask]
MASK = "******"


@dataclass
class _Plan:
    """How the next transition of a runtime ends."""

    outcome: str  # READY | FAILED | HANG
    reason: str = ""


@dataclass
class _Code:
    data: Optional[bytes]
    url: Optional[str] = None


@dataclass
class _Runtime:
    record: dict[str, Any]
    code: _Code
    polls: int = 0
    since: float = field(default_factory=time.monotonic)
    plan: _Plan = field(default_factory=lambda: _Plan("READY"))
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> {"meta", "config", "code"}
    next_version: int = 1
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> record (+ private keys)


class AgentRunStandIn(AcsStandIn):
    product = "agentrun"
    version = "2025-09-10"

    def __init__(self, *, on_code: Optional[CodeHook] = None, ready_after_polls: int = 1,
                 ready_after_seconds: float = 0.0, region: str = "cn-hangzhou",
                 account_id: str = "1234567890123456", max_inline_zip: int = MAX_INLINE_ZIP,
                 endpoint_ready_status: str = "READY", oss: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # code from OSS is read from ``oss`` (an OSSStandIn) when given, else from ``oss_objects``
        self.oss = oss
        self.oss_objects: dict[tuple[str, str], bytes] = {}
        self.credentials: dict[str, dict[str, Any]] = {}
        # The published endpoint example shows ACTIVE where runtimes say READY; tests can pick either.
        self.endpoint_ready_status = endpoint_ready_status
        self.on_code = on_code
        self.max_inline_zip = max_inline_zip
        self.ready_after_polls = ready_after_polls
        self.ready_after_seconds = ready_after_seconds
        self.region = region
        self.account_id = account_id
        self.runtimes: dict[str, _Runtime] = {}
        # Whether GetAgentRuntime masks variable values as list answers do: no page says either
        # way [assumed: it shows them]; tests set True to exercise the other answer.
        self.get_masks_env = False
        self._plans: list[tuple[Optional[str], _Plan]] = []
        self._state = threading.RLock()
        base = f"/{self.version}/agents/runtimes"
        self.route("POST", base, "CreateAgentRuntime", self._create)
        self.route("GET", base, "ListAgentRuntimes", self._list)
        self.route("GET", base + "/{agentRuntimeId}", "GetAgentRuntime", self._get)
        self.route("PUT", base + "/{agentRuntimeId}", "UpdateAgentRuntime", self._update)
        self.route("DELETE", base + "/{agentRuntimeId}", "DeleteAgentRuntime", self._delete)
        self.route("POST", base + "/{agentRuntimeId}/versions", "PublishRuntimeVersion", self._publish)
        self.route("GET", base + "/{agentRuntimeId}/versions", "ListAgentRuntimeVersions", self._list_versions)
        self.route("POST", base + "/{agentRuntimeId}/endpoints", "CreateAgentRuntimeEndpoint", self._create_endpoint)
        self.route("GET", base + "/{agentRuntimeId}/endpoints", "ListAgentRuntimeEndpoints", self._list_endpoints)
        self.route("GET", base + "/{agentRuntimeId}/endpoints/{endpointId}", "GetAgentRuntimeEndpoint", self._get_endpoint)
        self.route("PUT", base + "/{agentRuntimeId}/endpoints/{endpointId}", "UpdateAgentRuntimeEndpoint", self._update_endpoint)
        self.route("DELETE", base + "/{agentRuntimeId}/endpoints/{endpointId}", "DeleteAgentRuntimeEndpoint", self._delete_endpoint)
        credentials = f"/{self.version}/agents/credentials"
        self.route("POST", credentials, "CreateCredential", self._create_credential)
        self.route("GET", credentials + "/{credentialName}", "GetCredential", self._get_credential)
        self.route("DELETE", credentials + "/{credentialName}", "DeleteCredential", self._delete_credential)

    def error_body(self, error: ApiError, request_id: str) -> dict[str, Any]:
        return {"code": error.code, "message": error.message, "requestId": request_id}

    # -- test controls -------------------------------------------------------------------------

    def fail_next_deploy(self, reason: str, name: Optional[str] = None) -> None:
        """The next create/update (of runtime ``name``, or of any) ends FAILED with ``reason``."""
        with self._state:
            self._plans.append((name, _Plan("FAILED", reason)))

    def hang_next_deploy(self, name: Optional[str] = None) -> None:
        """The next create/update stays CREATING/UPDATING for good (for deadline tests)."""
        with self._state:
            self._plans.append((name, _Plan("HANG")))

    def by_name(self, name: str) -> Optional[dict[str, Any]]:
        with self._state:
            for runtime in self.runtimes.values():
                if runtime.record["agentRuntimeName"] == name:
                    return copy.deepcopy(runtime.record)
        return None

    def affinity_header(self, name: str) -> Optional[str]:
        """The header a runtime's requests are kept on one instance by (None: no header affinity)."""
        record = self.by_name(name) or {}
        return record.get("headerFieldName") if record.get("sessionAffinityType") == "HEADER_FIELD" else None

    def code_of(self, runtime_id: str) -> Optional[bytes]:
        with self._state:
            return self._runtime(runtime_id).code.data

    # -- envelope and lookups --------------------------------------------------------------------

    def _ok(self, request: Request, data: Any) -> tuple[int, Any]:
        return 200, {"code": "SUCCESS", "requestId": request.call.request_id, "data": data}

    def _runtime(self, runtime_id: str) -> _Runtime:
        runtime = self.runtimes.get(runtime_id)
        if runtime is None:
            raise ApiError(404, "ERR_NOT_FOUND", f"agent runtime '{runtime_id}' does not exist")
        return runtime

    def _take_plan(self, name: str) -> _Plan:
        for index, (target, plan) in enumerate(self._plans):
            if target in (None, name):
                del self._plans[index]
                return plan
        return _Plan("READY")

    def _advance(self, runtime: _Runtime) -> None:
        """Move an in-progress runtime on, as one status poll observes it."""
        record = runtime.record
        if record["status"] not in IN_PROGRESS:
            return
        runtime.polls += 1
        if runtime.plan.outcome == "HANG":
            return
        if runtime.polls <= self.ready_after_polls or time.monotonic() - runtime.since < self.ready_after_seconds:
            return
        if record["status"] == "DELETING":
            del self.runtimes[record["agentRuntimeId"]]
            return
        if runtime.plan.outcome == "FAILED":
            record["status"], record["statusReason"] = "FAILED", runtime.plan.reason
        else:
            record["status"], record["statusReason"] = "READY", ""
        record["lastUpdatedAt"] = now_iso()

    def _start_transition(self, runtime: _Runtime, status: str, plan: Optional[_Plan] = None) -> None:
        runtime.record["status"] = status
        runtime.record["statusReason"] = ""
        runtime.polls = 0
        runtime.since = time.monotonic()
        runtime.plan = plan or _Plan("READY")

    # -- validation --------------------------------------------------------------------------------

    def _validate_code(self, code: Any) -> _Code:
        require(isinstance(code, dict), "codeConfiguration must be an object", code="ERR_VALIDATION_FAILED")
        inline = code.get("zipFile")
        has_oss = bool(code.get("ossBucketName")) or bool(code.get("ossObjectName"))
        require(bool(inline) != has_oss, "codeConfiguration needs exactly one source: zipFile, or ossBucketName "
                                         "with ossObjectName", code="ERR_VALIDATION_FAILED")
        language = code.get("language")
        require(language in LANGUAGES, f"codeConfiguration.language must be one of {sorted(LANGUAGES)}",
                code="ERR_VALIDATION_FAILED")
        command = code.get("command")
        require(isinstance(command, list) and len(command) > 0 and all(isinstance(p, str) for p in command),
                "codeConfiguration.command must be a non-empty list of strings", code="ERR_VALIDATION_FAILED")
        if not inline:
            bucket, key = code.get("ossBucketName"), code.get("ossObjectName")
            require(bool(bucket) and bool(key),
                    "code from OSS needs both ossBucketName and ossObjectName", code="ERR_VALIDATION_FAILED")
            stored = self.oss.read_for_function_compute(bucket, key) if self.oss is not None else self.oss_objects.get((bucket, key))
            require(stored is not None, f"unable to access object {key} in bucket {bucket}; check that it exists and "
                                        "that AgentRun may read it (oss:GetObject)", code="ERR_VALIDATION_FAILED")
            require(len(stored) <= MAX_OSS_ZIP, f"the code package in OSS is {len(stored)} bytes, over {MAX_OSS_ZIP}",
                    code="ERR_VALIDATION_FAILED")
            return _Code(data=stored)
        require(isinstance(inline, str), "codeConfiguration.zipFile must be a base64 string", code="ERR_VALIDATION_FAILED")
        try:
            data = base64.b64decode(inline, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "ERR_VALIDATION_FAILED", "codeConfiguration.zipFile is not valid base64") from None
        require(len(data) <= self.max_inline_zip, f"the code package is {len(data)} bytes; inline packages are "
                                                   f"limited to {self.max_inline_zip}", code="ERR_VALIDATION_FAILED")
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                archive.infolist()
        except zipfile.BadZipFile:
            raise ApiError(400, "ERR_VALIDATION_FAILED", "the code package is not a valid zip file") from None
        stated = code.get("checksum")
        if stated not in (None, ""):
            actual = str(crc64_xz(data))
            require(str(stated) == actual, f"code checksum {stated} does not match the package's CRC-64 {actual}",
                    code="ERR_VALIDATION_FAILED")
        return _Code(data=data)

    def _validate(self, body: dict[str, Any], merged: dict[str, Any]) -> None:
        def check(condition: bool, message: str) -> None:
            require(condition, message, code="ERR_VALIDATION_FAILED")

        name = merged.get("agentRuntimeName")
        check(isinstance(name, str) and NAME_RE.match(name) is not None,
              "agentRuntimeName must start with a letter and hold at most 128 letters, digits, '_' or '-'")
        check(merged.get("artifactType") in ARTIFACT_TYPES, f"artifactType must be one of {sorted(ARTIFACT_TYPES)}")
        if merged["artifactType"] == "Container":
            container = merged.get("containerConfiguration")
            check(isinstance(container, dict) and bool(container.get("image")), "containerConfiguration.image is required")
        else:
            check(merged.get("codeConfiguration") is not None, "artifactType Code needs codeConfiguration")
        # [sdk _create_agent_runtime_input.py] codeConfiguration "is required when artifactType is Code":
        # a body that says Code carries its code (an update that keeps the code sends neither)
        if body.get("artifactType") == "Code":
            check(bool(body.get("codeConfiguration")), "codeConfiguration is required when artifactType is Code")
        cpu, memory = merged.get("cpu"), merged.get("memory")
        if isinstance(cpu, (int, float)) and isinstance(memory, int) and 0 < cpu <= 16 and 128 <= memory <= 32768:
            # [fc-ref] 1-4 GB of memory per vCPU, checked on the stored result (AgentRun runs on FC's instances)
            check(1 <= (memory / 1024) / cpu <= 4, f"memory {memory} MB with cpu {cpu:g}: 1 to 4 GB per vCPU")
        affinity = merged.get("sessionAffinityType")
        if affinity is not None:
            check(affinity in AFFINITY_TYPES, f"sessionAffinityType must be one of {sorted(AFFINITY_TYPES)}")
            if affinity == "HEADER_FIELD":
                # [sdk] headerFieldName: "the request header used for session affinity when sessionAffinityType is HEADER_FIELD"
                header = merged.get("headerFieldName")
                check(isinstance(header, str) and re.fullmatch(r"[A-Za-z0-9-]{1,64}", header) is not None,
                      "sessionAffinityType HEADER_FIELD needs headerFieldName, a header name")
        network = body.get("networkConfiguration")
        if network is not None:
            check(isinstance(network, dict) and network.get("networkMode") in NETWORK_MODES,
                  f"networkConfiguration.networkMode must be one of {sorted(NETWORK_MODES)}")
            if network["networkMode"] != "PUBLIC":
                # [assumed] a private network names where: the VPC, its vSwitches and a security group
                check(bool(network.get("vpcId")) and bool(network.get("vswitchIds")) and bool(network.get("securityGroupId")),
                      "networkMode PRIVATE or PUBLIC_AND_PRIVATE needs vpcId, vswitchIds and securityGroupId")
        logs = body.get("logConfiguration")
        if logs is not None:
            # [sdk _log_configuration.py] project and logstore; [assumed] both required
            check(isinstance(logs, dict) and bool(logs.get("project")) and bool(logs.get("logstore")),
                  "logConfiguration needs project and logstore")
        if body.get("credentialName"):
            # [assumed] the runtime's inbound credential must exist and be one for callers (source internal)
            found = self.credentials.get(body["credentialName"])
            check(found is not None and found["credentialSourceType"] == "internal",
                  f"credentialName {body['credentialName']!r} names no inbound (internal) credential")
        if "description" in body:
            check(isinstance(body["description"], str) and len(body["description"]) <= 256,
                  "description must be a string of at most 256 characters")
        for key in ("cpu", "memory", "port"):
            check(merged.get(key) is not None, f"{key} is required")
        if "cpu" in body:
            check(isinstance(body["cpu"], (int, float)) and 0 < body["cpu"] <= 16, "cpu must be between 0 and 16 vCPU")
        if "memory" in body:
            check(isinstance(body["memory"], int) and 128 <= body["memory"] <= 32768, "memory must be 128-32768 MB")
        if "port" in body:
            check(isinstance(body["port"], int) and 1 <= body["port"] <= 65535, "port must be between 1 and 65535")
        if "sessionConcurrencyLimitPerInstance" in body:
            value = body["sessionConcurrencyLimitPerInstance"]
            check(isinstance(value, int) and 1 <= value <= 200, "sessionConcurrencyLimitPerInstance must be 1-200")
        if "sessionIdleTimeoutSeconds" in body:
            value = body["sessionIdleTimeoutSeconds"]
            check(isinstance(value, int) and 1 <= value <= 86400, "sessionIdleTimeoutSeconds must be 1-86400")
        if "environmentVariables" in body:
            env = body["environmentVariables"]
            check(isinstance(env, dict), "environmentVariables must be an object of strings")
            for key, value in env.items():
                check(isinstance(value, str), f"environment variable {key} must have a string value")
                check(ENV_KEY_RE.match(key) is not None, f"environment variable name {key!r} is not valid")
        if body.get("executionRoleArn"):
            check(ROLE_RE.match(str(body["executionRoleArn"])) is not None,
                  "executionRoleArn must be a RAM role ARN such as acs:ram::<account>:role/<name>")
        health = body.get("healthCheckConfiguration")
        if health is not None:
            check(isinstance(health, dict), "healthCheckConfiguration must be an object")
            url = health.get("httpGetUrl")
            check(url is None or (isinstance(url, str) and url.startswith("/")),
                  "healthCheckConfiguration.httpGetUrl must be a path starting with '/'")

    # -- runtimes ------------------------------------------------------------------------------

    def _create(self, request: Request) -> tuple[int, Any]:
        body = request.body
        record = {k: v for k, v in body.items()}
        self._validate(body, record)
        code = self._validate_code(body["codeConfiguration"]) if body.get("codeConfiguration") else _Code(None)
        name = body["agentRuntimeName"]
        with self._state:
            if any(r.record["agentRuntimeName"] == name for r in self.runtimes.values()):
                raise ApiError(409, "ERR_CONFLICT", f"agent runtime '{name}' already exists")
            runtime_id = str(uuid.uuid4())
            now = now_iso()
            record.update({
                "agentRuntimeId": runtime_id,
                "agentRuntimeArn": f"acs:agentrun:{self.region}:{self.account_id}:agent-runtimes/{runtime_id}",
                "agentRuntimeVersion": "LATEST",
                "createdAt": now,
                "lastUpdatedAt": now,
                "status": "CREATING",
                "statusReason": "",
            })
            record.setdefault("description", "")
            code.url = self._call_hook(name, code.data, record)  # a 500 here leaves nothing created
            runtime = _Runtime(record=record, code=code)
            self._start_transition(runtime, "CREATING", self._take_plan(name))
            self.runtimes[runtime_id] = runtime
            return self._ok(request, _public(record))

    def _call_hook(self, name: str, data: Optional[bytes], record: dict[str, Any]) -> Optional[str]:
        if self.on_code is None or data is None:
            return None
        try:
            return self.on_code(name, data, _public(record))
        except Exception as exc:
            print(f"agentrun stand-in: the on_code hook failed for {name}: {exc!r}", file=sys.stderr)  # shown with a failing test
            raise ApiError(500, "ERR_INTERNAL_SERVER_ERROR", f"the stand-in's on_code hook failed: {exc!r}") from exc

    def _get(self, request: Request) -> tuple[int, Any]:
        with self._state:
            runtime = self._runtime(request.params["agentRuntimeId"])
            self._advance(runtime)
            runtime = self._runtime(request.params["agentRuntimeId"])  # a finished delete answers 404
            version = request.query.get("agentRuntimeVersion")
            if version and version != "LATEST":
                snapshot = runtime.versions.get(version)
                if snapshot is None:
                    raise ApiError(404, "ERR_NOT_FOUND", f"version '{version}' does not exist")
                return self._ok(request, self._shown(_public(snapshot["config"])))
            return self._ok(request, self._shown(_public(runtime.record)))

    def _shown(self, record: dict[str, Any]) -> dict[str, Any]:
        """``record`` as GetAgentRuntime shows it: values masked when ``get_masks_env``."""
        if self.get_masks_env and isinstance(record.get("environmentVariables"), dict):
            record["environmentVariables"] = dict.fromkeys(record["environmentVariables"], MASK)
        return record

    def _update(self, request: Request) -> tuple[int, Any]:
        body = request.body
        with self._state:
            runtime = self._runtime(request.params["agentRuntimeId"])
            status = runtime.record["status"]
            if status in IN_PROGRESS:
                raise ApiError(409, "ERR_CONFLICT", f"agent runtime is {status}; wait until it is READY or FAILED")
            name = body.get("agentRuntimeName", runtime.record["agentRuntimeName"])
            if name != runtime.record["agentRuntimeName"] and any(
                    r.record["agentRuntimeName"] == name for r in self.runtimes.values()):
                raise ApiError(409, "ERR_CONFLICT", f"agent runtime '{name}' already exists")
            merged = {**runtime.record, **body}
            self._validate(body, merged)
            code = self._validate_code(body["codeConfiguration"]) if body.get("codeConfiguration") else runtime.code
            merged["lastUpdatedAt"] = now_iso()
            # the hook first: a 500 (the code did not start here) leaves the runtime as it was, not
            # UPDATING for good, so the client's retry of the 5xx is answered, not refused with a 409
            code.url = self._call_hook(merged["agentRuntimeName"], code.data, merged) or code.url
            runtime.record = merged
            runtime.code = code
            self._start_transition(runtime, "UPDATING", self._take_plan(merged["agentRuntimeName"]))
            return self._ok(request, _public(merged))

    def _delete(self, request: Request) -> tuple[int, Any]:
        with self._state:
            runtime = self._runtime(request.params["agentRuntimeId"])
            if runtime.record["status"] == "DELETING":
                return self._ok(request, _public(runtime.record))
            self._start_transition(runtime, "DELETING")
            for endpoint in runtime.endpoints.values():
                endpoint["status"] = "DELETING"
            return self._ok(request, _public(runtime.record))

    def _list(self, request: Request) -> tuple[int, Any]:
        query = request.query
        wanted = query.get("agentRuntimeName")
        exact = (query.get("searchMode") or "").lower() == "exact"
        status = query.get("status")
        with self._state:
            items = []
            for runtime in sorted(self.runtimes.values(), key=lambda r: r.record["createdAt"] + r.record["agentRuntimeId"]):
                name = runtime.record["agentRuntimeName"]
                if wanted and (name != wanted if exact else wanted not in name):
                    continue
                if status and runtime.record["status"] != status:
                    continue
                item = _public(runtime.record)
                if isinstance(item.get("environmentVariables"), dict):  # [assumed] list answers mask values
                    item["environmentVariables"] = dict.fromkeys(item["environmentVariables"], MASK)
                items.append(item)
        return self._ok(request, _paged(items, query))

    # -- credentials ---------------------------------------------------------------------------

    def _create_credential(self, request: Request) -> tuple[int, Any]:
        body = request.body
        name = body.get("credentialName")
        # [sdk _create_credential_input.py] credentialName, credentialAuthType, credentialSourceType required
        require(isinstance(name, str) and CREDENTIAL_NAME_RE.match(name) is not None,
                "credentialName must be 1-64 letters, digits, '_' or '-', starting with a letter or '_'",
                code="ERR_VALIDATION_FAILED")
        require(body.get("credentialAuthType") in CREDENTIAL_AUTH_TYPES,
                f"credentialAuthType must be one of {sorted(CREDENTIAL_AUTH_TYPES)}", code="ERR_VALIDATION_FAILED")
        require(body.get("credentialSourceType") in CREDENTIAL_SOURCE_TYPES,
                f"credentialSourceType must be one of {sorted(CREDENTIAL_SOURCE_TYPES)}", code="ERR_VALIDATION_FAILED")
        if body["credentialAuthType"] == "api_key":
            require(bool(body.get("credentialSecret")), "an api_key credential needs credentialSecret",
                    code="ERR_VALIDATION_FAILED")
        with self._state:
            if name in self.credentials:
                raise ApiError(409, "ERR_CONFLICT", f"credential '{name}' already exists")
            now = now_iso()
            record = {**body, "credentialId": str(uuid.uuid4()), "createdAt": now, "updatedAt": now}
            self.credentials[name] = record
            return self._ok(request, _credential_view(record))

    def _get_credential(self, request: Request) -> tuple[int, Any]:
        with self._state:
            record = self.credentials.get(request.params["credentialName"])
            if record is None:
                raise ApiError(404, "ERR_NOT_FOUND", f"credential '{request.params['credentialName']}' does not exist")
            return self._ok(request, _credential_view(record))

    def _delete_credential(self, request: Request) -> tuple[int, Any]:
        name = request.params["credentialName"]
        with self._state:
            if name not in self.credentials:
                raise ApiError(404, "ERR_NOT_FOUND", f"credential '{name}' does not exist")
            users = [r.record["agentRuntimeName"] for r in self.runtimes.values() if r.record.get("credentialName") == name]
            if users:  # [assumed] a credential in use cannot go
                raise ApiError(409, "ERR_CONFLICT", f"credential '{name}' is used by {', '.join(users)}")
            return self._ok(request, _credential_view(self.credentials.pop(name)))

    # -- versions ------------------------------------------------------------------------------

    def _publish(self, request: Request) -> tuple[int, Any]:
        body = request.body
        with self._state:
            runtime = self._runtime(request.params["agentRuntimeId"])
            if runtime.record["status"] != "READY":
                raise ApiError(409, "ERR_CONFLICT", f"only a READY agent runtime can publish a version; "
                                                    f"this one is {runtime.record['status']}")
            version = str(runtime.next_version)
            runtime.next_version += 1
            meta = {
                "agentRuntimeArn": runtime.record["agentRuntimeArn"],
                "agentRuntimeId": runtime.record["agentRuntimeId"],
                "agentRuntimeName": runtime.record["agentRuntimeName"],
                "agentRuntimeVersion": version,
                "description": body.get("description", ""),
                "lastUpdatedAt": now_iso(),
            }
            config = copy.deepcopy(runtime.record)
            config["agentRuntimeVersion"] = version
            runtime.versions[version] = {"meta": meta, "config": config, "code": runtime.code}
            # [assumed, issue 19 item 10] publishing touches the runtime: a deployer must not take a
            # moved lastUpdatedAt for a change of code
            runtime.record["lastUpdatedAt"] = now_iso()
            return self._ok(request, dict(meta))

    def _list_versions(self, request: Request) -> tuple[int, Any]:
        with self._state:
            runtime = self._runtime(request.params["agentRuntimeId"])
            items = [dict(v["meta"]) for _, v in sorted(runtime.versions.items(), key=lambda kv: int(kv[0]))]
        return self._ok(request, _paged(items, request.query))

    # -- endpoints -----------------------------------------------------------------------------

    def _code_for(self, runtime: _Runtime, target: str) -> _Code:
        if target == "LATEST":
            return runtime.code
        snapshot = runtime.versions.get(target)
        if snapshot is None:
            raise ApiError(404, "ERR_NOT_FOUND", f"version '{target}' of agent runtime does not exist")
        return snapshot["code"]

    def _endpoint_view(self, runtime: _Runtime, endpoint: dict[str, Any]) -> dict[str, Any]:
        view = {k: v for k, v in endpoint.items() if not k.startswith("_")}
        target = endpoint["targetVersion"]
        code = runtime.versions[target]["code"] if target in runtime.versions else runtime.code
        fake = (f"https://{self.account_id}.agentrun-data.{self.region}.aliyuncs.com/agent-runtimes/"
                f"{runtime.record['agentRuntimeId']}/endpoints/{endpoint['agentRuntimeEndpointName']}/invocations")
        view["endpointPublicUrl"] = code.url or fake
        return view

    def _advance_endpoint(self, endpoint: dict[str, Any]) -> None:
        if endpoint["status"] not in {"CREATING", "UPDATING"}:
            return
        endpoint["_polls"] += 1
        if endpoint["_polls"] > self.ready_after_polls and time.monotonic() - endpoint["_since"] >= self.ready_after_seconds:
            endpoint["status"] = self.endpoint_ready_status

    def _endpoint_fields(self, runtime: _Runtime, body: dict[str, Any]) -> None:
        name = body.get("agentRuntimeEndpointName")
        require(isinstance(name, str) and NAME_RE.match(name) is not None,
                "agentRuntimeEndpointName must start with a letter and hold at most 128 letters, digits, '_' or '-'",
                code="ERR_VALIDATION_FAILED")
        target = body.get("targetVersion") or "LATEST"
        self._code_for(runtime, target)

    def _create_endpoint(self, request: Request) -> tuple[int, Any]:
        body = request.body
        with self._state:
            runtime = self._runtime(request.params["agentRuntimeId"])
            self._endpoint_fields(runtime, body)
            name = body["agentRuntimeEndpointName"]
            if any(e["agentRuntimeEndpointName"] == name for e in runtime.endpoints.values()):
                raise ApiError(409, "ERR_CONFLICT", f"endpoint '{name}' already exists")
            endpoint_id = str(uuid.uuid4())
            endpoint = {
                "agentRuntimeEndpointId": endpoint_id,
                "agentRuntimeEndpointArn": f"{runtime.record['agentRuntimeArn']}/endpoints/{endpoint_id}",
                "agentRuntimeEndpointName": name,
                "agentRuntimeId": runtime.record["agentRuntimeId"],
                "description": body.get("description", ""),
                "targetVersion": body.get("targetVersion") or "LATEST",
                "status": "CREATING",
                "statusReason": "",
                "_polls": 0,
                "_since": time.monotonic(),
            }
            if body.get("routingConfiguration") is not None:
                endpoint["routingConfiguration"] = body["routingConfiguration"]
            runtime.endpoints[endpoint_id] = endpoint
            runtime.record["lastUpdatedAt"] = now_iso()  # [assumed] as for publishing
            return self._ok(request, self._endpoint_view(runtime, endpoint))

    def _endpoint(self, runtime: _Runtime, endpoint_id: str) -> dict[str, Any]:
        endpoint = runtime.endpoints.get(endpoint_id)
        if endpoint is None:
            raise ApiError(404, "ERR_NOT_FOUND", f"endpoint '{endpoint_id}' does not exist")
        return endpoint

    def _get_endpoint(self, request: Request) -> tuple[int, Any]:
        with self._state:
            runtime = self._runtime(request.params["agentRuntimeId"])
            endpoint = self._endpoint(runtime, request.params["endpointId"])
            self._advance_endpoint(endpoint)
            return self._ok(request, self._endpoint_view(runtime, endpoint))

    def _update_endpoint(self, request: Request) -> tuple[int, Any]:
        body = request.body
        with self._state:
            runtime = self._runtime(request.params["agentRuntimeId"])
            endpoint = self._endpoint(runtime, request.params["endpointId"])
            merged = {**endpoint, **{k: v for k, v in body.items() if v is not None}}
            self._endpoint_fields(runtime, merged)
            endpoint.update({k: merged[k] for k in ("agentRuntimeEndpointName", "targetVersion", "description")})
            if body.get("routingConfiguration") is not None:
                endpoint["routingConfiguration"] = body["routingConfiguration"]
            endpoint.update({"status": "UPDATING", "_polls": 0, "_since": time.monotonic()})
            return self._ok(request, self._endpoint_view(runtime, endpoint))

    def _list_endpoints(self, request: Request) -> tuple[int, Any]:
        wanted = request.query.get("endpointName")
        exact = (request.query.get("searchMode") or "").lower() == "exact"
        with self._state:
            runtime = self._runtime(request.params["agentRuntimeId"])
            items = [self._endpoint_view(runtime, e) for e in runtime.endpoints.values()
                     if not wanted or (e["agentRuntimeEndpointName"] == wanted if exact
                                       else wanted in e["agentRuntimeEndpointName"])]
        return self._ok(request, _paged(items, request.query))

    def _delete_endpoint(self, request: Request) -> tuple[int, Any]:
        with self._state:
            runtime = self._runtime(request.params["agentRuntimeId"])
            endpoint = self._endpoint(runtime, request.params["endpointId"])
            del runtime.endpoints[endpoint["agentRuntimeEndpointId"]]
            view = self._endpoint_view(runtime, endpoint)
            view["status"] = "DELETING"
            return self._ok(request, view)


def _public(record: dict[str, Any]) -> dict[str, Any]:
    """The record as the API returns it: the inline zip is never echoed back."""
    view = copy.deepcopy(record)
    code = view.get("codeConfiguration")
    if isinstance(code, dict):
        code.pop("zipFile", None)
    return view


def _credential_view(record: dict[str, Any]) -> dict[str, Any]:
    """A credential as answers show it: never its secret [assumed]."""
    return {k: v for k, v in record.items() if k != "credentialSecret"}


def _paged(items: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
    page_number = int(query.get("pageNumber") or 1)
    page_size = int(query.get("pageSize") or 20)
    require(page_number >= 1 and 1 <= page_size <= 100, "pageNumber must be >= 1 and pageSize 1-100",
            code="ERR_VALIDATION_FAILED")
    start = (page_number - 1) * page_size
    return {"items": items[start:start + page_size], "pageNumber": page_number, "pageSize": page_size,
            "total": len(items)}
