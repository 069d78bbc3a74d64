"""``agentpack deploy --target agentrun``: an AgentRun agent runtime with a code artifact.

The runtime is found by its name and created or updated in place: artifact type Code, the zip
inline up to :data:`MAX_INLINE_BYTES` or through an OSS bucket above it (``code_upload``),
language ``python<version of the artifact>``, command ``/code/bootstrap`` (which runs the
runtime's ``python3`` behind the AgentRun adapter), ``port`` (also in ``PORT``), a health check
on ``/readiness``, session affinity on the session header ``agentpack invoke`` and ``stop`` send,
and cpu / memory / sessions per instance / idle timeout / role / environment / VPC / SLS logs
from ``[targets.agentrun]``.  A configuration-only update sends neither ``artifactType`` nor
``codeConfiguration``: the runtime keeps its code.

Who may call: unless ``allow_anonymous``, the runtime names an inbound credential agentpack
creates (``credentialName``), so its public host answers only to holders of that key, and
agentpack's own calls go to the endpoint's signed ``-ram`` host with the account's AccessKey
(``clients/agentrun_signing.py``).

What agentpack wrote is told by the runtime's ``description``: the artifact's sha256 and a
digest of the environment.  Change is detected from it, not from ``lastUpdatedAt`` (publishing
and endpoints move that) nor from the variables' values (list answers may mask them).

The deploy waits for READY with a deadline and a growing poll interval — a FAILED runtime ends
the deploy with the platform's ``statusReason`` — publishes a version and creates or retargets
the endpoint ``live`` to it.  A runtime is recorded as soon as it is created, so a first deploy
that times out still CREATING leaves a deployment ``status``, ``destroy`` and ``list`` can see.
``rollback`` retargets the endpoint to an earlier version.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentpack.deployers.errors import DeployConfigError, PlatformError, require_modules
from agentpack.deployers.pipeline import ROUTE, Deployer, Plan
from agentpack.deployers.request import DeployRequest
from agentpack.deployers.state import Deployment

if TYPE_CHECKING:
    import httpx

    from agentpack.deployers.clients.agentrun import AgentRunApi, RuntimeSpec
    from agentpack.deployers.clients.oss import OSSApi, StoredObject
    from agentpack.target_settings import AgentRunSettings

LANGUAGES = {"3.10": "python3.10", "3.12": "python3.12"}
#: The states in which a runtime or an endpoint serves (the references say READY or ACTIVE).
SERVING = ("READY", "ACTIVE")
#: Above this the code goes through OSS.  AgentRun documents no inline limit and AgentScope
#: Runtime's deployer always uploads through OSS; 10 MB zipped (about 13.4 MB of base64 in the
#: JSON body) is a conservative guess [assumed], and ``code_upload = "oss"`` forces OSS always.
MAX_INLINE_BYTES = 10 * 1024 * 1024
#: how requests authenticate when the URL is not public: signed with the account's AccessKey
RAM_AUTH = "agentrun-ram"
_DESCRIPTION = re.compile(r"sha256=(?P<sha>[0-9a-f]{64}) env=(?P<env>[0-9a-f]{16})")


def credential_name(runtime: str) -> str:
    """The inbound credential agentpack makes for ``runtime`` (AgentRun's credential names: 1-64
    letters, digits, '_' and '-', starting with a letter or '_')."""
    name = f"agentpack-{runtime}"
    if len(name) <= 64:
        return name
    return f"{name[:55]}-{hashlib.sha256(runtime.encode()).hexdigest()[:8]}"


def environment_digest(variables: dict[str, str]) -> str:
    """A digest of the environment for the runtime's description (who reads the description may
    read the variables themselves in the console; the digest only says whether they changed).
    The API key enters it by name only: its value is compared with GetAgentRuntime's instead."""
    from agentpack.deployers.api_key import for_digest

    return hashlib.sha256(json.dumps(for_digest(variables), sort_keys=True).encode()).hexdigest()[:16]


def written(runtime: dict[str, Any] | None) -> tuple[str, str] | None:
    """``(artifact sha256, environment digest)`` agentpack wrote in the runtime's description."""
    match = _DESCRIPTION.search(str((runtime or {}).get("description") or ""))
    return (match["sha"], match["env"]) if match else None


def variables_of(runtime: dict[str, Any] | None) -> dict[str, str | None] | None:
    """A runtime's variables as AgentRun shows them (None: no runtime)."""
    if runtime is None:
        return None
    return dict(runtime.get("environmentVariables") or {})


class AgentRunDeployer(Deployer):
    target = "agentrun"
    name_setting = "runtime_name"
    sdk_modules = ("alibabacloud_agentrun20250910", "alibabacloud_tea_openapi", "darabonba", "alibabacloud_credentials")
    client = "agentpack.deployers.clients.agentrun:AgentRunApi"
    record_on_create = True
    settings: AgentRunSettings
    api: AgentRunApi

    def __init__(self, settings: AgentRunSettings, **options: Any) -> None:
        super().__init__(settings, **options)
        self._oss: OSSApi | None = None

    def spec(
        self,
        request: DeployRequest,
        variables: dict[str, str],
        code: bytes | None = None,
        oss_object: StoredObject | None = None,
    ) -> RuntimeSpec:
        """The runtime's body: ``code`` inline, or the OSS object, or neither (keep the code)."""
        from agentpack.deployers.clients.agentrun import RuntimeSpec

        settings: AgentRunSettings = request.settings
        return RuntimeSpec(
            name=request.name,
            command=["/code/bootstrap"],
            port=settings.port,
            language=LANGUAGES[request.python],
            zip_bytes=code,
            oss_bucket=oss_object.bucket if oss_object is not None else None,
            oss_object=oss_object.key if oss_object is not None else None,
            cpu=settings.effective("cpu"),
            memory=settings.effective("memory"),
            session_concurrency=settings.session_concurrency,
            session_idle_timeout_seconds=settings.idle_timeout,
            environment=variables,
            health_check_path=self.row.health_path,
            execution_role_arn=settings.role,
            description=f"deployed by agentpack sha256={request.sha256} env={environment_digest(variables)}",
            session_affinity_header=self.row.affinity_header,
            credential_name="" if request.allow_anonymous else credential_name(request.name),
            vpc_id=settings.vpc_id,
            vswitch_ids=list(settings.vswitch_ids or []),
            security_group_id=settings.security_group_id,
            log_project=settings.log_project,
            log_store=settings.log_store,
        )

    # -- code through OSS ---------------------------------------------------------------------------
    def oss(self) -> OSSApi:
        """The OSS client of the bucket's region, with the deployer's credentials."""
        from agentpack.deployers.clients.oss import OSSApi

        if self._oss is None:
            self._oss = OSSApi(
                region=self.settings.oss_region or self.region,
                credentials=self.api.credentials,
                endpoint=self.settings.oss_endpoint,
                environ=self.environ,
            )
        return self._oss

    def through_oss(self, request: DeployRequest) -> bool:
        """Whether the code goes through OSS; a DeployConfigError saying what to set when it must and cannot."""
        settings: AgentRunSettings = request.settings
        if settings.code_upload == "oss":
            return True
        if request.size_bytes <= MAX_INLINE_BYTES:
            return False
        size, limit = f"{request.size_bytes / 2**20:.1f} MB", f"{MAX_INLINE_BYTES // 2**20} MB"
        if settings.code_upload == "inline":
            if request.size_bytes <= 100 * 2**20:
                return False  # asked for: sent inline, up to the 100 MB the client layer allows
            raise DeployConfigError(
                f'[targets.agentrun] code_upload = "inline": the artifact is {size} zipped, too big to send inline; '
                'use code_upload = "auto" with oss_bucket = "<an existing bucket>" to upload it through OSS'
            )
        if not settings.oss_bucket:
            region = settings.oss_region or self.region or "the runtime's region"
            raise DeployConfigError(
                f"the artifact is {size} zipped, over the {limit} agentpack sends to AgentRun inline: set [targets.agentrun] "
                f'oss_bucket = "<an existing bucket in {region}>" to upload it through OSS, or code_upload = "inline" to try anyway'
            )
        return True

    def ship_through_oss(self, request: DeployRequest) -> StoredObject:
        """Put the artifact in the bucket unless it holds these bytes already; the object AgentRun reads."""
        from agentpack.deployers.clients.oss import object_key

        settings: AgentRunSettings = request.settings
        assert request.artifact is not None and settings.oss_bucket, "build() and through_oss() first"
        key = object_key(settings.oss_folder, request.name, request.sha256)
        stored, _ = self.oss().upload_unless_present(settings.oss_bucket, key, Path(request.artifact), self.progress)
        return stored

    # -- the pipeline's hooks -------------------------------------------------------------------------
    def auth(self, request: DeployRequest) -> str:
        return "anonymous" if request.allow_anonymous else RAM_AUTH

    def check(self, plan: Plan) -> None:
        python = plan.request.python
        if python not in LANGUAGES:
            raise DeployConfigError(
                f"AgentRun code runtimes offer Python {', '.join(LANGUAGES)}, not {python}; build for one of those"
            )
        if plan.request.allow_anonymous:
            from agentpack.deployers.api_key import VARIABLE, wanted

            guarded = VARIABLE in plan.request.environment or wanted(plan.request.settings, True)
            plan.request.warnings.append(
                f"agentrun/{plan.request.name} is public (allow_anonymous): AgentRun checks no signature on its URL, "
                + (
                    f"so the app's API key ({VARIABLE}) is what keeps strangers out"
                    if guarded
                    else "and it has no API key: anyone with its URL may call it"
                )
                + "; without the flag, callers must sign with the account's AccessKey"
            )
        plan.facts["via_oss"] = self.through_oss(plan.request)
        if plan.facts["via_oss"]:
            require_modules(("alibabacloud_oss_v2", "crcmod"), "AgentRun code through OSS", "agentrun")

    def own_variables(self, request: DeployRequest) -> dict[str, str]:
        adapter = self.row.adapter
        assert adapter is not None, "the agentrun row names its adapter"
        return {"PORT": str(request.settings.port), "AGENTPACK_PLATFORM": adapter}

    def desired(self, plan: Plan) -> dict[str, Any]:
        """What agentpack sets, less the variables: their digest in the description stands for them."""
        wanted = self.spec(plan.request, plan.variables).to_api()
        wanted.pop("environmentVariables", None)
        return wanted

    def held_variables(self, plan: Plan) -> dict[str, str | None] | None:
        """GetAgentRuntime's ``environmentVariables`` (values as AgentRun shows them: the list answer
        may mask them, and whether GetAgentRuntime does is not documented [assumed: it does not];
        a masked key is handled in ``deployers/api_key.py``).  The answer is kept for ``find``."""
        plan.facts["found"] = self.look_up(plan)
        return variables_of(plan.facts["found"])

    def find(self, plan: Plan) -> dict[str, Any] | None:
        if "found" in plan.facts:  # read a moment ago by held_variables
            found: dict[str, Any] | None = plan.facts.pop("found")
            return found
        return self.look_up(plan)

    def deployed_variables(self, deployment: Deployment) -> dict[str, str | None] | None:
        runtime_id = self._runtime_id(deployment)
        return variables_of(self.api.get_runtime(runtime_id) if runtime_id else None)

    def look_up(self, plan: Plan) -> dict[str, Any] | None:
        """The runtime of this name as GetAgentRuntime answers (its id in ``plan.facts``); None: none."""
        listed = self.api.find_runtime_by_name(plan.request.name)
        plan.facts["runtime_id"] = str(listed["agentRuntimeId"]) if listed is not None else None
        if listed is None:
            return None
        # the list answer may leave fields out or mask them; GetAgentRuntime has the whole runtime
        current = self.api.get_runtime(plan.facts["runtime_id"]) or listed
        current["credentialName"] = current.get("credentialName") or ""
        return current

    def code_differs(self, plan: Plan) -> bool:
        current = plan.current or {}
        found = written(current)
        return (
            plan.known.get("runtime_id") not in (None, plan.facts["runtime_id"])
            or found is None
            or found[0] != plan.request.sha256
            or current.get("status") not in SERVING
        )

    def public_url(self, endpoint: dict[str, Any], request_auth: str) -> str:
        """Where agentpack calls the endpoint: the ``-ram`` host unless the URL is public."""
        from agentpack.deployers.clients.agentrun_signing import ram_url

        url = str(endpoint.get("endpointPublicUrl") or "")
        return url if request_auth == "anonymous" else ram_url(url)

    def serving_url(self, plan: Plan) -> str | None:
        assert plan.previous is not None
        endpoint = self.api.find_endpoint(plan.facts["runtime_id"], ROUTE)
        if (
            endpoint
            and endpoint.get("targetVersion") == plan.previous.version
            and endpoint.get("status") in SERVING
            and endpoint.get("endpointPublicUrl")
            and plan.previous.auth == self.auth(plan.request)
        ):
            return self.public_url(endpoint, self.auth(plan.request))
        return None

    def upload(self, plan: Plan) -> str:
        request = plan.request
        if not request.allow_anonymous:
            name = credential_name(request.name)
            if self.api.ensure_inbound_credential(name, f"callers of agent runtime {request.name} (made by agentpack)"):
                self.progress("configure", f"inbound credential {name}: the public URL answers only to its key")
        oss_object = self.ship_through_oss(request) if plan.code_needed and plan.facts["via_oss"] else None
        code = request.zip_bytes() if plan.code_needed and oss_object is None else None
        body = self.spec(request, plan.variables, code, oss_object).to_api()
        source = f" from oss://{oss_object.bucket}/{oss_object.key}" if oss_object is not None else ""
        if plan.current is None:
            self.progress(
                "upload",
                f"creating agent runtime {request.name} with {request.size_bytes / 1e6:.1f} MB of code{source}",
            )
            action = "created"
        else:
            what = "uploading code" if plan.code_needed else "updating configuration"
            self.progress(
                "upload" if plan.code_needed else "configure", f"{what} of agent runtime {request.name}{source}"
            )
            action = "updated" if plan.code_needed else "configured"
        result = self.api.create_or_update_runtime(body, timeout=request.wait_seconds)
        plan.facts["runtime_id"] = str(result["agentRuntimeId"])
        if oss_object is not None:
            plan.facts["oss_object"] = {"bucket": oss_object.bucket, "key": oss_object.key}
        return action

    def wait(self, plan: Plan) -> None:
        request = plan.request
        self.progress(
            "wait", f"waiting for agent runtime {request.name} to be READY (up to {request.wait_seconds:g} s)"
        )
        self.api.wait_until_ready(plan.facts["runtime_id"], timeout=request.wait_seconds)

    def publish(self, plan: Plan) -> str:
        return self.api.publish_version(plan.facts["runtime_id"], description=f"agentpack {plan.request.sha256[:12]}")

    def route(self, plan: Plan, version: str) -> str:
        from agentpack.deployers.api_key import VARIABLE

        auth = self.auth(plan.request)
        guarded = VARIABLE in plan.variables
        self.progress(
            "route",
            f"endpoint {ROUTE} → version {version}; "
            + (
                "public (--allow-anonymous): "
                + ("the app checks its API key" if guarded else "anyone with the URL may call it")
                if auth == "anonymous"
                else "callers sign with the account's AccessKey (agentpack invoke does) or present the inbound credential's key"
            ),
        )
        url = self.api.ensure_endpoint(
            plan.facts["runtime_id"],
            ROUTE,
            version,
            description="the version agentpack serves",
            timeout=plan.request.wait_seconds,
        )
        return self.public_url({"endpointPublicUrl": url}, auth)

    def resource(self, plan: Plan) -> dict[str, Any]:
        found: dict[str, Any] = {"runtime_id": plan.facts["runtime_id"], "endpoint": ROUTE}
        if not plan.request.allow_anonymous:
            found["credential"] = credential_name(plan.request.name)
        oss_object = plan.facts.get("oss_object")
        if oss_object is not None:
            known = [o for o in plan.known.get("oss_objects") or [] if o != oss_object]
            found["oss_objects"] = [*known, oss_object]
        return found

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
            "url": self.public_url(endpoint, deployment.auth) if endpoint.get("endpointPublicUrl") else None,
            "auth": deployment.auth,
            "credential": runtime.get("credentialName") or None,
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
        url = self.api.ensure_endpoint(runtime_id, ROUTE, version, description="the version agentpack serves")
        deployment.url = self.public_url({"endpointPublicUrl": url}, deployment.auth)
        return deployment

    def destroy(self, deployment: Deployment) -> bool:
        """The runtime with its endpoints, then the credential and the OSS objects agentpack made for it."""
        runtime_id = self._runtime_id(deployment)
        existed = runtime_id is not None and self.api.delete_runtime(runtime_id, wait=True)
        credential = deployment.resource.get("credential")
        if credential and self.api.delete_credential(str(credential)):
            self.progress("destroy", f"deleted inbound credential {credential}")
        for stored in deployment.resource.get("oss_objects") or []:
            if self.oss().delete(stored["bucket"], stored["key"]):
                self.progress("destroy", f"deleted oss://{stored['bucket']}/{stored['key']}")
        return existed

    def request_auth(self, deployment: Deployment) -> httpx.Auth | None:
        if deployment.auth != RAM_AUTH:
            return None
        from agentpack.deployers.clients.agentrun_signing import AgentRunRamAuth

        credentials = self.api.credentials
        return AgentRunRamAuth(
            credentials.access_key_id, credentials.access_key_secret, credentials.security_token, self.region
        )

    def logs(self, deployment: Deployment, *, since_seconds: float = 3600, follow: bool = False) -> Iterator[str]:
        """Every entry of the runtime's SLS logstore (which fields AgentRun's entries carry is not
        documented, so nothing is filtered: give each runtime its own logstore)."""
        from agentpack.deployers.clients.sls import read_logs

        return read_logs(
            self.settings,
            product=f"AgentRun runtime {deployment.name}",
            credentials=self.api.credentials,
            region=self.region,
            query="*",
            console="the AgentRun console (the runtime's Logs tab)",
            since_seconds=since_seconds,
            follow=follow,
            environ=self.environ,
        )
