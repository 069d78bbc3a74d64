"""``agentpack deploy --target modelstudio``: a Model Studio (Bailian) high-code agent.

The artifact is a wheel (see ``agentpack.targets``: ``deploy_starter/main.py`` serves the app on
0.0.0.0:8080).  A deploy finds the agent by its name in the workspace (the recorded agent id
first, then ``ListPublishedAgent``), and when the artifact is new to it: applies for a temporary
storage lease, uploads the wheel to the lease's URL with the lease's method and headers, and
calls ``HighCodeDeploy`` with the lease id — with the agent's id when it exists, so the same
agent is updated rather than a second one made.  The answer's ``data`` is the agent id.  The
deploy then waits, with a deadline, until ``GetPublishedAgent`` finds the agent.  An artifact
whose sha256 the record says is already uploaded to that agent is not uploaded again.

What the platform does not offer, said plainly: environment variables (HighCodeDeploy takes
none, and agentpack never writes them into the artifact — set them on the agent in the
console), versions (so no rollback), logs agentpack can read, and a stable agent URL in the
API (the URL callers use is the ``invoke_url`` template, DashScope's application endpoint by
default, with ``DASHSCOPE_API_KEY`` as the bearer token).
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from agentpack.deployers.errors import DeployConfigError, NotOffered, require_modules
from agentpack.deployers.pipeline import Deployer, Plan
from agentpack.deployers.request import Progress, no_progress
from agentpack.deployers.state import Deployment
from agentpack.targets import MODELSTUDIO_WHEEL

if TYPE_CHECKING:
    from agentpack.deployers.clients.modelstudio import ModelStudioApi
    from agentpack.target_settings import ModelStudioSettings, TargetSettings

INVOKE_URL_ENV = "AGENTPACK_MODELSTUDIO_INVOKE_URL"
#: [assumed] DashScope's application endpoint, where Model Studio applications are called
DEFAULT_INVOKE_URL = "https://dashscope.aliyuncs.com/api/v1/apps/{agent_id}"
API_KEY_ENV = "DASHSCOPE_API_KEY"
CONSOLE_URL = "https://bailian.console.aliyun.com/?tab=app#/app-center"
#: The status ``record_on_create`` gives an agent a first deploy created but did not see published
UNFINISHED = "creating"


class BearerAuth(httpx.Auth):
    """``Authorization: Bearer <DashScope API key>`` on every request to the agent."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


class ModelStudioDeployer(Deployer):
    target = "modelstudio"
    name_setting = "agent_name"
    #: the platform decides how many instances run; without environment variables there is no
    #: way to hand the app a Redis URL, so the warning about one would have no fix
    scales_out = False
    publishes = False
    #: HighCodeDeploy creates the agent before it is published: a first deploy whose publish fails
    #: or times out leaves a record (status "creating"), so ``status`` and ``destroy`` find the
    #: agent and the next deploy updates it instead of making a second agent of that name
    record_on_create = True
    sdk_modules = ("alibabacloud_bailian20231229", "alibabacloud_tea_openapi", "darabonba", "alibabacloud_credentials")
    client = "agentpack.deployers.clients.modelstudio:ModelStudioApi"
    settings: ModelStudioSettings
    api: ModelStudioApi

    def __init__(
        self,
        settings: TargetSettings,
        *,
        region: str | None = None,
        progress: Progress = no_progress,
        project: Path | None = None,
        environ: dict[str, str] | None = None,
        api: Any = None,
    ) -> None:
        """The client needs the workspace too, which the base does not pass."""
        if api is None:
            require_modules(self.sdk_modules, f"the {self.target} deployer", self.target)
            from agentpack.deployers.clients.modelstudio import ModelStudioApi

            api = ModelStudioApi(
                region=region or getattr(settings, "region", None),
                endpoint=getattr(settings, "endpoint", None),
                workspace=getattr(settings, "workspace", None),
                environ=environ,
            )
        super().__init__(settings, region=region, progress=progress, project=project, environ=environ, api=api)

    # -- helpers ----------------------------------------------------------------------------------
    def invoke_url(self, agent_id: str) -> str:
        env = os.environ if self.environ is None else self.environ
        template = self.settings.invoke_url or env.get(INVOKE_URL_ENV) or DEFAULT_INVOKE_URL
        return template.format(agent_id=agent_id, workspace=self.api.workspace or "")

    def _agent_id(self, deployment: Deployment) -> str | None:
        """The deployment's agent, by its recorded id, else by its name; None when it is gone."""
        self.api.use_workspace(deployment.resource.get("workspace"))
        agent_id = deployment.resource.get("agent_id")
        if agent_id and self.api.get_agent(str(agent_id)) is not None:
            return str(agent_id)
        found = self.api.find_agent_by_name(deployment.name)
        if found:
            return str(found["code"])
        return str(agent_id) if agent_id and deployment.status == UNFINISHED else None

    # -- the pipeline's hooks -----------------------------------------------------------------------
    def check(self, plan: Plan) -> None:
        names = sorted(plan.request.environment)
        if names:
            raise DeployConfigError(
                f"[targets.modelstudio]: {', '.join(names)} cannot be set: Model Studio's deploy API takes no "
                "environment variables and agentpack never writes them into the artifact; remove env, secrets and "
                "redis_url from [targets.modelstudio] and set the variables on the agent in the Model Studio console"
            )
        self.api.use_workspace(plan.known.get("workspace"))
        self.api.ws()

    def desired(self, plan: Plan) -> dict[str, Any]:
        desired: dict[str, Any] = {"name": plan.request.name}
        if self.settings.description is not None:
            desired["description"] = self.settings.description
        return desired

    def find(self, plan: Plan) -> dict[str, Any] | None:
        """By name in ListPublishedAgent, whose items carry the description (GetPublishedAgent's do
        not); an agent a first deploy created but never saw published is found by its recorded id."""
        current = self.api.find_agent_by_name(plan.request.name)
        previous, known_id = plan.previous, plan.known.get("agent_id")
        if current is None and previous is not None and previous.status == UNFINISHED and known_id:
            plan.facts["unfinished"] = True
            current = {"code": str(known_id), "name": plan.request.name}
        plan.facts["agent_id"] = str(current["code"]) if current is not None else None
        return current

    def code_differs(self, plan: Plan) -> bool:
        known = plan.known
        return (
            bool(plan.facts.get("unfinished"))
            or known.get("agent_id") != plan.facts["agent_id"]
            or known.get("uploaded_sha256") != plan.request.sha256
        )

    def serving_url(self, plan: Plan) -> str | None:
        agent_id = plan.facts.get("agent_id")
        return self.invoke_url(agent_id) if agent_id else None

    def upload(self, plan: Plan) -> str:
        request = plan.request
        data = request.zip_bytes()
        self.progress("upload", f"uploading {len(data) / 1e6:.1f} MB to a temporary storage lease")
        lease = self.api.apply_lease(MODELSTUDIO_WHEEL, len(data))
        self.api.upload(lease, data)
        existing = plan.facts.get("agent_id")
        self.progress("upload", f"{'updating' if existing else 'creating'} agent {request.name} (HighCodeDeploy)")
        plan.facts["agent_id"] = self.api.high_code_deploy(
            agent_name=request.name,
            source_code_name=MODELSTUDIO_WHEEL,
            lease_id=lease.lease_id,
            agent_id=existing,
            description=self.settings.description,
            telemetry=self.settings.telemetry,
        )
        plan.uploaded = True
        if existing is None:
            return "created"
        return "updated" if plan.code_needed else "configured"

    def wait(self, plan: Plan) -> None:
        seconds = plan.request.wait_seconds
        self.progress("wait", f"waiting for agent {plan.request.name} to be published (up to {seconds:g} s)")
        self.api.wait_published(plan.facts["agent_id"], timeout=seconds)

    def publish(self, plan: Plan) -> str:
        """Model Studio keeps no versions: the version is the artifact's sha256, shortened."""
        return plan.request.sha256[:12]

    def route(self, plan: Plan, version: str) -> str:
        return self.invoke_url(plan.facts["agent_id"])

    def auth(self, request: Any) -> str:
        return "bearer"

    def resource(self, plan: Plan) -> dict[str, Any]:
        resource: dict[str, Any] = {"agent_id": plan.facts["agent_id"], "workspace": self.api.ws()}
        if plan.uploaded:
            resource["uploaded_sha256"] = plan.request.sha256
        return resource

    # -- the other commands ---------------------------------------------------------------------------
    def status(self, deployment: Deployment) -> dict[str, Any]:
        agent_id = self._agent_id(deployment)
        if agent_id is None:
            return {"exists": False, "detail": f"agent {deployment.name} does not exist in Model Studio"}
        agent = self.api.get_agent(agent_id)
        return {
            "exists": True,
            "state": "published"
            if agent is not None
            else "not published (the deploy that created it did not see it published)",
            "agent_id": agent_id,
            "workspace": self.api.ws(),
            "name": (agent or {}).get("name"),
            "url": self.invoke_url(agent_id),
            "version": deployment.version,
        }

    def rollback(self, deployment: Deployment, version: str) -> Deployment:
        raise NotOffered(
            "Model Studio keeps no versions of a high-code agent: deploy the earlier code again to go back"
        )

    def destroy(self, deployment: Deployment) -> bool:
        agent_id = self._agent_id(deployment)
        if agent_id is None:
            return False
        return self.api.delete_agent(agent_id)

    def logs(self, deployment: Deployment, *, since_seconds: float = 3600, follow: bool = False) -> Iterator[str]:
        raise NotOffered("Model Studio shows a high-code agent's logs in its console only; agentpack cannot read them")

    def request_auth(self, deployment: Deployment) -> httpx.Auth | None:
        env = os.environ if self.environ is None else self.environ
        key = env.get(API_KEY_ENV)
        if not key:
            raise DeployConfigError(
                f"calling a Model Studio agent needs a DashScope API key: set {API_KEY_ENV} (Model Studio console, API keys)"
            )
        return BearerAuth(key)

    def console_url(self, deployment: Deployment) -> str | None:
        return CONSOLE_URL
