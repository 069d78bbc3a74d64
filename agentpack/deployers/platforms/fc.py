"""``agentpack deploy --target fc``: a Function Compute 3.0 custom-runtime function.

The function is created or updated by name.  Its code is the artifact: inline (base64) up to
FC's 100 MB inline limit, and above it (or with ``code_upload = "oss"``) through an existing OSS
bucket, ``oss_bucket`` — a content-addressed object ``<oss_prefix>/<function>/<sha256>.zip``
that is uploaded once (streamed, multipart) and named to FC with its CRC-64; the objects a
deployment used are recorded in its state and deleted by ``destroy``.  The builder refuses
what FC cannot take at all (over 500 MB).  The code is started by ``/code/bootstrap`` on
``port`` with a runtime that ships the artifact's Python (``agentpack.targets.FC_RUNTIMES``:
custom.debian10 = 3.10, custom.debian12 = 3.11 and 3.12, custom.debian11 = 3.12; ``runtime``
chooses where there is a choice); the deploy says which, and warns where FC names the regions
a runtime is offered in and this is not one.  The instance lifecycle hooks are switched on so
FC calls the adapter's ``POST /initialize`` and ``GET /pre-stop``; ``AGENTPACK_REQUEST_TIMEOUT``
tells the adapter the function's timeout so a run ends with a ``canceled`` event before FC
cuts it.  Requests with the same ``X-Agentpack-Affinity`` header (a hash of user and session
that fits FC's rule for affinity ids) stick to one instance (HeaderField session affinity),
which helps but is never relied on: stops cross instances through Redis.  With session
affinity FC fixes an instance's request concurrency at 200, so that is what is sent, and the
``instance_concurrency`` setting is the number of sessions an instance takes.

What FC reports back is not compared field by field with what was sent (FC fills in defaults
and keeps some values its own way): the function's description carries what agentpack wrote —
the artifact's sha256 and a digest of the configuration sent — and a redeploy compares that,
plus the few settings FC reports as sent (runtime, sizing, timeout, start command and port), so
an unchanged project is ``unchanged`` on the real service and a change made in the console to
one of those is repaired.

Each deploy that changes code or configuration publishes a version and moves the alias
``live`` to it; the HTTP trigger (auth ``function`` unless ``allow_anonymous``) serves the
alias, so ``rollback`` is one alias update.  A trigger that cannot be made fails the deploy.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentpack.deployers.clients.alibaba import MAX_INLINE_ZIP_BYTES
from agentpack.deployers.errors import DeployConfigError, PlatformError
from agentpack.deployers.pipeline import ROUTE, Deployer, Plan, same
from agentpack.deployers.request import DeployRequest
from agentpack.deployers.state import Deployment
from agentpack.targets import FC_DEFAULT_RUNTIMES, FC_RUNTIME_REGIONS, FC_RUNTIMES

if TYPE_CHECKING:
    import httpx

    from agentpack.deployers.clients.fc import FCApi, FunctionSpec
    from agentpack.deployers.clients.oss import OSSApi, StoredObject
    from agentpack.target_settings import FCSettings

TRIGGER = "http"
HOOK_TIMEOUT = 60
#: With any session affinity FC sets an instance's request concurrency to 200 and it cannot be
#: changed (FC, "Session affinity configuration practices"); sending it keeps FC's answer equal.
AFFINITY_CONCURRENCY = 200
#: Instances shared by sessions (FC's instanceIsolationMode; SESSION_EXCLUSIVE is one per session).
ISOLATION = "SHARE"
#: What agentpack writes into the function's description, read back to tell what changed.
_WRITTEN = re.compile(r"agentpack artifact sha256:(?P<sha256>[0-9a-f]{64}) settings:(?P<settings>[0-9a-f]{16})")
#: Settings FC reports as they were sent, compared besides the description (console changes).
HONOURED = ("runtime", "cpu", "memorySize", "timeout", "customRuntimeConfig")


class FCDeployer(Deployer):
    target = "fc"
    name_setting = "function_name"
    sdk_modules = ("alibabacloud_fc20230330", "alibabacloud_tea_openapi", "darabonba", "alibabacloud_credentials")
    client = "agentpack.deployers.clients.fc:FCApi"
    settings: FCSettings
    api: FCApi

    def __init__(self, settings: FCSettings, **options: Any) -> None:
        super().__init__(settings, **options)
        self._oss: dict[str, OSSApi] = {}
        #: objects this deployer uploaded (not found in the bucket already), newest last
        self.fresh_objects: list[StoredObject] = []

    def oss(self, region: str | None) -> OSSApi:
        """The OSS client for ``region``, with the deployer's credentials (one per region)."""
        from agentpack.deployers.clients.oss import OSSApi

        key = region or ""
        if key not in self._oss:
            self._oss[key] = OSSApi(
                region=region,
                credentials=self.api.credentials,
                endpoint=getattr(self.settings, "oss_endpoint", None),
                environ=self.environ,
            )
        return self._oss[key]

    # -- the function as agentpack configures it ---------------------------------------------------
    def spec(
        self,
        request: DeployRequest,
        variables: dict[str, str],
        code: bytes | None = None,
        oss_object: StoredObject | None = None,
    ) -> FunctionSpec:
        """The function's body: ``code`` inline, or the StoredObject ``oss_object``, or neither (keep the code)."""
        from agentpack.deployers.clients.fc import FunctionSpec

        settings, row = request.settings, self.row
        sessions = settings.effective("instance_concurrency")
        hooks = HOOK_TIMEOUT if row.lifecycle_hooks else None
        cpu, memory = settings.sizing()
        function = FunctionSpec(
            name=request.name,
            runtime=self.runtime(request),
            zip_bytes=code,
            oss_bucket=oss_object.bucket if oss_object is not None else None,
            oss_object=oss_object.key if oss_object is not None else None,
            code_checksum=oss_object.crc64 if oss_object is not None else None,
            command=["/code/bootstrap"],
            port=settings.port,
            cpu=cpu,
            memory_size=memory,
            timeout=settings.effective("timeout"),
            instance_concurrency=AFFINITY_CONCURRENCY if row.affinity_header else sessions,
            instance_isolation_mode=ISOLATION,
            environment=variables,
            role=settings.role,
            session_affinity_header=row.affinity_header.lower() if row.affinity_header else None,
            sessions_per_instance=sessions,
            initializer_timeout=hooks,
            pre_stop_timeout=hooks,
            vpc_id=settings.vpc_id,
            vswitch_ids=list(settings.vswitch_ids or []),
            security_group_id=settings.security_group_id,
            log_project=settings.log_project,
            log_store=settings.log_store,
        )
        function.description = written(request.sha256, function)
        return function

    def runtime(self, request: DeployRequest) -> str:
        """The custom runtime the function runs on: ``[targets.fc] runtime``, else the artifact's Python's."""
        chosen: str | None = request.settings.runtime
        return chosen or FC_DEFAULT_RUNTIMES[request.python]

    def through_oss(self, request: DeployRequest) -> bool:
        """Whether the code goes through OSS; a DeployConfigError saying what to set when it must and cannot."""
        settings = request.settings
        size = f"{request.size_bytes / 2**20:.1f} MB"
        if settings.code_upload == "oss":
            return True
        if request.size_bytes <= MAX_INLINE_ZIP_BYTES:
            return False
        if settings.code_upload == "inline":
            raise DeployConfigError(
                f'[targets.fc] code_upload = "inline": the artifact is {size} zipped, over Function Compute\'s 100 MB inline limit; '
                'use code_upload = "auto" with oss_bucket = "<an existing bucket>" to upload it through OSS'
            )
        if not settings.oss_bucket:
            region = settings.oss_region or self.region or "the function's region"
            raise DeployConfigError(
                f"the artifact is {size} zipped, over Function Compute's 100 MB inline limit: set [targets.fc] oss_bucket = "
                f'"<an existing bucket in {region}>" to upload it through OSS (up to 500 MB)'
            )
        return True

    def ship_through_oss(self, request: DeployRequest) -> StoredObject:
        """Put the artifact in the bucket unless it holds these bytes already; the StoredObject FC reads."""
        from agentpack.deployers.clients.oss import object_key

        settings = request.settings
        assert request.artifact is not None and settings.oss_bucket, "build() and through_oss() first"
        key = object_key(settings.oss_folder, request.name, request.sha256)
        api = self.oss(settings.oss_region or self.region)
        stored, fresh = api.upload_unless_present(settings.oss_bucket, key, Path(request.artifact), self.progress)
        if fresh:
            self.fresh_objects.append(stored)
        return stored

    def auth(self, request: DeployRequest) -> str:
        return "anonymous" if request.allow_anonymous else "function"

    # -- the pipeline's hooks -------------------------------------------------------------------------
    def check(self, plan: Plan) -> None:
        request = plan.request
        plan.facts["via_oss"] = self.through_oss(request)  # a missing oss_bucket is the user's to fix
        if plan.facts["via_oss"]:
            from agentpack.deployers.clients.oss import require_sdk

            require_sdk()
        offered = ", ".join(f"{name} ({', '.join(pythons)})" for name, pythons in FC_RUNTIMES.items())
        if request.python not in FC_DEFAULT_RUNTIMES:
            raise DeployConfigError(
                f"Function Compute has no custom runtime with Python {request.python}; build for one of {offered}"
            )
        runtime = self.runtime(request)
        interpreter = FC_RUNTIMES[runtime].get(request.python)
        if interpreter is None:
            raise DeployConfigError(
                f'[targets.fc] runtime = "{runtime}" has no Python {request.python} (the artifact\'s); '
                f"Function Compute's custom runtimes offer {offered}: change runtime or python"
            )
        self.progress("runtime", f"{runtime}: Python {request.python} at {interpreter}")
        regions = FC_RUNTIME_REGIONS.get(runtime)
        if regions and self.region and self.region not in regions:
            request.warnings.append(
                f"{runtime} is offered in {', '.join(regions)} as far as Function Compute's documentation says, not "
                f"{self.region}; if Function Compute refuses it, {self.other_runtimes(runtime)}"
            )

    def other_runtimes(self, runtime: str) -> str:
        """What to do instead of ``runtime``, for messages."""
        others = [f'runtime = "{name}" (Python {", ".join(p)})' for name, p in FC_RUNTIMES.items() if name != runtime]
        where = FC_RUNTIME_REGIONS.get(runtime)
        regions = f" or deploy to {', '.join(where)}" if where else ""
        return f"set [targets.fc] {' or '.join(others)} with a matching python{regions}"

    def own_variables(self, request: DeployRequest) -> dict[str, str]:
        adapter = self.row.adapter
        assert adapter is not None, "the fc row names its adapter"
        return {"AGENTPACK_REQUEST_TIMEOUT": str(request.settings.effective("timeout")), "AGENTPACK_PLATFORM": adapter}

    def desired(self, plan: Plan) -> dict[str, Any]:
        """What agentpack wrote (the description) and the settings FC reports as sent."""
        body = self.spec(plan.request, plan.variables).to_api()
        return {key: body[key] for key in ("description", *HONOURED) if key in body}

    def held_variables(self, plan: Plan) -> dict[str, str | None] | None:
        """GetFunction's ``environmentVariables`` (values as FC shows them); the answer is kept for ``find``."""
        plan.facts["function"] = self.api.get_function(plan.request.name)
        return variables_of(plan.facts["function"])

    def find(self, plan: Plan) -> dict[str, Any] | None:
        if "function" in plan.facts:  # read a moment ago by held_variables
            found: dict[str, Any] | None = plan.facts.pop("function")
            return found
        return self.api.get_function(plan.request.name)

    def deployed_variables(self, deployment: Deployment) -> dict[str, str | None] | None:
        return variables_of(self.api.get_function(deployment.name))

    def code_differs(self, plan: Plan) -> bool:
        """The artifact named in the description (else the one recorded here) is not this one, or
        FC's checksum of the code is not the one recorded (code uploaded in the console)."""
        assert plan.current is not None
        found = _WRITTEN.search(str(plan.current.get("description") or ""))
        sha256 = found.group("sha256") if found else plan.known.get("latest_sha256")
        if sha256 != plan.request.sha256:
            return True
        recorded = str(plan.known.get("code_checksum") or "")
        return bool(recorded) and str(plan.current.get("codeChecksum") or "") != recorded

    def serving_url(self, plan: Plan) -> str | None:
        name, previous = plan.request.name, plan.previous
        assert previous is not None
        alias, trigger = self.api.get_alias(name, ROUTE), self.api.get_trigger(name, TRIGGER)
        url = ((trigger or {}).get("httpTrigger") or {}).get("urlInternet")
        if (
            alias
            and alias.get("versionId") == previous.version
            and trigger
            and trigger.get("qualifier") == ROUTE
            and same(json.dumps({"authType": self.auth(plan.request)}), str(trigger.get("triggerConfig") or ""))
            and url
        ):
            return str(url)
        return None

    def upload(self, plan: Plan) -> str:
        request, name = plan.request, plan.request.name
        oss_object = self.ship_through_oss(request) if plan.code_needed and plan.facts["via_oss"] else None
        code = request.zip_bytes() if plan.code_needed and oss_object is None else None
        body = self.spec(request, plan.variables, code, oss_object).to_api()
        source = f" from oss://{oss_object.bucket}/{oss_object.key}" if oss_object is not None else ""
        try:
            if plan.current is None:
                self.progress(
                    "upload", f"creating function {name} with {request.size_bytes / 1e6:.1f} MB of code{source}"
                )
                result = self.api.create_or_update_function(body, exists=False)  # a 409: see there
                action = "created"
            else:
                what = (
                    "uploading code and configuration"
                    if plan.code_needed and plan.config_changed
                    else "uploading code"
                    if plan.code_needed
                    else "updating configuration"
                )
                self.progress("upload" if plan.code_needed else "configure", f"{what} of function {name}{source}")
                result = self.api.update_function(name, body)
                action = "updated" if plan.code_needed else "configured"
        except PlatformError as error:
            self.forget_fresh_objects(plan.previous)
            raise self.explained(error, body["runtime"]) from None
        plan.facts["code_checksum"] = str(result.get("codeChecksum") or "")
        plan.facts["oss_object"] = oss_object
        return action

    def explained(self, error: PlatformError, runtime: str) -> PlatformError:
        """FC's refusal of the runtime (in this region, say), with what to do instead; other errors as they are."""
        said = f"{error.code} {error.message}".lower()
        if error.status is None or not 400 <= error.status < 500 or "runtime" not in said:
            return error
        where = f" in {self.region}" if self.region else ""
        return PlatformError(
            error.code or "InvalidArgument",
            f"{error.message} — Function Compute refused runtime {runtime}{where}; {self.other_runtimes(runtime)}",
            request_id=error.request_id,
            status=error.status,
            action=error.action,
        )

    def publish(self, plan: Plan) -> str:
        return self.api.publish_version(plan.request.name, description=f"agentpack {plan.request.sha256[:12]}")

    def route(self, plan: Plan, version: str) -> str:
        name, auth = plan.request.name, self.auth(plan.request)
        self.api.ensure_alias(name, ROUTE, version, description="the version agentpack serves")
        self.progress("route", f"alias {ROUTE} → version {version}; HTTP trigger (auth {auth})")
        return self.api.ensure_http_trigger(name, TRIGGER, qualifier=ROUTE, auth_type=auth)

    def resource(self, plan: Plan) -> dict[str, Any]:
        request, known = plan.request, plan.known
        checksum = plan.facts.get("code_checksum", str(known.get("code_checksum") or ""))
        found = {
            "function_name": request.name,
            "alias": ROUTE,
            "trigger": TRIGGER,
            "latest_sha256": request.sha256,
            "code_checksum": checksum,
        }
        oss_object = plan.facts.get("oss_object")
        if oss_object is not None:
            found["oss_objects"] = remember_object(
                known.get("oss_objects"), oss_object, request.settings.oss_region or self.region, request.sha256
            )
        return found

    # -- the other commands -------------------------------------------------------------------------
    def status(self, deployment: Deployment) -> dict[str, Any]:
        name = deployment.name
        function = self.api.get_function(name)
        if function is None:
            return {"exists": False, "detail": f"function {name} does not exist on Function Compute"}
        alias = self.api.get_alias(name, ROUTE) or {}
        trigger = self.api.get_trigger(name, TRIGGER) or {}
        return {
            "exists": True,
            "state": function.get("state") or "Active",
            "last_update": function.get("lastUpdateStatus"),
            "reason": function.get("stateReason") or function.get("lastUpdateStatusReason") or "",
            "version": alias.get("versionId"),
            "url": ((trigger.get("httpTrigger") or {}).get("urlInternet")),
            "runtime": function.get("runtime"),
            "memory": function.get("memorySize"),
            "cpu": function.get("cpu"),
            "timeout": function.get("timeout"),
            "instance_concurrency": function.get("instanceConcurrency"),
            "env": dict.fromkeys(function.get("environmentVariables") or {}, "***"),
            "last_modified": function.get("lastModifiedTime"),
        }

    def rollback(self, deployment: Deployment, version: str) -> Deployment:
        name = deployment.name
        if self.api.get_function(name) is None:
            raise PlatformError(
                "FunctionNotFound", f"function {name} does not exist any more; deploy it again", action="GetFunction"
            )
        self.api.ensure_alias(name, ROUTE, version, description="the version agentpack serves")
        trigger = self.api.get_trigger(name, TRIGGER) or {}
        deployment.url = ((trigger.get("httpTrigger") or {}).get("urlInternet")) or deployment.url
        return deployment

    def destroy(self, deployment: Deployment) -> bool:
        """The function with its triggers, aliases and versions, then the OSS objects its deploys used."""
        existed = self.api.delete_function(deployment.name)
        removed = 0
        for record in deployment.resource.get("oss_objects") or []:
            if self.oss(record.get("region") or self.region).delete(record["bucket"], record["key"]):
                removed += 1
        if removed:
            self.progress("destroy", f"deleted {removed} code object{'s' if removed != 1 else ''} from OSS")
        return existed or removed > 0

    def forget_fresh_objects(self, previous: Deployment | None) -> None:
        """After a failed create/update: delete what this deploy uploaded and no deployment records (best effort)."""
        recorded = {
            (r.get("bucket"), r.get("key")) for r in ((previous.resource if previous else {}).get("oss_objects") or [])
        }
        for stored in self.fresh_objects:
            if (stored.bucket, stored.key) in recorded:
                continue
            try:
                self.oss(self.settings.oss_region or self.region).delete(stored.bucket, stored.key)
            except PlatformError:
                pass  # the next deploy finds it by its key and reuses it
        self.fresh_objects.clear()

    def request_auth(self, deployment: Deployment) -> httpx.Auth | None:
        if deployment.auth != "function":
            return None
        from agentpack.deployers.clients.signing import AcsSignatureAuth

        credentials = self.api.credentials
        return AcsSignatureAuth(credentials.access_key_id, credentials.access_key_secret, credentials.security_token)

    def console_url(self, deployment: Deployment) -> str | None:
        if not self.region:
            return None
        return f"https://fcnext.console.aliyun.com/{self.region}/functions/{deployment.name}"

    def logs(self, deployment: Deployment, *, since_seconds: float = 3600, follow: bool = False) -> Iterator[str]:
        """The function's entries in its SLS logstore: FC tags them with the topic ``FCLogs:<function>``."""
        from agentpack.deployers.clients.sls import read_logs

        return read_logs(
            self.settings,
            product=f"Function Compute function {deployment.name}",
            credentials=self.api.credentials,
            region=self.region,
            query=f'__topic__: "FCLogs:{deployment.name}"',
            console=f"{self.console_url(deployment) or 'the Function Compute console'} (Logs tab)",
            since_seconds=since_seconds,
            follow=follow,
            environ=self.environ,
        )


def variables_of(function: dict[str, Any] | None) -> dict[str, str | None] | None:
    """A GetFunction answer's variables (None: no function)."""
    if function is None:
        return None
    return dict(function.get("environmentVariables") or {})


def written(sha256: str, function: FunctionSpec) -> str:
    """The description agentpack gives a function: the artifact's sha256 and a digest of the
    configuration sent (code and description aside), which a redeploy reads back.  The API key
    enters it by name only (its value is compared with what GetFunction shows instead)."""
    from dataclasses import replace

    from agentpack.deployers.api_key import for_digest

    environment = for_digest(function.environment or {})
    body = replace(
        function,
        zip_bytes=None,
        oss_bucket=None,
        oss_object=None,
        code_checksum=None,
        description=None,
        environment=environment,
    )
    canonical = json.dumps(body.to_api(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"agentpack artifact sha256:{sha256} settings:{hashlib.sha256(canonical.encode()).hexdigest()[:16]}"


def remember_object(
    known: list[dict[str, Any]] | None, stored: StoredObject, region: str | None, sha256: str
) -> list[dict[str, Any]]:
    """The deployment's OSS objects with ``stored`` added once (where, never a URL or a secret)."""
    records = [dict(r) for r in known or [] if (r.get("bucket"), r.get("key")) != (stored.bucket, stored.key)]
    records.append(
        {"bucket": stored.bucket, "key": stored.key, "region": region, "sha256": sha256, "bytes": stored.size}
    )
    return records
