"""Loopback stand-in for the Function Compute 3.0 control plane (API version 2023-03-30).

It keeps functions, their code, versions, aliases and triggers in memory, validates each
request the way the published API does (see README.md beside this file for the rules and
their sources) and answers in FC's shapes. ``on_code(name, zip_bytes, config)`` is called
after every successful CreateFunction/UpdateFunction with the function's current code and
configuration; the URL it returns (if any) is what HTTP triggers report as
``httpTrigger.urlInternet`` for the code their qualifier resolves to.
"""

from __future__ import annotations

import base64
import binascii
import copy
import io
import json
import re
import threading
import uuid
import zipfile
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .acs import AcsStandIn, ApiError, Request, crc64_xz, now_iso, require

CodeHook = Callable[[str, bytes, dict], Optional[str]]

FUNCTION_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_-]{0,63}$")
RESOURCE_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_-]{0,127}$")
ENV_KEY_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]*$")
# HeaderField affinity: the header's name and the ids it carries (README §2, "Session affinity").
AFFINITY_HEADER_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{4,39}$")
AFFINITY_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")
# With any session affinity FC sets an instance's request concurrency to 200, unchangeable.
AFFINITY_CONCURRENCY = 200
ROLE_RE = re.compile(r"^acs:ram::\d+:role/[^/]+$")
RUNTIMES = {
    "custom", "custom.debian10", "custom.debian11", "custom.debian12", "custom-container",
    "python3", "python3.9", "python3.10", "python3.12",
    "nodejs14", "nodejs16", "nodejs18", "nodejs20",
    "java8", "java11", "php7.2", "go1", "dotnetcore3.1",
}
# Where each custom runtime keeps the Pythons it ships, with their versions (README §2, "Runtimes").
RUNTIME_PYTHONS = {
    "custom.debian10": {"/var/fc/lang/python3.10/bin/python3": "3.10.9"},
    "custom.debian11": {"/var/fc/lang/python3.12/bin/python3": "3.12.4"},
    "custom.debian12": {"/usr/bin/python3": "3.11.2", "/opt/python3.12/bin/python3": "3.12.4"},
}
# Runtimes FC offers only in some regions, and those regions.
RUNTIME_REGIONS = {
    "custom.debian12": {"cn-hangzhou", "cn-qingdao", "cn-beijing", "cn-zhangjiakou", "cn-huhehaote", "cn-chengdu"},
}
PYTHON_PATH_RE = re.compile(r"(?:/[A-Za-z0-9._+-]+)+/python3(?:\.\d+)?(?![A-Za-z0-9._/-])")
HTTP_METHODS = {"HEAD", "DELETE", "POST", "GET", "OPTIONS", "PUT", "PATCH"}
HTTP_AUTH_TYPES = {"anonymous", "function", "jwt"}
SESSION_AFFINITIES = {"NONE", "HEADER_FIELD", "COOKIE", "MCP_SSE", "MCP_STREAMABLE"}
ISOLATION_MODES = {"SHARE", "SESSION_EXCLUSIVE"}
MAX_INLINE_ZIP = 100 * 1024 * 1024
MAX_OSS_ZIP = 500 * 1024 * 1024
MAX_ENV_BYTES = 4 * 1024
DISK_SIZES = {512, 10240}
# What the stand-in fills in when a create leaves a field out.
DEFAULTS = {"memorySize": 512, "cpu": 0.5, "diskSize": 512, "timeout": 3, "instanceConcurrency": 1,
            "internetAccess": True, "sessionAffinity": "NONE", "instanceIsolationMode": "SHARE", "description": ""}


@dataclass
class _Code:
    data: bytes
    url: Optional[str]
    checksum: str


@dataclass
class _Function:
    config: dict[str, Any]
    code: _Code
    #: what an instance of the current code and configuration starts: {"interpreter", "python"} or {"error"}
    start: dict[str, str] = field(default_factory=dict)
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> {"meta", "config", "code"}
    next_version: int = 1
    aliases: dict[str, dict[str, Any]] = field(default_factory=dict)
    triggers: dict[str, dict[str, Any]] = field(default_factory=dict)


class FCStandIn(AcsStandIn):
    product = "fc"
    version = "2023-03-30"
    error_statuses = {
        **AcsStandIn.error_statuses,
        "signature": (403, "SignatureNotMatch"),
        "access_key": (403, "InvalidAccessKeyID"),
        "missing_auth": (403, "AccessDenied"),
        "path": (400, "PathNotSupported"),
        "json": (400, "InvalidArgument"),
    }

    def __init__(self, *, on_code: Optional[CodeHook] = None, region: str = "cn-hangzhou",
                 account_id: str = "1234567890123456", max_inline_zip: int = MAX_INLINE_ZIP, oss: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_code = on_code
        # Code named by ossBucketName/ossObjectName is fetched from this OSS stand-in (an
        # OSSStandIn), else looked up in ``oss_objects``.
        self.oss = oss
        # The published limit is 100 MB; tests lower it to exercise the rule without 100 MB bodies.
        self.max_inline_zip = max_inline_zip
        self.region = region
        self.account_id = account_id
        self.functions: dict[str, _Function] = {}
        self.oss_objects: dict[tuple[str, str], bytes] = {}
        self._state = threading.RLock()
        base = f"/{self.version}/functions"
        self.route("POST", base, "CreateFunction", self._create_function)
        self.route("GET", base, "ListFunctions", self._list_functions)
        self.route("GET", base + "/{functionName}", "GetFunction", self._get_function)
        self.route("PUT", base + "/{functionName}", "UpdateFunction", self._update_function)
        self.route("DELETE", base + "/{functionName}", "DeleteFunction", self._delete_function)
        self.route("POST", base + "/{functionName}/versions", "PublishFunctionVersion", self._publish_version)
        self.route("GET", base + "/{functionName}/versions", "ListFunctionVersions", self._list_versions)
        self.route("DELETE", base + "/{functionName}/versions/{versionId}", "DeleteFunctionVersion", self._delete_version)
        self.route("POST", base + "/{functionName}/aliases", "CreateAlias", self._create_alias)
        self.route("GET", base + "/{functionName}/aliases", "ListAliases", self._list_aliases)
        self.route("GET", base + "/{functionName}/aliases/{aliasName}", "GetAlias", self._get_alias)
        self.route("PUT", base + "/{functionName}/aliases/{aliasName}", "UpdateAlias", self._update_alias)
        self.route("DELETE", base + "/{functionName}/aliases/{aliasName}", "DeleteAlias", self._delete_alias)
        self.route("POST", base + "/{functionName}/triggers", "CreateTrigger", self._create_trigger)
        self.route("GET", base + "/{functionName}/triggers", "ListTriggers", self._list_triggers)
        self.route("GET", base + "/{functionName}/triggers/{triggerName}", "GetTrigger", self._get_trigger)
        self.route("PUT", base + "/{functionName}/triggers/{triggerName}", "UpdateTrigger", self._update_trigger)
        self.route("DELETE", base + "/{functionName}/triggers/{triggerName}", "DeleteTrigger", self._delete_trigger)

    # -- helpers for tests -----------------------------------------------------------------

    def code_of(self, name: str, qualifier: str = "LATEST") -> bytes:
        with self._state:
            function = self._function(name)
            return self._resolve(function, qualifier)[1].data

    def cold_start(self, name: str) -> dict[str, str]:
        """What a new instance of the function's current code would start: the interpreter its
        bootstrap runs and that interpreter's version on the function's runtime, or the error the
        instance would exit with (FC accepts such a function; it fails at the first request)."""
        with self._state:
            return dict(self._function(name).start)

    # -- shared pieces -----------------------------------------------------------------------

    def _function(self, name: str) -> _Function:
        function = self.functions.get(name)
        if function is None:
            raise ApiError(404, "FunctionNotFound", f"function '{name}' does not exist")
        return function

    def _resolve(self, function: _Function, qualifier: Optional[str]) -> tuple[dict[str, Any], _Code]:
        """Configuration and code that ``qualifier`` (LATEST, a version id or an alias) points at."""
        if qualifier in (None, "", "LATEST"):
            return function.config, function.code
        if qualifier in function.aliases:
            qualifier = function.aliases[qualifier]["versionId"]
        version = function.versions.get(qualifier)
        if version is None:
            raise ApiError(404, "VersionNotFound", f"version or alias '{qualifier}' of function "
                                                   f"'{function.config['functionName']}' does not exist")
        return version["config"], version["code"]

    def _page(self, items: list[dict[str, Any]], key: str, query: dict[str, str]) -> tuple[list[dict[str, Any]], str]:
        prefix = query.get("prefix") or ""
        items = [item for item in items if str(item[key]).startswith(prefix)]
        start = query.get("nextToken") or ""
        if start:
            items = [item for item in items if str(item[key]) >= start]
        limit = int(query.get("limit") or 20)
        require(1 <= limit <= 100, "limit must be between 1 and 100")
        page, rest = items[:limit], items[limit:]
        return page, (str(rest[0][key]) if rest else "")

    # -- validation ----------------------------------------------------------------------------

    def _validate_code(self, code: Any) -> _Code:
        require(isinstance(code, dict), "code must be an object with zipFile or ossBucketName and ossObjectName")
        inline = code.get("zipFile")
        bucket, key = code.get("ossBucketName"), code.get("ossObjectName")
        has_oss = bool(bucket) or bool(key)
        require(bool(inline) != has_oss, "code must name exactly one source: zipFile, or ossBucketName with ossObjectName")
        if inline:
            require(isinstance(inline, str), "code.zipFile must be a base64 string")
            require(len(inline) <= (self.max_inline_zip + 2) // 3 * 4 + 4,
                    f"code.zipFile decodes to more than {self.max_inline_zip} bytes; upload larger code through OSS",
                    code="EntityTooLarge")
            try:
                data = base64.b64decode(inline, validate=True)
            except (binascii.Error, ValueError):
                raise ApiError(400, "InvalidArgument", "code.zipFile is not valid base64") from None
            require(len(data) <= self.max_inline_zip,
                    f"code.zipFile decodes to {len(data)} bytes, more than {self.max_inline_zip}; upload it through OSS",
                    code="EntityTooLarge")
        else:
            require(bool(bucket) and bool(key), "code from OSS needs both ossBucketName and ossObjectName")
            stored = self.oss.read_for_function_compute(bucket, key) if self.oss is not None else self.oss_objects.get((bucket, key))
            require(stored is not None, f"unable to access object {key} in bucket {bucket}; check that it exists "
                                        "and that Function Compute may read it (oss:GetObject)")
            data = stored  # type: ignore[assignment]
            require(len(data) <= MAX_OSS_ZIP, f"the code package in OSS is {len(data)} bytes, more than {MAX_OSS_ZIP} (500 MB)",
                    code="EntityTooLarge")
        require(_is_zip(data), "the code package is not a valid zip file")
        checksum = str(crc64_xz(data))
        stated = code.get("checksum")
        if stated not in (None, ""):
            require(str(stated) == checksum, f"code checksum {stated} does not match the package's CRC-64 {checksum}")
        return _Code(data=data, url=None, checksum=checksum)

    def _validate_config(self, body: dict[str, Any], merged: dict[str, Any]) -> None:
        """Field rules shared by CreateFunction and UpdateFunction (``merged`` is the result)."""
        runtime = merged.get("runtime")
        require(runtime in RUNTIMES, f"runtime {runtime!r} is not supported; use one of {sorted(RUNTIMES)}")
        if "runtime" in body and runtime in RUNTIME_REGIONS:
            require(self.region in RUNTIME_REGIONS[runtime],
                    f"runtime {runtime} is not supported in region {self.region}")
        handler = merged.get("handler")
        require(isinstance(handler, str) and 1 <= len(handler) <= 128, "handler is required (1-128 characters)")
        if "description" in body:
            require(isinstance(body["description"], str) and len(body["description"]) <= 256,
                    "description must be a string of at most 256 characters")
        cpu, memory = merged.get("cpu"), merged.get("memorySize")
        if "memorySize" in body:
            require(isinstance(memory, int) and 128 <= memory <= 32768 and memory % 64 == 0,
                    "memorySize must be a multiple of 64 MB between 128 and 32768")
        if "cpu" in body:
            require(isinstance(cpu, (int, float)) and 0.05 <= cpu <= 16 and _multiple_of(cpu, 0.05),
                    "cpu must be a multiple of 0.05 vCPU between 0.05 and 16")
        if ("cpu" in body or "memorySize" in body) and cpu and memory:
            ratio = (memory / 1024) / cpu
            require(1 <= ratio + 1e-9 and ratio <= 4 + 1e-9,
                    f"the ratio of cpu to memory (GB) must be between 1:1 and 1:4, got {cpu}:{memory / 1024:g}")
        if "diskSize" in body:
            require(body["diskSize"] in DISK_SIZES, "diskSize must be 512 or 10240 (MB)")
        if "timeout" in body:
            timeout = body["timeout"]
            require(isinstance(timeout, int) and 1 <= timeout <= 86400, "timeout must be between 1 and 86400 seconds")
        if "instanceConcurrency" in body:
            value = body["instanceConcurrency"]
            require(isinstance(value, int) and 1 <= value <= 200, "instanceConcurrency must be between 1 and 200")
        if "internetAccess" in body:
            require(isinstance(body["internetAccess"], bool), "internetAccess must be true or false")
        if body.get("role"):
            require(isinstance(body["role"], str) and ROLE_RE.match(body["role"]) is not None,
                    "role must be a RAM role ARN such as acs:ram::<account>:role/<name>")
        if "environmentVariables" in body:
            _validate_env(body["environmentVariables"])
        if "customRuntimeConfig" in body:
            _validate_custom_runtime(body["customRuntimeConfig"])
        if "instanceLifecycleConfig" in body:
            _validate_lifecycle(body["instanceLifecycleConfig"])
        if "instanceIsolationMode" in body:
            require(body["instanceIsolationMode"] in ISOLATION_MODES,
                    f"instanceIsolationMode must be one of {sorted(ISOLATION_MODES)}")
        if "sessionAffinity" in body or "sessionAffinityConfig" in body:
            _validate_affinity(merged.get("sessionAffinity") or "NONE", merged.get("sessionAffinityConfig"))
        if "vpcConfig" in body:
            _validate_vpc(body["vpcConfig"])
        if "logConfig" in body:
            _validate_log(body["logConfig"])

    # -- functions -----------------------------------------------------------------------------

    def _create_function(self, request: Request) -> tuple[int, Any]:
        body = request.body
        name = body.get("functionName")
        require(isinstance(name, str) and FUNCTION_NAME_RE.match(name) is not None,
                "functionName must be 1-64 letters, digits, '_' or '-', not starting with a digit or '-'")
        require(body.get("customContainerConfig") is None or body.get("code") is None,
                "give code or customContainerConfig, not both")
        require(body.get("code") is not None, "code is required (zipFile, or ossBucketName with ossObjectName)")
        config = {**DEFAULTS, **{k: v for k, v in body.items() if k != "code"}}
        self._validate_config(body, config)
        code = self._validate_code(body["code"])
        _fill_in(config)
        with self._state:
            if name in self.functions:
                raise ApiError(409, "FunctionAlreadyExists", f"function '{name}' already exists")
            now = now_iso()
            config.update({
                "functionId": str(uuid.uuid4()),
                "functionArn": f"acs:fc:{self.region}:{self.account_id}:functions/{name}",
                "createdTime": now,
                "lastModifiedTime": now,
                "codeSize": len(code.data),
                "codeChecksum": code.checksum,
                "state": "Active",
                "stateReason": "",
                "stateReasonCode": "",
                "lastUpdateStatus": "Successful",
                "lastUpdateStatusReason": "",
                "lastUpdateStatusReasonCode": "",
            })
            function = _Function(config=config, code=code)
            self.functions[name] = function
            code.url = self._call_hook(name, code.data, config)
            return 200, copy.deepcopy(config)

    def _update_function(self, request: Request) -> tuple[int, Any]:
        body = request.body
        name = request.params["functionName"]
        require("functionName" not in body or body["functionName"] == name,
                "functionName cannot be changed by UpdateFunction")
        with self._state:
            function = self._function(name)
            merged = {**function.config, **{k: v for k, v in body.items() if k != "code"}}
            self._validate_config(body, merged)
            code = self._validate_code(body["code"]) if body.get("code") is not None else function.code
            _fill_in(merged)
            merged.update({"lastModifiedTime": now_iso(), "codeSize": len(code.data), "codeChecksum": code.checksum})
            function.config = merged
            if code is not function.code:
                function.code = code
            code.url = self._call_hook(name, code.data, merged)
            return 200, copy.deepcopy(merged)

    def _call_hook(self, name: str, data: bytes, config: dict[str, Any]) -> Optional[str]:
        function = self.functions[name]
        function.start = _cold_start(config, data)
        if self.on_code is None or "error" in function.start:
            return None  # an instance that cannot start serves nothing
        try:
            return self.on_code(name, data, copy.deepcopy(config))
        except Exception as exc:  # a broken hook is the test's problem; show it as the platform would
            raise ApiError(500, "InternalServerError", f"the stand-in's on_code hook failed: {exc!r}") from exc

    def _get_function(self, request: Request) -> tuple[int, Any]:
        with self._state:
            function = self._function(request.params["functionName"])
            config, _ = self._resolve(function, request.query.get("qualifier"))
            return 200, copy.deepcopy(config)

    def _list_functions(self, request: Request) -> tuple[int, Any]:
        with self._state:
            items = [copy.deepcopy(f.config) for _, f in sorted(self.functions.items())]
        page, token = self._page(items, "functionName", request.query)
        return 200, {"functions": page, "nextToken": token}

    def _delete_function(self, request: Request) -> tuple[int, Any]:
        name = request.params["functionName"]
        with self._state:
            function = self._function(name)
            if function.triggers:
                raise ApiError(409, "FunctionNotEmpty", f"function '{name}' has active triggers; delete them first")
            del self.functions[name]
        return 204, None

    # -- versions ------------------------------------------------------------------------------

    def _publish_version(self, request: Request) -> tuple[int, Any]:
        description = request.body.get("description", "")
        require(isinstance(description, str) and len(description) <= 256, "description must be at most 256 characters")
        with self._state:
            function = self._function(request.params["functionName"])
            version_id = str(function.next_version)
            function.next_version += 1
            now = now_iso()
            meta = {"versionId": version_id, "description": description, "createdTime": now, "lastModifiedTime": now}
            function.versions[version_id] = {"meta": meta, "config": copy.deepcopy(function.config), "code": function.code}
            return 200, dict(meta)

    def _list_versions(self, request: Request) -> tuple[int, Any]:
        direction = request.query.get("direction") or "BACKWARD"
        require(direction in {"FORWARD", "BACKWARD"}, "direction must be FORWARD or BACKWARD")
        with self._state:
            function = self._function(request.params["functionName"])
            metas = sorted((dict(v["meta"]) for v in function.versions.values()), key=lambda m: int(m["versionId"]),
                           reverse=direction == "BACKWARD")
        limit = int(request.query.get("limit") or 20)
        require(1 <= limit <= 100, "limit must be between 1 and 100")
        token = request.query.get("nextToken")
        if token:
            index = next((i for i, m in enumerate(metas) if m["versionId"] == token), len(metas))
            metas = metas[index:]
        page, rest = metas[:limit], metas[limit:]
        return 200, {"versions": page, "direction": direction, "nextToken": rest[0]["versionId"] if rest else ""}

    def _delete_version(self, request: Request) -> tuple[int, Any]:
        version_id = request.params["versionId"]
        with self._state:
            function = self._function(request.params["functionName"])
            if version_id not in function.versions:
                raise ApiError(404, "VersionNotFound", f"version '{version_id}' does not exist")
            users = [name for name, alias in function.aliases.items() if alias["versionId"] == version_id]
            if users:
                raise ApiError(409, "VersionInUse", f"version '{version_id}' is used by alias {', '.join(users)}")
            del function.versions[version_id]
        return 204, None

    # -- aliases -------------------------------------------------------------------------------

    def _alias_fields(self, function: _Function, body: dict[str, Any]) -> None:
        version_id = body.get("versionId")
        require(isinstance(version_id, str) and version_id != "", "versionId is required")
        if version_id not in function.versions:
            raise ApiError(404, "VersionNotFound", f"version '{version_id}' does not exist")
        weights = body.get("additionalVersionWeight") or {}
        require(isinstance(weights, dict), "additionalVersionWeight must map version ids to weights")
        for other, weight in weights.items():
            require(other in function.versions, f"additionalVersionWeight names unknown version '{other}'")
            require(other != version_id, "additionalVersionWeight should not contain the main version")
            require(isinstance(weight, (int, float)) and 0 <= weight <= 1, "version weights must be between 0 and 1")

    def _create_alias(self, request: Request) -> tuple[int, Any]:
        body = request.body
        name = body.get("aliasName")
        require(isinstance(name, str) and RESOURCE_NAME_RE.match(name) is not None and name != "LATEST",
                "aliasName must be 1-128 letters, digits, '_' or '-', not starting with a digit or '-'")
        with self._state:
            function = self._function(request.params["functionName"])
            self._alias_fields(function, body)
            if name in function.aliases:
                raise ApiError(409, "AliasAlreadyExists", f"alias '{name}' already exists")
            now = now_iso()
            alias = {"aliasName": name, "versionId": body["versionId"], "description": body.get("description", ""),
                     "additionalVersionWeight": body.get("additionalVersionWeight") or {},
                     "createdTime": now, "lastModifiedTime": now}
            function.aliases[name] = alias
            return 200, dict(alias)

    def _update_alias(self, request: Request) -> tuple[int, Any]:
        body = request.body
        with self._state:
            function = self._function(request.params["functionName"])
            alias = self._alias(function, request.params["aliasName"])
            merged = {**alias, **{k: v for k, v in body.items() if k in {"versionId", "description", "additionalVersionWeight"}}}
            self._alias_fields(function, merged)
            merged["lastModifiedTime"] = now_iso()
            function.aliases[alias["aliasName"]] = merged
            return 200, dict(merged)

    def _alias(self, function: _Function, name: str) -> dict[str, Any]:
        alias = function.aliases.get(name)
        if alias is None:
            raise ApiError(404, "AliasNotFound", f"alias '{name}' of function '{function.config['functionName']}' does not exist")
        return alias

    def _get_alias(self, request: Request) -> tuple[int, Any]:
        with self._state:
            function = self._function(request.params["functionName"])
            return 200, dict(self._alias(function, request.params["aliasName"]))

    def _list_aliases(self, request: Request) -> tuple[int, Any]:
        with self._state:
            function = self._function(request.params["functionName"])
            items = [dict(a) for _, a in sorted(function.aliases.items())]
        page, token = self._page(items, "aliasName", request.query)
        return 200, {"aliases": page, "nextToken": token}

    def _delete_alias(self, request: Request) -> tuple[int, Any]:
        with self._state:
            function = self._function(request.params["functionName"])
            alias = self._alias(function, request.params["aliasName"])
            users = [t["triggerName"] for t in function.triggers.values() if t["qualifier"] == alias["aliasName"]]
            if users:
                raise ApiError(409, "AliasInUse", f"alias '{alias['aliasName']}' is used by trigger {', '.join(users)}")
            del function.aliases[alias["aliasName"]]
        return 204, None

    # -- triggers ------------------------------------------------------------------------------

    def _trigger_view(self, function: _Function, trigger: dict[str, Any]) -> dict[str, Any]:
        view = copy.deepcopy(trigger)
        if trigger["triggerType"] == "http":
            _, code = self._resolve(function, trigger["qualifier"])
            name = function.config["functionName"]
            fake = f"https://{name.lower().replace('_', '-')}-{trigger['triggerId'][:10]}.{self.region}.fcapp.run"
            view["httpTrigger"] = {
                "urlInternet": code.url or fake,
                "urlIntranet": fake.replace(".fcapp.run", "-vpc.fcapp.run"),
            }
        return view

    def _validate_trigger_config(self, trigger_type: str, raw: Any) -> None:
        require(isinstance(raw, str), "triggerConfig must be a JSON string")
        try:
            config = json.loads(raw)
        except ValueError:
            raise ApiError(400, "InvalidArgument", "triggerConfig is not valid JSON") from None
        require(isinstance(config, dict), "triggerConfig must be a JSON object")
        if trigger_type == "http":
            auth = config.get("authType", "function")
            require(auth in HTTP_AUTH_TYPES, f"authType must be one of {sorted(HTTP_AUTH_TYPES)}, got {auth!r}")
            methods = config.get("methods")
            require(isinstance(methods, list) and len(methods) > 0, "methods must be a non-empty list of HTTP methods")
            bad = [m for m in methods if m not in HTTP_METHODS]
            require(not bad, f"unsupported HTTP method(s) {bad}; use {sorted(HTTP_METHODS)}")
            if "disableURLInternet" in config:
                require(isinstance(config["disableURLInternet"], bool), "disableURLInternet must be true or false")

    def _create_trigger(self, request: Request) -> tuple[int, Any]:
        body = request.body
        name = body.get("triggerName")
        require(isinstance(name, str) and RESOURCE_NAME_RE.match(name) is not None,
                "triggerName must be 1-128 letters, digits, '_' or '-', not starting with a digit or '-'")
        trigger_type = body.get("triggerType")
        require(isinstance(trigger_type, str) and trigger_type != "", "triggerType is required")
        self._validate_trigger_config(trigger_type, body.get("triggerConfig"))
        qualifier = body.get("qualifier") or "LATEST"
        with self._state:
            function = self._function(request.params["functionName"])
            self._resolve(function, qualifier)
            if name in function.triggers:
                raise ApiError(409, "TriggerAlreadyExists", f"trigger '{name}' already exists")
            now = now_iso()
            trigger = {
                "triggerId": uuid.uuid4().hex,
                "triggerName": name,
                "triggerType": trigger_type,
                "triggerConfig": _trigger_config_kept(trigger_type, body["triggerConfig"]),
                "qualifier": qualifier,
                "description": body.get("description", ""),
                "invocationRole": body.get("invocationRole", ""),
                "sourceArn": body.get("sourceArn", ""),
                "targetArn": f"{function.config['functionArn']}",
                "status": "Enabled",
                "createdTime": now,
                "lastModifiedTime": now,
            }
            function.triggers[name] = trigger
            return 200, self._trigger_view(function, trigger)

    def _trigger(self, function: _Function, name: str) -> dict[str, Any]:
        trigger = function.triggers.get(name)
        if trigger is None:
            raise ApiError(404, "TriggerNotFound", f"trigger '{name}' of function '{function.config['functionName']}' does not exist")
        return trigger

    def _get_trigger(self, request: Request) -> tuple[int, Any]:
        with self._state:
            function = self._function(request.params["functionName"])
            return 200, self._trigger_view(function, self._trigger(function, request.params["triggerName"]))

    def _update_trigger(self, request: Request) -> tuple[int, Any]:
        body = request.body
        with self._state:
            function = self._function(request.params["functionName"])
            trigger = self._trigger(function, request.params["triggerName"])
            if "triggerConfig" in body:
                self._validate_trigger_config(trigger["triggerType"], body["triggerConfig"])
            if body.get("qualifier"):
                self._resolve(function, body["qualifier"])
            for key in ("triggerConfig", "qualifier", "description", "invocationRole"):
                if body.get(key) is not None:
                    trigger[key] = body[key]
            trigger["triggerConfig"] = _trigger_config_kept(trigger["triggerType"], trigger["triggerConfig"])
            trigger["lastModifiedTime"] = now_iso()
            return 200, self._trigger_view(function, trigger)

    def _list_triggers(self, request: Request) -> tuple[int, Any]:
        with self._state:
            function = self._function(request.params["functionName"])
            items = [self._trigger_view(function, t) for _, t in sorted(function.triggers.items())]
        page, token = self._page(items, "triggerName", request.query)
        return 200, {"triggers": page, "nextToken": token}

    def _delete_trigger(self, request: Request) -> tuple[int, Any]:
        with self._state:
            function = self._function(request.params["functionName"])
            trigger = self._trigger(function, request.params["triggerName"])
            del function.triggers[trigger["triggerName"]]
        return 204, None


def _is_zip(data: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            archive.infolist()
        return True
    except zipfile.BadZipFile:
        return False


def _multiple_of(value: float, step: float) -> bool:
    return abs(round(value / step) * step - value) < 1e-9


def _validate_env(env: Any) -> None:
    require(isinstance(env, dict), "environmentVariables must be an object of string keys and values")
    total = 0
    for key, value in env.items():
        require(isinstance(value, str), f"environment variable {key} must have a string value")
        require(ENV_KEY_RE.match(key) is not None,
                f"environment variable name {key!r} must start with a letter and contain only letters, digits and '_'")
        require(not key.startswith("FC_"), f"environment variable {key} uses the reserved FC_ prefix")
        total += len(key.encode("utf-8")) + len(value.encode("utf-8"))
    require(total <= MAX_ENV_BYTES, f"environment variables take {total} bytes; the limit is {MAX_ENV_BYTES} (4 KB)")


def _validate_custom_runtime(config: Any) -> None:
    require(isinstance(config, dict), "customRuntimeConfig must be an object")
    for key in ("command", "args"):
        if key in config:
            value = config[key]
            require(isinstance(value, list) and all(isinstance(part, str) for part in value),
                    f"customRuntimeConfig.{key} must be a list of strings")
    if "port" in config:
        port = config["port"]
        require(isinstance(port, int) and 1 <= port <= 65535, "customRuntimeConfig.port must be between 1 and 65535")
    health = config.get("healthCheckConfig")
    if health is not None:
        require(isinstance(health, dict), "healthCheckConfig must be an object")
        url = health.get("httpGetUrl")
        require(isinstance(url, str) and url.startswith("/"), "healthCheckConfig.httpGetUrl must be a path starting with '/'")
        for key in ("initialDelaySeconds", "periodSeconds", "timeoutSeconds", "failureThreshold", "successThreshold"):
            if key in health:
                require(isinstance(health[key], int) and health[key] >= 0, f"healthCheckConfig.{key} must be a non-negative integer")


def _validate_lifecycle(config: Any) -> None:
    require(isinstance(config, dict), "instanceLifecycleConfig must be an object")
    unknown = sorted(set(config) - {"initializer", "preStop"})
    require(not unknown, f"instanceLifecycleConfig does not take {unknown}; it takes initializer and preStop")
    for key, hook in config.items():
        if hook is None:
            continue
        require(isinstance(hook, dict), f"instanceLifecycleConfig.{key} must be an object")
        require(isinstance(hook.get("handler"), str) and 1 <= len(hook["handler"]) <= 128,
                f"instanceLifecycleConfig.{key}.handler is required (1-128 characters)")
        if "timeout" in hook:
            require(isinstance(hook["timeout"], int) and 1 <= hook["timeout"] <= 600,
                    f"instanceLifecycleConfig.{key}.timeout must be between 1 and 600 seconds")


def _validate_affinity(mode: str, raw: Any) -> None:
    require(mode in SESSION_AFFINITIES, f"sessionAffinity must be one of {sorted(SESSION_AFFINITIES)}")
    if mode != "HEADER_FIELD":
        return
    require(isinstance(raw, str), "sessionAffinity HEADER_FIELD needs sessionAffinityConfig as a JSON string")
    try:
        config = json.loads(raw)
    except ValueError:
        raise ApiError(400, "InvalidArgument", "sessionAffinityConfig is not valid JSON") from None
    require(isinstance(config, dict), "sessionAffinityConfig must be a JSON object")
    header = config.get("affinityHeaderFieldName")
    require(isinstance(header, str) and AFFINITY_HEADER_NAME_RE.match(header) is not None
            and not header.lower().startswith("x-fc-"),
            "sessionAffinityConfig.affinityHeaderFieldName must be an HTTP header name of 5-40 letters, digits, "
            "'-' or '_', starting with a letter and not with x-fc-")
    limits = {"sessionTTLInSeconds": (1, 21600), "sessionIdleTimeoutInSeconds": (0, 21600),
              "sessionConcurrencyPerInstance": (1, 200)}
    for key, (low, high) in limits.items():
        if key in config:
            require(isinstance(config[key], int) and low <= config[key] <= high,
                    f"sessionAffinityConfig.{key} must be between {low} and {high}")


def _validate_vpc(config: Any) -> None:
    require(isinstance(config, dict), "vpcConfig must be an object")
    require(isinstance(config.get("vpcId"), str) and config["vpcId"] != "", "vpcConfig.vpcId is required")
    switches = config.get("vSwitchIds")
    require(isinstance(switches, list) and len(switches) > 0 and all(isinstance(v, str) and v for v in switches),
            "vpcConfig.vSwitchIds must be a non-empty list of vSwitch ids")
    require(isinstance(config.get("securityGroupId"), str) and config["securityGroupId"] != "",
            "vpcConfig.securityGroupId is required")


def _validate_log(config: Any) -> None:
    require(isinstance(config, dict), "logConfig must be an object")
    for key in ("project", "logstore"):
        require(isinstance(config.get(key), str) and config[key] != "", f"logConfig.{key} is required")


def _fill_in(config: dict[str, Any]) -> None:
    """What FC keeps of a function's configuration beyond what was sent (README §2, "What FC
    answers"): request concurrency 200 under session affinity, its own defaults in the JSON
    session affinity config and in the log config."""
    if (config.get("sessionAffinity") or "NONE") != "NONE":
        config["instanceConcurrency"] = AFFINITY_CONCURRENCY
        raw = config.get("sessionAffinityConfig")
        if isinstance(raw, str):
            affinity = json.loads(raw)
            affinity.setdefault("disableSessionIdReuse", False)
            config["sessionAffinityConfig"] = json.dumps(affinity)
    if isinstance(config.get("logConfig"), dict):
        config["logConfig"] = {"enableRequestMetrics": True, "enableInstanceMetrics": False, "enableLlmMetrics": False,
                               **config["logConfig"]}


def _cold_start(config: dict[str, Any], data: bytes) -> dict[str, str]:
    """The interpreter a new instance starts, as README §2 "Runtimes" describes: the first Python
    the bootstrap names that the runtime has; an error when it names only ones the runtime lacks."""
    command = (config.get("customRuntimeConfig") or {}).get("command") or ["/code/bootstrap"]
    if not command or not str(command[0]).startswith("/code/"):
        return {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            script = archive.read(str(command[0])[len("/code/"):]).decode("utf-8", "replace")
    except KeyError:
        return {"error": f"CAExited: {command[0]}: not found in the code package"}
    named = PYTHON_PATH_RE.findall(script)
    if not named:
        return {}  # a Python from PATH, or none: nothing this stand-in can tell
    pythons = RUNTIME_PYTHONS.get(str(config.get("runtime")), {})
    for path in named:
        if path in pythons:
            return {"interpreter": path, "python": pythons[path]}
    return {"error": f"CAExited: the bootstrap runs {named[0]}, which {config.get('runtime')} does not have "
                     f"(it has {', '.join(pythons) or 'no documented Python'})"}


def affinity_id_problem(value: Optional[str]) -> Optional[str]:
    """Why FC's HeaderField affinity would not take ``value`` as a session id (None: it does)."""
    if value is None:
        return "no affinity id"
    if AFFINITY_ID_RE.match(value) is None:
        return f"affinity id {value!r} is not 1-64 characters of [A-Za-z0-9_] then [A-Za-z0-9_-]"
    return None


def _trigger_config_kept(trigger_type: str, raw: str) -> str:
    """An HTTP trigger's config as FC answers it: with its default ``disableURLInternet`` added."""
    if trigger_type != "http":
        return raw
    config = json.loads(raw)
    config.setdefault("disableURLInternet", False)
    return json.dumps(config)
