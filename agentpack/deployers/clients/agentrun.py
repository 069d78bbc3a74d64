"""AgentRun (API 2025-09-10) operations a deployer needs, over the real SDK.

Agent runtimes are found by name (the API lists by name; the exact match is made here, so
a fuzzy server-side filter cannot pick the wrong one), created or updated in place, and
waited for with a deadline and a growing poll interval. A runtime that ends FAILED raises
:class:`~agentpack.deployers.clients.alibaba.ResourceFailed` carrying the platform's ``statusReason``;
one that is still not READY at the deadline raises
:class:`~agentpack.deployers.clients.alibaba.WaitTimeout`. Answers come in the envelope
``{code, requestId, data}``; the wrappers return ``data``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from agentpack.deployers.clients.alibaba import (
    AlibabaApi,
    AlibabaConfigError,
    ResourceFailed,
    WaitTimeout,
    code_location,
    only_one,
    sdk_runtime,
)
from agentpack.deployers.errors import PlatformError

ENDPOINT_ENV = "AGENTPACK_AGENTRUN_ENDPOINT"
API_VERSION = "2025-09-10"
READY = "READY"
# The endpoint reference shows ACTIVE where the runtime reference says READY; both mean "serving".
READY_STATES = {"READY", "ACTIVE"}
FAILED_STATES = {"FAILED", "CREATE_FAILED", "UPDATE_FAILED", "DELETE_FAILED"}
IN_PROGRESS_STATES = {"CREATING", "UPDATING", "DELETING"}
DEFAULT_WAIT_SECONDS = 900.0
PAGE_SIZE = 100


@dataclass
class RuntimeSpec:
    """A Code-artifact agent runtime as agentpack deploys it (AgentRun field names in ``to_api``)."""

    name: str
    command: list[str]
    port: int
    language: str = "python3.12"
    zip_bytes: bytes | None = field(default=None, repr=False)  # inline code; None keeps the current code on update
    oss_bucket: str | None = None
    oss_object: str | None = None
    #: None: what the API requires be sent (``AgentRunSettings.sizing_defaults``)
    cpu: float | None = None
    memory: int | None = None
    session_concurrency: int | None = None
    session_idle_timeout_seconds: int | None = None
    environment: dict[str, str] = field(default_factory=dict, repr=False)  # holds secret values: never in a repr
    health_check_path: str | None = None
    execution_role_arn: str | None = None
    description: str | None = None
    network_mode: str | None = "PUBLIC"
    #: the request header whose value keeps a session on one instance (None: the platform's default)
    session_affinity_header: str | None = None
    #: the inbound credential callers must present ("": none, anyone may call; None: not sent)
    credential_name: str | None = None
    #: a VPC to join (with its vSwitches and security group), keeping public access for outbound calls
    vpc_id: str | None = None
    vswitch_ids: list[str] = field(default_factory=list)
    security_group_id: str | None = None
    #: Simple Log Service project and logstore the runtime writes to
    log_project: str | None = None
    log_store: str | None = None

    def code_configuration(self) -> dict[str, Any] | None:
        location = code_location(
            self.zip_bytes,
            self.oss_bucket,
            self.oss_object,
            "inline code is limited to 100 MB: upload it through OSS instead",
        )
        if location is None:
            return None
        return {**location, "language": self.language, "command": list(self.command)}

    def to_api(self) -> dict[str, Any]:
        from agentpack.target_settings import AgentRunSettings

        sizing = AgentRunSettings.sizing_defaults
        body: dict[str, Any] = {
            "agentRuntimeName": self.name,
            "cpu": sizing["cpu"] if self.cpu is None else self.cpu,
            "memory": sizing["memory"] if self.memory is None else self.memory,
            "port": self.port,
            "environmentVariables": dict(self.environment),
        }
        optional = {
            "sessionConcurrencyLimitPerInstance": self.session_concurrency,
            "sessionIdleTimeoutSeconds": self.session_idle_timeout_seconds,
            "executionRoleArn": self.execution_role_arn,
            "description": self.description,
            "credentialName": self.credential_name,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        if self.session_affinity_header:
            # the SDK's UpdateAgentRuntimeInput: sessionAffinityType HEADER_FIELD routes on headerFieldName
            body["sessionAffinityType"] = "HEADER_FIELD"
            body["headerFieldName"] = self.session_affinity_header
        if self.health_check_path:
            body["healthCheckConfiguration"] = {"httpGetUrl": self.health_check_path}
        if self.vpc_id:
            body["networkConfiguration"] = {
                "networkMode": "PUBLIC_AND_PRIVATE",
                "vpcId": self.vpc_id,
                "vswitchIds": list(self.vswitch_ids),
                "securityGroupId": self.security_group_id,
            }
        elif self.network_mode:
            body["networkConfiguration"] = {"networkMode": self.network_mode}
        if self.log_project and self.log_store:
            body["logConfiguration"] = {"project": self.log_project, "logstore": self.log_store}
        code = self.code_configuration()
        if code is not None:
            # artifactType Code requires codeConfiguration (the SDK's CreateAgentRuntimeInput): a
            # configuration-only update sends neither, and the runtime keeps its code
            body["artifactType"] = "Code"
            body["codeConfiguration"] = code
        return body


SpecLike = RuntimeSpec | dict[str, Any]


def _as_body(spec: SpecLike) -> dict[str, Any]:
    return spec.to_api() if isinstance(spec, RuntimeSpec) else dict(spec)


def _data(body: dict[str, Any]) -> dict[str, Any]:
    data = body.get("data")
    return data if isinstance(data, dict) else {}


class AgentRunApi(AlibabaApi):
    """AgentRun control-plane calls (``region`` or ``endpoint`` must be known)."""

    endpoint_env = ENDPOINT_ENV
    sdk_package = "alibabacloud_agentrun20250910"

    # -- runtimes ------------------------------------------------------------------------------

    def get_runtime(self, runtime_id: str) -> dict[str, Any] | None:
        m = self.models
        body = self._call_or_none(
            "GetAgentRuntime",
            lambda: self.client.get_agent_runtime_with_options(
                runtime_id, m.GetAgentRuntimeRequest(), {}, sdk_runtime()
            ),
        )
        return None if body is None else _data(body)

    def list_runtimes(self, name: str | None = None) -> list[dict[str, Any]]:
        m = self.models
        return self._all_pages(
            "ListAgentRuntimes",
            lambda page: self.client.list_agent_runtimes_with_options(
                m.ListAgentRuntimesRequest(agent_runtime_name=name, page_number=page, page_size=PAGE_SIZE),
                {},
                sdk_runtime(),
            ),
        )

    def _all_pages(self, action: str, request_page: Callable[[int], Any]) -> list[dict[str, Any]]:
        """Every item of a list call, page by page (``request_page(n)`` asks for page ``n``)."""
        found: list[dict[str, Any]] = []
        page_number = 1
        while True:
            data = _data(self._call(action, partial(request_page, page_number)))
            items = data.get("items") or []
            found.extend(items)
            if not items or len(found) >= int(data.get("total") or 0):
                return found
            page_number += 1

    def find_runtime_by_name(self, name: str) -> dict[str, Any] | None:
        matches = [item for item in self.list_runtimes(name) if item.get("agentRuntimeName") == name]
        found: dict[str, Any] | None = only_one(matches, "agent runtimes", name, "agentRuntimeId", "ListAgentRuntimes")
        return found

    def create_runtime(self, spec: SpecLike) -> dict[str, Any]:
        m = self.models
        body = _as_body(spec)
        if "codeConfiguration" not in body and "containerConfiguration" not in body:
            raise AlibabaConfigError(
                f"agent runtime {body.get('agentRuntimeName')!r} does not exist yet, so its code is needed"
            )
        return _data(
            self._call(
                "CreateAgentRuntime",
                lambda: self.client.create_agent_runtime_with_options(
                    m.CreateAgentRuntimeRequest(body=m.CreateAgentRuntimeInput().from_map(body)), {}, sdk_runtime()
                ),
            )
        )

    def update_runtime(self, runtime_id: str, spec: SpecLike) -> dict[str, Any]:
        m = self.models
        body = _as_body(spec)
        return _data(
            self._call(
                "UpdateAgentRuntime",
                lambda: self.client.update_agent_runtime_with_options(
                    runtime_id,
                    m.UpdateAgentRuntimeRequest(body=m.UpdateAgentRuntimeInput().from_map(body)),
                    {},
                    sdk_runtime(),
                ),
            )
        )

    def create_or_update_runtime(self, spec: SpecLike, *, timeout: float = DEFAULT_WAIT_SECONDS) -> dict[str, Any]:
        """Create the runtime or update the one of that name (waiting out a change in progress first).

        Returns the runtime as the create/update answered (usually CREATING or UPDATING): call
        :meth:`wait_until_ready` next.

        A 409 is met by what it says [assumed: AgentRun answers 409 both for a name that exists and
        for a runtime that is CREATING or UPDATING; the stand-in does]: a create finds the runtime
        and updates it (another deploy won a race, or an earlier attempt of this create took effect
        before its 5xx and the retry found it); an update waits for the runtime to settle and is
        sent again (an earlier attempt took effect before its 5xx, so the retry found it UPDATING).
        """
        body = _as_body(spec)
        name = body["agentRuntimeName"]
        existing = self.find_runtime_by_name(name)
        if existing is None:
            try:
                return self.create_runtime(body)
            except PlatformError as error:
                existing = self.find_runtime_by_name(name) if error.status == 409 else None
                if existing is None:
                    raise
        runtime_id = str(existing["agentRuntimeId"])
        if existing.get("status") in IN_PROGRESS_STATES:
            self._settle(runtime_id, timeout)
        try:
            return self.update_runtime(runtime_id, body)
        except PlatformError as error:
            if error.status != 409:
                raise
        self._settle(runtime_id, timeout)
        return self.update_runtime(runtime_id, body)

    def _settle(self, runtime_id: str, timeout: float) -> None:
        self._wait(runtime_id, lambda status: status not in IN_PROGRESS_STATES, timeout, "settle")

    def wait_until_ready(self, runtime_id: str, timeout: float = DEFAULT_WAIT_SECONDS) -> dict[str, Any]:
        """Poll until READY; FAILED raises ResourceFailed with the platform's reason, the deadline WaitTimeout."""
        runtime = self._wait(
            runtime_id, lambda status: status in READY_STATES or status in FAILED_STATES, timeout, "be READY"
        )
        if runtime.get("status") in FAILED_STATES:
            reason = runtime.get("statusReason") or "the platform gave no reason"
            raise ResourceFailed(
                str(runtime.get("status")),
                f"agent runtime {runtime.get('agentRuntimeName') or runtime_id} failed: {reason}",
                action="GetAgentRuntime",
            )
        return runtime

    def _wait(self, runtime_id: str, done: Callable[[str], bool], timeout: float, goal: str) -> dict[str, Any]:
        def fetch() -> dict[str, Any]:
            runtime = self.get_runtime(runtime_id)
            if runtime is None:
                raise PlatformError(
                    "NotFound", f"agent runtime {runtime_id} no longer exists", status=404, action="GetAgentRuntime"
                )
            return runtime

        def timed_out(runtime: dict[str, Any]) -> Exception:
            return WaitTimeout(
                "Timeout",
                f"agent runtime {runtime.get('agentRuntimeName') or runtime_id} is still "
                f"{runtime.get('status') or ''} after {timeout:g} s waiting for it to {goal}; check it in "
                "the AgentRun console or deploy again with a longer wait",
                action="GetAgentRuntime",
            )

        return self.poll.until(fetch, lambda runtime: done(str(runtime.get("status") or "")), timeout, timed_out)

    def delete_runtime(self, runtime_id: str, *, wait: bool = True, timeout: float = DEFAULT_WAIT_SECONDS) -> bool:
        """Delete the runtime's endpoints, then the runtime; with ``wait``, until it is gone. False if absent."""
        if self.get_runtime(runtime_id) is None:
            return False
        for endpoint in self.list_endpoints(runtime_id):
            self.delete_endpoint(runtime_id, str(endpoint["agentRuntimeEndpointId"]))
        if not self._delete(
            "DeleteAgentRuntime", lambda: self.client.delete_agent_runtime_with_options(runtime_id, {}, sdk_runtime())
        ):
            return False
        if wait:

            def gone(runtime: dict[str, Any] | None) -> bool:
                if runtime is not None and runtime.get("status") in FAILED_STATES:
                    raise ResourceFailed(
                        str(runtime["status"]),
                        f"deleting agent runtime {runtime_id} failed: "
                        f"{runtime.get('statusReason') or 'the platform gave no reason'}",
                        action="DeleteAgentRuntime",
                    )
                return runtime is None

            self.poll.until(
                lambda: self.get_runtime(runtime_id),
                gone,
                timeout,
                lambda runtime: WaitTimeout(
                    "Timeout",
                    f"agent runtime {runtime_id} is still {(runtime or {}).get('status')} {timeout:g} s after the delete",
                    action="DeleteAgentRuntime",
                ),
            )
        return True

    # -- inbound credentials ----------------------------------------------------------------------

    def get_credential(self, name: str) -> dict[str, Any] | None:
        body = self._call_or_none(
            "GetCredential", lambda: self.client.get_credential_with_options(name, {}, sdk_runtime())
        )
        return None if body is None else _data(body)

    def ensure_inbound_credential(self, name: str, description: str) -> bool:
        """An inbound API-key credential ``name`` (created with a random key unless it exists); True if created.

        A runtime naming it in ``credentialName`` answers on its public host only to callers
        presenting the key; agentpack's own calls go to the signed ``-ram`` host instead
        (:func:`ram_url`), so the key is never read or stored by agentpack.
        """
        if self.get_credential(name) is not None:
            return False
        m = self.models
        body = m.CreateCredentialInput(
            credential_name=name,
            credential_source_type="internal",
            credential_auth_type="api_key",
            credential_public_config=m.CredentialPublicConfig(header_key="Authorization"),
            credential_secret=secrets.token_urlsafe(32),
            description=description,
            enabled=True,
        )
        self._call(
            "CreateCredential",
            lambda: self.client.create_credential_with_options(m.CreateCredentialRequest(body=body), {}, sdk_runtime()),
        )
        return True

    def delete_credential(self, name: str) -> bool:
        return self._delete(
            "DeleteCredential", lambda: self.client.delete_credential_with_options(name, {}, sdk_runtime())
        )

    # -- versions ------------------------------------------------------------------------------

    def publish_version(self, runtime_id: str, description: str = "") -> str:
        m = self.models
        data = _data(
            self._call(
                "PublishRuntimeVersion",
                lambda: self.client.publish_runtime_version_with_options(
                    runtime_id,
                    m.PublishRuntimeVersionRequest(body=m.PublishRuntimeVersionInput(description=description)),
                    {},
                    sdk_runtime(),
                ),
            )
        )
        version = data.get("agentRuntimeVersion")
        if not version:
            raise PlatformError(
                "NoVersion", "PublishRuntimeVersion answered without a version", action="PublishRuntimeVersion"
            )
        return str(version)

    def list_versions(self, runtime_id: str) -> list[dict[str, Any]]:
        m = self.models
        return self._all_pages(
            "ListAgentRuntimeVersions",
            lambda page: self.client.list_agent_runtime_versions_with_options(
                runtime_id, m.ListAgentRuntimeVersionsRequest(page_number=page, page_size=PAGE_SIZE), {}, sdk_runtime()
            ),
        )

    # -- endpoints -----------------------------------------------------------------------------

    def list_endpoints(self, runtime_id: str, name: str | None = None) -> list[dict[str, Any]]:
        m = self.models
        return self._all_pages(
            "ListAgentRuntimeEndpoints",
            lambda page: self.client.list_agent_runtime_endpoints_with_options(
                runtime_id,
                m.ListAgentRuntimeEndpointsRequest(endpoint_name=name, page_number=page, page_size=PAGE_SIZE),
                {},
                sdk_runtime(),
            ),
        )

    def find_endpoint(self, runtime_id: str, name: str) -> dict[str, Any] | None:
        for endpoint in self.list_endpoints(runtime_id, name):
            if endpoint.get("agentRuntimeEndpointName") == name:
                return endpoint
        return None

    def get_endpoint(self, runtime_id: str, endpoint_id: str) -> dict[str, Any] | None:
        body = self._call_or_none(
            "GetAgentRuntimeEndpoint",
            lambda: self.client.get_agent_runtime_endpoint_with_options(runtime_id, endpoint_id, {}, sdk_runtime()),
        )
        return None if body is None else _data(body)

    def ensure_endpoint(
        self,
        runtime_id: str,
        name: str,
        target_version: str,
        *,
        description: str = "",
        timeout: float = DEFAULT_WAIT_SECONDS,
    ) -> str:
        """Create the endpoint or retarget it to ``target_version``; wait for READY; return its public URL."""
        m = self.models
        existing = self.find_endpoint(runtime_id, name)
        if existing is None:
            endpoint = _data(
                self._call(
                    "CreateAgentRuntimeEndpoint",
                    lambda: self.client.create_agent_runtime_endpoint_with_options(
                        runtime_id,
                        m.CreateAgentRuntimeEndpointRequest(
                            body=m.CreateAgentRuntimeEndpointInput(
                                agent_runtime_endpoint_name=name, target_version=target_version, description=description
                            )
                        ),
                        {},
                        sdk_runtime(),
                    ),
                )
            )
        elif existing.get("targetVersion") != target_version:
            endpoint = _data(
                self._call(
                    "UpdateAgentRuntimeEndpoint",
                    lambda: self.client.update_agent_runtime_endpoint_with_options(
                        runtime_id,
                        str(existing["agentRuntimeEndpointId"]),
                        m.UpdateAgentRuntimeEndpointRequest(
                            body=m.UpdateAgentRuntimeEndpointInput(
                                agent_runtime_endpoint_name=name, target_version=target_version, description=description
                            )
                        ),
                        {},
                        sdk_runtime(),
                    ),
                )
            )
        else:
            endpoint = existing
        endpoint_id = str(endpoint["agentRuntimeEndpointId"])

        def fetch() -> dict[str, Any]:
            fresh = self.get_endpoint(runtime_id, endpoint_id)
            if fresh is None:
                raise PlatformError(
                    "NotFound",
                    f"endpoint {name} of agent runtime {runtime_id} disappeared",
                    status=404,
                    action="GetAgentRuntimeEndpoint",
                )
            return fresh

        def ready(endpoint: dict[str, Any]) -> bool:
            if endpoint.get("status") in FAILED_STATES:
                raise ResourceFailed(
                    str(endpoint["status"]),
                    f"endpoint {name} of agent runtime {runtime_id} failed: "
                    f"{endpoint.get('statusReason') or 'the platform gave no reason'}",
                    action="GetAgentRuntimeEndpoint",
                )
            return endpoint.get("status") in READY_STATES

        endpoint = self.poll.until(
            fetch,
            ready,
            timeout,
            lambda endpoint: WaitTimeout(
                "Timeout",
                f"endpoint {name} of agent runtime {runtime_id} is still {endpoint.get('status')} after {timeout:g} s",
                action="GetAgentRuntimeEndpoint",
            ),
            start=endpoint,
        )
        url = str(endpoint.get("endpointPublicUrl") or "").strip()
        if not url:
            raise PlatformError(
                "EndpointHasNoURL",
                f"endpoint {name} of agent runtime {runtime_id} reports no public "
                "URL (is public network access disabled?)",
                action="GetAgentRuntimeEndpoint",
            )
        return url

    def delete_endpoint(self, runtime_id: str, endpoint_id: str) -> bool:
        return self._delete(
            "DeleteAgentRuntimeEndpoint",
            lambda: self.client.delete_agent_runtime_endpoint_with_options(runtime_id, endpoint_id, {}, sdk_runtime()),
        )
