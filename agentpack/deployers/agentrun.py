"""``agentpack deploy --target agentrun``: an AgentRun agent runtime with a code artifact.

The runtime is found by its name and created or updated in place: artifact type Code, inline
zip, language ``python<version of the artifact>``, command ``/code/bootstrap`` (which runs the
runtime's ``python3`` behind the AgentRun adapter), ``port`` (also in ``PORT``), a health check
on ``/readiness``, and cpu / memory / sessions per instance / idle timeout / role / environment
from ``[targets.agentrun]``.  The deploy then waits for READY with a deadline and a growing
poll interval — a FAILED runtime ends the deploy with the platform's ``statusReason`` —
publishes a version and creates or retargets the endpoint ``live`` to it, whose public URL is
the deployment's URL.  ``rollback`` retargets the endpoint to an earlier version.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from agentpack.deployers.alibaba import PlatformError
from agentpack.deployers.base import ROUTE, Deployer, DeployOutcome, same
from agentpack.deployers.errors import DeployConfigError
from agentpack.deployers.request import DeployRequest
from agentpack.deployers.state import Deployment, now

LANGUAGES = {"3.10": "python3.10", "3.12": "python3.12"}
#: AgentRun requires cpu and memory; these are sent when the settings leave them unset.
DEFAULT_CPU = 2.0
DEFAULT_MEMORY = 4096


class AgentRunDeployer(Deployer):
    target = "agentrun"
    name_setting = "runtime_name"
    sdk_modules = ("alibabacloud_agentrun20250910", "alibabacloud_tea_openapi", "darabonba", "alibabacloud_credentials")

    def __init__(self, settings: Any, *, environ: Optional[dict[str, str]] = None, api: Any = None, **options: Any) -> None:
        super().__init__(settings, **options)
        from agentpack.deployers.agentrun_api import AgentRunApi

        self.api = api or AgentRunApi(region=self.region, endpoint=getattr(settings, "endpoint", None), environ=environ)
        self.region = self.api.region or self.region

    def spec(self, request: DeployRequest, code: Optional[bytes]) -> Any:
        from agentpack.deployers.agentrun_api import RuntimeSpec

        settings = request.settings
        language = LANGUAGES.get(request.python)
        if language is None:
            raise DeployConfigError(f"AgentRun code runtimes offer Python {', '.join(LANGUAGES)}, not {request.python}; build for one of those")
        return RuntimeSpec(
            name=request.name,
            command=["/code/bootstrap"],
            port=settings.port,
            language=language,
            zip_bytes=code,
            cpu=settings.cpu or DEFAULT_CPU,
            memory=settings.memory or DEFAULT_MEMORY,
            session_concurrency=settings.session_concurrency,
            session_idle_timeout_seconds=settings.idle_timeout,
            environment=self.variables(request, {"PORT": str(settings.port), "AGENTPACK_PLATFORM": "agentrun"}),
            health_check_path="/readiness",
            execution_role_arn=settings.role,
            description="deployed by agentpack",
        )

    def deploy(self, request: DeployRequest, previous: Optional[Deployment]) -> DeployOutcome:
        started = time.perf_counter()
        api = self.api
        desired = self.spec(request, None).to_api()
        current = api.find_runtime_by_name(request.name)
        known = previous.resource if previous is not None else {}
        runtime_id = str(current["agentRuntimeId"]) if current is not None else None
        code_needed = (
            request.force
            or current is None
            or known.get("runtime_id") != runtime_id
            or known.get("latest_sha256") != request.sha256
            or current.get("lastUpdatedAt") != known.get("last_updated_at")
            or current.get("status") not in ("READY", "ACTIVE")
        )
        config_changed = current is None or not same(desired, current, exact=frozenset({"environmentVariables"}))
        if not code_needed and not config_changed and previous is not None and previous.sha256 == request.sha256:
            endpoint = api.find_endpoint(runtime_id, ROUTE)
            if (endpoint and endpoint.get("targetVersion") == previous.version and endpoint.get("status") in ("READY", "ACTIVE")
                    and endpoint.get("endpointPublicUrl")):
                previous.url = str(endpoint["endpointPublicUrl"])
                return DeployOutcome(previous, "unchanged", seconds=time.perf_counter() - started)

        previous_version = previous.version if previous is not None else None
        uploaded = False
        if current is None and previous is not None:  # deleted outside agentpack: its versions went with it
            previous.releases = []
        last_updated = known.get("last_updated_at")
        if current is None or code_needed or config_changed:
            body = self.spec(request, request.zip_bytes() if code_needed else None).to_api()
            if current is None:
                self.progress("upload", f"creating agent runtime {request.name} with {request.size_bytes / 1e6:.1f} MB of code")
                action = "created"
            else:
                self.progress("upload" if code_needed else "configure", f"{'uploading code' if code_needed else 'updating configuration'} of agent runtime {request.name}")
                action = "updated" if code_needed else "configured"
            result = api.create_or_update_runtime(body, timeout=request.wait_seconds)
            runtime_id = str(result["agentRuntimeId"])
            uploaded = code_needed
            self.progress("wait", f"waiting for agent runtime {request.name} to be READY (up to {request.wait_seconds:g} s)")
            ready = api.wait_until_ready(runtime_id, timeout=request.wait_seconds)
            last_updated = ready.get("lastUpdatedAt")
            version = api.publish_version(runtime_id, description=f"agentpack {request.sha256[:12]}")
            self.progress("publish", f"version {version}")
        else:
            assert runtime_id is not None
            version = self.reused_version(previous, request.sha256) or api.publish_version(runtime_id, description=f"agentpack {request.sha256[:12]}")
            action = "republished"
        self.progress("route", f"endpoint {ROUTE} → version {version}")
        assert runtime_id is not None
        url = api.ensure_endpoint(runtime_id, ROUTE, version, description="the version agentpack serves", timeout=request.wait_seconds)

        deployment = previous if previous is not None else Deployment(target=self.target, name=request.name)
        deployment.url = url
        deployment.region = self.region
        deployment.auth = "anonymous"
        deployment.env_keys = sorted(desired.get("environmentVariables") or {})
        deployment.python, deployment.arch = request.python, request.arch
        deployment.status = "deployed"
        deployment.resource = {**known, "runtime_id": runtime_id, "endpoint": ROUTE, "latest_sha256": request.sha256,
                               "last_updated_at": last_updated}
        deployment.remember(version, request.sha256)
        deployment.deployed_at = now()
        return DeployOutcome(deployment, action, uploaded, previous_version, seconds=time.perf_counter() - started)

    def _runtime_id(self, deployment: Deployment) -> Optional[str]:
        runtime_id = deployment.resource.get("runtime_id")
        if runtime_id and self.api.get_runtime(str(runtime_id)) is not None:
            return str(runtime_id)
        found = self.api.find_runtime_by_name(deployment.name)
        return str(found["agentRuntimeId"]) if found else None

    def status(self, deployment: Deployment) -> dict[str, Any]:
        runtime_id = self._runtime_id(deployment)
        if runtime_id is None:
            return {"exists": False, "detail": f"agent runtime {deployment.name} does not exist on AgentRun"}
        runtime = self.api.get_runtime(runtime_id) or {}
        endpoint = self.api.find_endpoint(runtime_id, ROUTE) or {}
        return {
            "exists": True,
            "state": runtime.get("status"),
            "reason": runtime.get("statusReason") or "",
            "runtime_id": runtime_id,
            "version": endpoint.get("targetVersion"),
            "endpoint_state": endpoint.get("status"),
            "url": endpoint.get("endpointPublicUrl"),
            "cpu": runtime.get("cpu"),
            "memory": runtime.get("memory"),
            "env": {key: "***" for key in runtime.get("environmentVariables") or {}},
            "last_modified": runtime.get("lastUpdatedAt"),
        }

    def rollback(self, deployment: Deployment, version: str) -> Deployment:
        runtime_id = self._runtime_id(deployment)
        if runtime_id is None:
            raise PlatformError("NotFound", f"agent runtime {deployment.name} does not exist any more; deploy it again", action="GetAgentRuntime")
        deployment.url = self.api.ensure_endpoint(runtime_id, ROUTE, version, description="the version agentpack serves")
        return deployment

    def destroy(self, deployment: Deployment) -> bool:
        runtime_id = self._runtime_id(deployment)
        if runtime_id is None:
            return False
        return self.api.delete_runtime(runtime_id, wait=True)

    def logs(self, deployment: Deployment, *, since_seconds: float = 3600, follow: bool = False) -> Any:
        from agentpack.deployers.base import NotOffered

        raise NotOffered("AgentRun writes logs to Simple Log Service when the runtime has a log configuration; read them in the AgentRun console")
