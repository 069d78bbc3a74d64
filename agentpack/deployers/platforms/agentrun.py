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

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from agentpack.deployers.errors import DeployConfigError, NotOffered, PlatformError
from agentpack.deployers.pipeline import ROUTE, Deployer, Plan
from agentpack.deployers.request import DeployRequest
from agentpack.deployers.state import Deployment

if TYPE_CHECKING:
    from agentpack.deployers.clients.agentrun import AgentRunApi, RuntimeSpec
    from agentpack.target_settings import AgentRunSettings

LANGUAGES = {"3.10": "python3.10", "3.12": "python3.12"}
#: The states in which a runtime or an endpoint serves (the references say READY or ACTIVE).
SERVING = ("READY", "ACTIVE")


class AgentRunDeployer(Deployer):
    target = "agentrun"
    name_setting = "runtime_name"
    sdk_modules = ("alibabacloud_agentrun20250910", "alibabacloud_tea_openapi", "darabonba", "alibabacloud_credentials")
    client = "agentpack.deployers.clients.agentrun:AgentRunApi"
    exact = frozenset({"environmentVariables"})
    settings: AgentRunSettings
    api: AgentRunApi

    def spec(self, request: DeployRequest, variables: dict[str, str], code: bytes | None = None) -> RuntimeSpec:
        from agentpack.deployers.clients.agentrun import RuntimeSpec

        settings = request.settings
        return RuntimeSpec(
            name=request.name,
            command=["/code/bootstrap"],
            port=settings.port,
            language=LANGUAGES[request.python],
            zip_bytes=code,
            cpu=settings.effective("cpu"),
            memory=settings.effective("memory"),
            session_concurrency=settings.session_concurrency,
            session_idle_timeout_seconds=settings.idle_timeout,
            environment=variables,
            health_check_path=self.row.health_path,
            execution_role_arn=settings.role,
            description="deployed by agentpack",
        )

    # -- the pipeline's hooks -------------------------------------------------------------------------
    def check(self, plan: Plan) -> None:
        python = plan.request.python
        if python not in LANGUAGES:
            raise DeployConfigError(
                f"AgentRun code runtimes offer Python {', '.join(LANGUAGES)}, not {python}; build for one of those"
            )

    def own_variables(self, request: DeployRequest) -> dict[str, str]:
        adapter = self.row.adapter
        assert adapter is not None, "the agentrun row names its adapter"
        return {"PORT": str(request.settings.port), "AGENTPACK_PLATFORM": adapter}

    def desired(self, plan: Plan) -> dict[str, Any]:
        return self.spec(plan.request, plan.variables).to_api()

    def find(self, plan: Plan) -> dict[str, Any] | None:
        current = self.api.find_runtime_by_name(plan.request.name)
        plan.facts["runtime_id"] = str(current["agentRuntimeId"]) if current is not None else None
        plan.facts["last_updated_at"] = plan.known.get("last_updated_at")
        return current

    def code_differs(self, plan: Plan) -> bool:
        current, known = plan.current or {}, plan.known
        return (
            known.get("runtime_id") != plan.facts["runtime_id"]
            or known.get("latest_sha256") != plan.request.sha256
            or current.get("lastUpdatedAt") != known.get("last_updated_at")
            or current.get("status") not in SERVING
        )

    def serving_url(self, plan: Plan) -> str | None:
        assert plan.previous is not None
        endpoint = self.api.find_endpoint(plan.facts["runtime_id"], ROUTE)
        if (
            endpoint
            and endpoint.get("targetVersion") == plan.previous.version
            and endpoint.get("status") in SERVING
            and endpoint.get("endpointPublicUrl")
        ):
            return str(endpoint["endpointPublicUrl"])
        return None

    def upload(self, plan: Plan) -> str:
        request = plan.request
        body = self.spec(request, plan.variables, request.zip_bytes() if plan.code_needed else None).to_api()
        if plan.current is None:
            self.progress(
                "upload", f"creating agent runtime {request.name} with {request.size_bytes / 1e6:.1f} MB of code"
            )
            action = "created"
        else:
            self.progress(
                "upload" if plan.code_needed else "configure",
                f"{'uploading code' if plan.code_needed else 'updating configuration'} of agent runtime {request.name}",
            )
            action = "updated" if plan.code_needed else "configured"
        result = self.api.create_or_update_runtime(body, timeout=request.wait_seconds)
        plan.facts["runtime_id"] = str(result["agentRuntimeId"])
        return action

    def wait(self, plan: Plan) -> None:
        request = plan.request
        self.progress(
            "wait", f"waiting for agent runtime {request.name} to be READY (up to {request.wait_seconds:g} s)"
        )
        ready = self.api.wait_until_ready(plan.facts["runtime_id"], timeout=request.wait_seconds)
        plan.facts["last_updated_at"] = ready.get("lastUpdatedAt")

    def publish(self, plan: Plan) -> str:
        return self.api.publish_version(plan.facts["runtime_id"], description=f"agentpack {plan.request.sha256[:12]}")

    def route(self, plan: Plan, version: str) -> str:
        self.progress("route", f"endpoint {ROUTE} → version {version}")
        return self.api.ensure_endpoint(
            plan.facts["runtime_id"],
            ROUTE,
            version,
            description="the version agentpack serves",
            timeout=plan.request.wait_seconds,
        )

    def resource(self, plan: Plan) -> dict[str, Any]:
        return {
            "runtime_id": plan.facts["runtime_id"],
            "endpoint": ROUTE,
            "latest_sha256": plan.request.sha256,
            "last_updated_at": plan.facts["last_updated_at"],
        }

    # -- the other commands -------------------------------------------------------------------------
    def _runtime_id(self, deployment: Deployment) -> str | None:
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
            "env": dict.fromkeys(runtime.get("environmentVariables") or {}, "***"),
            "last_modified": runtime.get("lastUpdatedAt"),
        }

    def rollback(self, deployment: Deployment, version: str) -> Deployment:
        runtime_id = self._runtime_id(deployment)
        if runtime_id is None:
            raise PlatformError(
                "NotFound",
                f"agent runtime {deployment.name} does not exist any more; deploy it again",
                action="GetAgentRuntime",
            )
        deployment.url = self.api.ensure_endpoint(
            runtime_id, ROUTE, version, description="the version agentpack serves"
        )
        return deployment

    def destroy(self, deployment: Deployment) -> bool:
        runtime_id = self._runtime_id(deployment)
        if runtime_id is None:
            return False
        return self.api.delete_runtime(runtime_id, wait=True)

    def logs(self, deployment: Deployment, *, since_seconds: float = 3600, follow: bool = False) -> Iterator[str]:
        raise NotOffered(
            "AgentRun writes logs to Simple Log Service when the runtime has a log configuration; read them in the AgentRun console"
        )
