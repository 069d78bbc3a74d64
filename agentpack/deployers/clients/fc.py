"""Function Compute 3.0 (API 2023-03-30) operations a deployer needs, over the real SDK.

Every method is idempotent where the deploy flow needs it to be: ``create_or_update_function``
works by name, ``ensure_alias`` and ``ensure_http_trigger`` create or retarget, and the
deletes report whether there was anything to delete. Bodies are the API's own camelCase
dicts; :class:`FunctionSpec` builds the one for a custom-runtime function.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from agentpack.deployers.clients.alibaba import (
    AlibabaApi,
    AlibabaConfigError,
    code_location,
    sdk_runtime,
)
from agentpack.deployers.errors import PlatformError

ENDPOINT_ENV = "AGENTPACK_FC_ENDPOINT"
API_VERSION = "2023-03-30"
HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH")
DEFAULT_TRIGGER_NAME = "http"
# A custom runtime's lifecycle hooks are HTTP paths (/initialize, /pre-stop); FC still wants a
# handler string to switch a hook on, and nothing reads it.
LIFECYCLE_HANDLER = "true"


@dataclass
class FunctionSpec:
    """A custom-runtime function as agentpack deploys it (FC field names in ``to_api``)."""

    name: str
    runtime: str = "custom.debian10"
    zip_bytes: bytes | None = field(default=None, repr=False)  # inline code; None keeps the current code on update
    oss_bucket: str | None = None  # or code from OSS (above the 100 MB inline limit)
    oss_object: str | None = None
    #: the package's CRC-64 as a decimal string; FC refuses code whose checksum differs
    code_checksum: str | None = None
    command: list[str] = field(default_factory=lambda: ["/code/bootstrap"])
    args: list[str] = field(default_factory=list)
    port: int = 9000
    health_check_path: str | None = None
    cpu: float | None = None
    memory_size: int | None = None
    disk_size: int | None = None
    timeout: int | None = None
    instance_concurrency: int | None = None
    environment: dict[str, str] = field(default_factory=dict, repr=False)  # holds secret values: never in a repr
    role: str | None = None
    internet_access: bool | None = None
    session_affinity_header: str | None = None
    session_ttl_seconds: int = 21600
    session_idle_timeout_seconds: int = 3600
    sessions_per_instance: int | None = None
    instance_isolation_mode: str | None = None
    description: str | None = None
    #: VPC the instances join: vpcId, vSwitchIds and securityGroupId (FC's VPCConfig), all or none
    vpc_id: str | None = None
    vswitch_ids: list[str] = field(default_factory=list)
    security_group_id: str | None = None
    #: Simple Log Service project and logstore the function's logs go to (FC's LogConfig)
    log_project: str | None = None
    log_store: str | None = None
    #: None: the placeholder FC requires of a custom runtime (``FCSettings.handler``)
    handler: str | None = None
    #: seconds FC gives ``POST /initialize`` / ``GET /pre-stop``; None leaves the hook unconfigured
    initializer_timeout: int | None = None
    pre_stop_timeout: int | None = None

    def code_location(self) -> dict[str, Any] | None:
        location = code_location(
            self.zip_bytes,
            self.oss_bucket,
            self.oss_object,
            "Function Compute takes at most 100 MB inline: upload it through OSS instead ([targets.fc] oss_bucket)",
        )
        if location is not None and "ossBucketName" in location and self.code_checksum:
            location["checksum"] = self.code_checksum
        return location

    def to_api(self) -> dict[str, Any]:
        runtime_config: dict[str, Any] = {"command": list(self.command), "port": self.port}
        if self.args:
            runtime_config["args"] = list(self.args)
        if self.health_check_path:
            runtime_config["healthCheckConfig"] = {"httpGetUrl": self.health_check_path}
        from agentpack.target_settings import FCSettings

        body: dict[str, Any] = {
            "functionName": self.name,
            "runtime": self.runtime,
            "handler": self.handler or FCSettings.handler,
            "customRuntimeConfig": runtime_config,
            "environmentVariables": dict(self.environment),
        }
        optional = {
            "cpu": self.cpu,
            "memorySize": self.memory_size,
            "diskSize": self.disk_size,
            "timeout": self.timeout,
            "instanceConcurrency": self.instance_concurrency,
            "role": self.role,
            "internetAccess": self.internet_access,
            "instanceIsolationMode": self.instance_isolation_mode,
            "description": self.description,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        if self.session_affinity_header:
            affinity: dict[str, Any] = {
                "affinityHeaderFieldName": self.session_affinity_header,
                "sessionTTLInSeconds": self.session_ttl_seconds,
                "sessionIdleTimeoutInSeconds": self.session_idle_timeout_seconds,
            }
            if self.sessions_per_instance is not None:
                affinity["sessionConcurrencyPerInstance"] = self.sessions_per_instance
            body["sessionAffinity"] = "HEADER_FIELD"
            body["sessionAffinityConfig"] = json.dumps(affinity, separators=(",", ":"))
        if self.vpc_id:
            body["vpcConfig"] = {
                "vpcId": self.vpc_id,
                "vSwitchIds": list(self.vswitch_ids),
                "securityGroupId": self.security_group_id,
            }
        if self.log_project:
            body["logConfig"] = {"project": self.log_project, "logstore": self.log_store}
        lifecycle: dict[str, Any] = {}
        if self.initializer_timeout is not None:
            lifecycle["initializer"] = {"handler": LIFECYCLE_HANDLER, "timeout": self.initializer_timeout}
        if self.pre_stop_timeout is not None:
            lifecycle["preStop"] = {"handler": LIFECYCLE_HANDLER, "timeout": self.pre_stop_timeout}
        if lifecycle:
            body["instanceLifecycleConfig"] = lifecycle
        code = self.code_location()
        if code is not None:
            body["code"] = code
        return body


SpecLike = FunctionSpec | dict[str, Any]


def _as_body(spec: SpecLike) -> dict[str, Any]:
    return spec.to_api() if isinstance(spec, FunctionSpec) else dict(spec)


class FCApi(AlibabaApi):
    """Function Compute control-plane calls (``region`` or ``endpoint`` must be known)."""

    endpoint_env = ENDPOINT_ENV
    sdk_package = "alibabacloud_fc20230330"

    def _pages(self, action: str, key: str, request_page: Callable[[str | None], Any]) -> list[dict[str, Any]]:
        """Every item of a list call: ``request_page(token)`` asks for the page after ``token``
        (None: the first); the items are under ``key``."""
        found: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = self._call(action, partial(request_page, token))
            found.extend(page.get(key) or [])
            token = page.get("nextToken") or None
            if not token:
                return found

    # -- functions -------------------------------------------------------------------------

    def get_function(self, name: str, qualifier: str | None = None) -> dict[str, Any] | None:
        m = self.models
        return self._call_or_none(
            "GetFunction",
            lambda: self.client.get_function_with_options(
                name, m.GetFunctionRequest(qualifier=qualifier), {}, sdk_runtime()
            ),
        )

    def list_functions(self, prefix: str = "") -> list[dict[str, Any]]:
        m = self.models
        return self._pages(
            "ListFunctions",
            "functions",
            lambda token: self.client.list_functions_with_options(
                m.ListFunctionsRequest(prefix=prefix or None, limit=100, next_token=token), {}, sdk_runtime()
            ),
        )

    def create_function(self, spec: SpecLike) -> dict[str, Any]:
        m = self.models
        body = _as_body(spec)
        if "code" not in body:
            raise AlibabaConfigError(f"function {body.get('functionName')!r} does not exist yet, so its code is needed")
        return self._call(
            "CreateFunction",
            lambda: self.client.create_function_with_options(
                m.CreateFunctionRequest(body=m.CreateFunctionInput().from_map(body)), {}, sdk_runtime()
            ),
        )

    def update_function(self, name: str, spec: SpecLike) -> dict[str, Any]:
        m = self.models
        body = {key: value for key, value in _as_body(spec).items() if key != "functionName"}
        return self._call(
            "UpdateFunction",
            lambda: self.client.update_function_with_options(
                name, m.UpdateFunctionRequest(body=m.UpdateFunctionInput().from_map(body)), {}, sdk_runtime()
            ),
        )

    def create_or_update_function(self, spec: SpecLike, *, exists: bool | None = None) -> dict[str, Any]:
        """Create the function, or update it in place when one of that name exists (``exists``:
        what the caller knows already; ``None`` asks).

        A create answered 409 updates instead: another deploy won a race, or an earlier attempt
        of this very create took effect before its 5xx and the retry found the function.
        """
        body = _as_body(spec)
        name = body["functionName"]
        if exists is None:
            exists = self.get_function(name) is not None
        if not exists:
            try:
                return self.create_function(body)
            except PlatformError as error:
                if error.status != 409:
                    raise
        return self.update_function(name, body)

    def delete_function(self, name: str) -> bool:
        """Delete the function and what hangs off it (triggers, aliases, versions). False if absent."""
        if self.get_function(name) is None:
            return False
        for trigger in self.list_triggers(name):
            self.delete_trigger(name, trigger["triggerName"])
        for alias in self.list_aliases(name):
            self.delete_alias(name, alias["aliasName"])
        for version in self.list_versions(name):
            self.delete_version(name, version["versionId"])
        return self._delete("DeleteFunction", lambda: self.client.delete_function_with_options(name, {}, sdk_runtime()))

    # -- versions and aliases ----------------------------------------------------------------

    def publish_version(self, name: str, description: str = "") -> str:
        m = self.models
        version = self._call(
            "PublishFunctionVersion",
            lambda: self.client.publish_function_version_with_options(
                name,
                m.PublishFunctionVersionRequest(body=m.PublishVersionInput(description=description)),
                {},
                sdk_runtime(),
            ),
        )
        return str(version["versionId"])

    def list_versions(self, name: str) -> list[dict[str, Any]]:
        """Newest first."""
        m = self.models
        return self._pages(
            "ListFunctionVersions",
            "versions",
            lambda token: self.client.list_function_versions_with_options(
                name,
                m.ListFunctionVersionsRequest(direction="BACKWARD", limit=100, next_token=token),
                {},
                sdk_runtime(),
            ),
        )

    def delete_version(self, name: str, version_id: str) -> bool:
        return self._delete(
            "DeleteFunctionVersion",
            lambda: self.client.delete_function_version_with_options(name, version_id, {}, sdk_runtime()),
        )

    def get_alias(self, name: str, alias: str) -> dict[str, Any] | None:
        return self._call_or_none(
            "GetAlias", lambda: self.client.get_alias_with_options(name, alias, {}, sdk_runtime())
        )

    def list_aliases(self, name: str) -> list[dict[str, Any]]:
        m = self.models
        return self._pages(
            "ListAliases",
            "aliases",
            lambda token: self.client.list_aliases_with_options(
                name, m.ListAliasesRequest(limit=100, next_token=token), {}, sdk_runtime()
            ),
        )

    def ensure_alias(self, name: str, alias: str, version_id: str, description: str = "") -> dict[str, Any]:
        """Point ``alias`` at ``version_id``, creating it if needed."""
        m = self.models
        if self.get_alias(name, alias) is None:
            try:
                return self._call(
                    "CreateAlias",
                    lambda: self.client.create_alias_with_options(
                        name,
                        m.CreateAliasRequest(
                            body=m.CreateAliasInput(alias_name=alias, version_id=version_id, description=description)
                        ),
                        {},
                        sdk_runtime(),
                    ),
                )
            except PlatformError as error:
                if error.status != 409:
                    raise
        return self._call(
            "UpdateAlias",
            lambda: self.client.update_alias_with_options(
                name,
                alias,
                m.UpdateAliasRequest(body=m.UpdateAliasInput(version_id=version_id, description=description)),
                {},
                sdk_runtime(),
            ),
        )

    def delete_alias(self, name: str, alias: str) -> bool:
        return self._delete(
            "DeleteAlias", lambda: self.client.delete_alias_with_options(name, alias, {}, sdk_runtime())
        )

    # -- triggers ------------------------------------------------------------------------------

    def get_trigger(self, name: str, trigger: str) -> dict[str, Any] | None:
        return self._call_or_none(
            "GetTrigger", lambda: self.client.get_trigger_with_options(name, trigger, {}, sdk_runtime())
        )

    def list_triggers(self, name: str) -> list[dict[str, Any]]:
        m = self.models
        return self._pages(
            "ListTriggers",
            "triggers",
            lambda token: self.client.list_triggers_with_options(
                name, m.ListTriggersRequest(limit=100, next_token=token), {}, sdk_runtime()
            ),
        )

    def ensure_http_trigger(
        self,
        name: str,
        trigger: str = DEFAULT_TRIGGER_NAME,
        *,
        qualifier: str = "LATEST",
        auth_type: str = "function",
        methods: tuple[str, ...] = HTTP_METHODS,
    ) -> str:
        """Create or retarget the function's HTTP trigger and return its public URL.

        A trigger that cannot be made, or that reports no URL, is a PlatformError: a deploy
        without a working URL has failed.
        """
        m = self.models
        config = json.dumps({"authType": auth_type, "methods": list(methods)}, separators=(",", ":"))
        existing = self.get_trigger(name, trigger)
        if existing is None:
            try:
                result = self._call(
                    "CreateTrigger",
                    lambda: self.client.create_trigger_with_options(
                        name,
                        m.CreateTriggerRequest(
                            body=m.CreateTriggerInput(
                                trigger_name=trigger, trigger_type="http", qualifier=qualifier, trigger_config=config
                            )
                        ),
                        {},
                        sdk_runtime(),
                    ),
                )
            except PlatformError as error:
                if error.status != 409:
                    raise
                existing = self.get_trigger(name, trigger) or {}
        if existing is not None:
            if existing.get("triggerType", "http") != "http":
                raise PlatformError(
                    "TriggerTypeMismatch",
                    f"trigger {trigger!r} of function {name!r} exists but is "
                    f"a {existing.get('triggerType')} trigger; remove it or pick another name",
                    action="CreateTrigger",
                )
            if existing.get("qualifier") == qualifier and _holds(existing.get("triggerConfig"), config):
                result = existing
            else:
                result = self._call(
                    "UpdateTrigger",
                    lambda: self.client.update_trigger_with_options(
                        name,
                        trigger,
                        m.UpdateTriggerRequest(body=m.UpdateTriggerInput(qualifier=qualifier, trigger_config=config)),
                        {},
                        sdk_runtime(),
                    ),
                )
        url = ((result.get("httpTrigger") or {}).get("urlInternet") or "").strip()
        if not url:
            raise PlatformError(
                "TriggerHasNoURL",
                f"the HTTP trigger {trigger!r} of function {name!r} reports no "
                "public URL (is internet access disabled?)",
                action="CreateTrigger",
            )
        return url

    def delete_trigger(self, name: str, trigger: str) -> bool:
        return self._delete(
            "DeleteTrigger", lambda: self.client.delete_trigger_with_options(name, trigger, {}, sdk_runtime())
        )


def _holds(reported: Any, sent: str) -> bool:
    """Whether the JSON config FC reports holds every key agentpack sends, with the same value.
    FC adds its own defaults (an HTTP trigger's ``disableURLInternet``), which are not a change,
    and a list of methods is a set, whatever order it comes back in."""
    try:
        have, want = json.loads(reported), json.loads(sent)
    except (TypeError, ValueError):
        return False

    def alike(left: Any, right: Any) -> bool:
        if isinstance(left, list) and isinstance(right, list):
            return sorted(map(str, left)) == sorted(map(str, right))
        return bool(left == right)

    return isinstance(have, dict) and all(alike(have.get(key), value) for key, value in want.items())
