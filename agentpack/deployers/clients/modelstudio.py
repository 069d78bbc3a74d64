"""Model Studio (Bailian, API 2023-12-29) operations a deployer of high-code agents needs, over the real SDK.

A high-code deploy is three calls: ``ApplyTempStorageLease`` (``POST /{workspace}/datacenter``,
form body) answers a presigned URL, the headers and the method to upload with, and a lease id;
the file goes to that URL; ``HighCodeDeploy`` (``POST /openapi/{workspace}/highCode/publish``,
JSON body) publishes the uploaded file as the agent ``agentName`` — a new one, or the agent
``agentId`` updated — and answers ``{success, data, errorCode, errorMsg}`` where ``data`` is the
agent's id (a string: the SDK's response model).  Agents are read with ``GetPublishedAgent``
and ``ListPublishedAgent`` and removed with ``DeleteAgent``.  The facts and their sources are in
tests/standins/README.md ("Model Studio").

The workspace comes from the caller, else ``MODELSTUDIO_WORKSPACE_ID`` (AgentScope Runtime's
variable); the endpoint from the caller, else ``AGENTPACK_MODELSTUDIO_ENDPOINT``, else
``MODELSTUDIO_ENDPOINT``, else the region's (``bailian.<region>.aliyuncs.com``, cn-beijing
by default, as AgentScope Runtime).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from agentpack.deployers.clients.alibaba import (
    ENV_REGION,
    THROTTLING_CODES,
    AlibabaApi,
    AlibabaConfigError,
    Credentials,
    PollPolicy,
    RetryPolicy,
    WaitTimeout,
    call,
    only_one,
    response_body,
    sdk_runtime,
)
from agentpack.deployers.errors import PlatformError

ENDPOINT_ENV = "AGENTPACK_MODELSTUDIO_ENDPOINT"
UPSTREAM_ENDPOINT_ENV = "MODELSTUDIO_ENDPOINT"
WORKSPACE_ENV = "MODELSTUDIO_WORKSPACE_ID"
DEFAULT_REGION = "cn-beijing"
DEFAULT_WAIT_SECONDS = 900.0
PAGE_SIZE = 50
#: How long the upload to the lease's URL may take (connect, then each read/write).
UPLOAD_TIMEOUT = 300.0


@dataclass(frozen=True)
class Lease:
    """A temporary storage lease: where and how to upload, and the id HighCodeDeploy takes."""

    lease_id: str
    url: str = field(repr=False)  # presigned: a credential for as long as it lives
    method: str = "PUT"
    headers: dict[str, str] = field(default_factory=dict, repr=False)


def workspace_of(explicit: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The workspace: the setting, else ``MODELSTUDIO_WORKSPACE_ID``; none is a config error."""
    env = os.environ if environ is None else environ
    workspace = (explicit or env.get(WORKSPACE_ENV) or "").strip()
    if not workspace:
        raise AlibabaConfigError(
            f'no Model Studio workspace: set [targets.modelstudio] workspace = "<workspace id>" or {WORKSPACE_ENV} '
            "(the id is on the console's workspace page)"
        )
    return workspace


def _success(body: dict[str, Any], action: str) -> None:
    """Model Studio can answer HTTP 200 with ``success: false``: that is a failed call."""
    if body.get("success") is False or body.get("Success") is False:
        code = body.get("errorCode") or body.get("code") or body.get("Code") or "Failed"
        message = body.get("errorMsg") or body.get("message") or body.get("Message") or "the platform gave no reason"
        request_id = body.get("requestId") or body.get("RequestId")
        raise PlatformError(str(code), str(message), str(request_id) if request_id else None, None, action)


class ModelStudioApi(AlibabaApi):
    """Model Studio control-plane calls for one workspace (see the module doc)."""

    endpoint_env = ENDPOINT_ENV
    sdk_package = "alibabacloud_bailian20231229"

    def __init__(
        self,
        *,
        region: str | None = None,
        endpoint: str | None = None,
        workspace: str | None = None,
        credentials: Credentials | None = None,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        endpoint = endpoint or env.get(ENDPOINT_ENV) or env.get(UPSTREAM_ENDPOINT_ENV) or None
        region = region or env.get(ENV_REGION) or DEFAULT_REGION
        super().__init__(
            region=region, endpoint=endpoint, credentials=credentials, retry=retry, poll=poll, environ=environ
        )
        self.environ = env
        #: None until known: a deployer fills it in from its record (``use_workspace``)
        self.workspace = (workspace or env.get(WORKSPACE_ENV) or "").strip() or None

    def use_workspace(self, workspace: str | None) -> None:
        """Work in ``workspace`` when none was configured (a deployment's recorded one)."""
        if self.workspace is None and workspace:
            self.workspace = workspace

    def ws(self) -> str:
        """The workspace, or the config error that says how to set it."""
        return workspace_of(self.workspace, {})

    # -- upload ---------------------------------------------------------------------------------
    def apply_lease(self, file_name: str, size: int) -> Lease:
        m = self.models
        body = self._call(
            "ApplyTempStorageLease",
            lambda: self.client.apply_temp_storage_lease_with_options(
                self.ws(), m.ApplyTempStorageLeaseRequest(file_name=file_name, size_in_bytes=size), {}, sdk_runtime()
            ),
        )
        _success(body, "ApplyTempStorageLease")
        data = body.get("Data")
        if not isinstance(data, dict):
            raise PlatformError(
                "NoLease",
                "ApplyTempStorageLease answered without Data: is this RAM user a member of the workspace? "
                "Add it under Permission Management in the Model Studio console",
                body.get("RequestId"),
                None,
                "ApplyTempStorageLease",
            )
        param = data.get("Param") or {}
        if not data.get("TempStorageLeaseId") or not param.get("Url"):
            raise PlatformError(
                "NoLease", "ApplyTempStorageLease answered without a lease id or upload URL", body.get("RequestId"),
                None, "ApplyTempStorageLease",
            )  # fmt: skip
        return Lease(
            str(data["TempStorageLeaseId"]),
            str(param["Url"]),
            str(param.get("Method") or "PUT").upper(),
            {str(k): str(v) for k, v in (param.get("Headers") or {}).items()},
        )

    def upload(self, lease: Lease, data: bytes) -> None:
        """Send the file to the lease's URL with the lease's method and headers (nothing else signed)."""
        import httpx

        try:
            response = httpx.request(
                lease.method, lease.url, content=data, headers=lease.headers, timeout=UPLOAD_TIMEOUT
            )
        except httpx.HTTPError as exc:
            raise PlatformError(
                "UploadFailed", f"could not upload to the lease's URL: {exc}", None, None, "Upload"
            ) from None
        if response.status_code >= 300:
            raise PlatformError(
                "UploadFailed",
                f"the upload to the lease's URL answered {response.status_code}: {response.text[:300]}",
                response.headers.get("x-oss-request-id"),
                response.status_code,
                "Upload",
            )

    # -- agents ---------------------------------------------------------------------------------
    def high_code_deploy(
        self,
        *,
        agent_name: str,
        source_code_name: str,
        lease_id: str,
        agent_id: str | None = None,
        description: str | None = None,
        telemetry: bool = False,
    ) -> str:
        """Publish the uploaded file as ``agent_name`` (updating ``agent_id`` when given); the agent's id."""
        m = self.models
        request = m.HighCodeDeployRequest(
            agent_name=agent_name,
            source_code_name=source_code_name,
            source_code_oss_url=lease_id,
            agent_id=agent_id,
            agent_desc=description,
            telemetry_enabled=telemetry,
        )
        deploy = partial(self.client.high_code_deploy_with_options, self.ws(), request, {}, sdk_runtime())
        body = self._call("HighCodeDeploy", deploy) if agent_id else self._create(deploy)
        _success(body, "HighCodeDeploy")
        data = body.get("data")
        if not isinstance(data, str) or not data.strip():
            raise PlatformError(
                "NoAgentId", f"HighCodeDeploy answered without the agent's id (data = {data!r})", None, None,
                "HighCodeDeploy",
            )  # fmt: skip
        return data.strip()

    def _create(self, deploy: Callable[[], Any]) -> dict[str, Any]:
        """HighCodeDeploy without ``agentId`` creates an agent, and a 5xx may come after it did: only
        throttling (the call was refused, nothing made) is retried, so a retry never makes a second agent."""
        attempt = 0
        while True:
            try:
                return response_body(call("HighCodeDeploy", deploy, RetryPolicy(max_attempts=1)))
            except PlatformError as error:
                code = error.code or ""
                attempt += 1
                if not (error.status == 429 or code in THROTTLING_CODES or code.startswith("Throttling")):
                    raise
                if attempt >= self.retry.max_attempts:
                    raise
                self.retry.sleep(self.retry.delay(attempt - 1))

    def get_agent(self, agent_id: str) -> dict[str, Any] | None:
        """The published agent (``GetPublishedAgent``'s data), or None when there is none (yet)."""
        m = self.models
        body = self._call_or_none(
            "GetPublishedAgent",
            lambda: self.client.get_published_agent_with_options(
                self.ws(), agent_id, m.GetPublishedAgentRequest(), {}, sdk_runtime()
            ),
        )
        if body is None or (body.get("success") is False and str(body.get("httpStatusCode")) == "404"):
            return None
        _success(body, "GetPublishedAgent")
        data = body.get("data")
        return {**data, "code": data.get("code") or agent_id} if isinstance(data, dict) else None

    def list_agents(self) -> list[dict[str, Any]]:
        m = self.models
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            request = m.ListPublishedAgentRequest(page_no=page, page_size=PAGE_SIZE)
            body = self._call(
                "ListPublishedAgent",
                partial(self.client.list_published_agent_with_options, self.ws(), request, {}, sdk_runtime()),
            )
            _success(body, "ListPublishedAgent")
            data = body.get("data") or {}
            items = data.get("list") or []
            found.extend(items)
            if not items or len(found) >= int(data.get("total") or 0):
                return found
            page += 1

    def find_agent_by_name(self, name: str) -> dict[str, Any] | None:
        matches = [item for item in self.list_agents() if item.get("name") == name]
        where = f" in workspace {self.ws()}"
        found: dict[str, Any] | None = only_one(matches, "agents", name, "code", "ListPublishedAgent", where)
        return found

    def wait_published(self, agent_id: str, timeout: float = DEFAULT_WAIT_SECONDS) -> dict[str, Any]:
        """Poll GetPublishedAgent until the agent is there; past ``timeout`` raise WaitTimeout."""

        def timed_out(_: dict[str, Any] | None) -> Exception:
            return WaitTimeout(
                "Timeout",
                f"agent {agent_id} is still not published after {timeout:g} s; check it in the Model Studio "
                "console or deploy again with a longer --wait",
                action="GetPublishedAgent",
            )

        agent = self.poll.until(lambda: self.get_agent(agent_id), lambda found: found is not None, timeout, timed_out)
        assert agent is not None
        return agent

    def delete_agent(self, agent_id: str) -> bool:
        """Delete the agent; False when it was gone already."""
        m = self.models
        body = self._call_or_none(
            "DeleteAgent",
            lambda: self.client.delete_agent_with_options(
                self.ws(), agent_id, m.DeleteAgentRequest(), {}, sdk_runtime()
            ),
        )
        if body is None:
            return False
        _success(body, "DeleteAgent")
        return True
