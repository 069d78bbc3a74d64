"""``agentpack deploy --target fc``: a Function Compute 3.0 custom-runtime function.

The function is created or updated by name.  Its code is the artifact: inline (base64) up to
FC's 100 MB inline limit, and above it (or with ``code_upload = "oss"``) through an existing OSS
bucket, ``oss_bucket`` — a content-addressed object ``<oss_prefix>/<function>/<sha256>.zip``
that is uploaded once (streamed, multipart) and named to FC with its CRC-64; the objects a
deployment used are recorded in its state and deleted by ``destroy``.  The builder refuses
what FC cannot take at all (over 500 MB).  The code is started by ``/code/bootstrap`` on
``port`` with the runtime whose Python matches the artifact (custom.debian10 = 3.10,
custom.debian12 = 3.11, custom.debian11 = 3.12).  The instance lifecycle hooks are switched on
so FC calls the adapter's ``POST /initialize`` and ``GET /pre-stop``; ``AGENTPACK_REQUEST_TIMEOUT``
tells the adapter the function's timeout so a run ends with a ``canceled`` event before FC
cuts it.  Requests with the same ``x-agentpack-session-id`` header stick to one instance
(session affinity), which helps but is never relied on: stops cross instances through Redis.

Each deploy that changes code or configuration publishes a version and moves the alias
``live`` to it; the HTTP trigger (auth ``function`` unless ``allow_anonymous``) serves the
alias, so ``rollback`` is one alias update.  A trigger that cannot be made fails the deploy.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

from agentpack.deployers.alibaba import PlatformError
from agentpack.deployers.base import ROUTE, SESSION_HEADER, Deployer, DeployOutcome, same
from agentpack.deployers.errors import DeployConfigError
from agentpack.deployers.request import DeployRequest
from agentpack.deployers.state import Deployment

#: The custom runtime whose interpreter is the artifact's Python.
RUNTIMES = {"3.10": "custom.debian10", "3.11": "custom.debian12", "3.12": "custom.debian11"}
TRIGGER = "http"
#: What agentpack sends when the settings leave these unset, because FC's own defaults would
#: break an agent (a 3 s timeout cuts every stream) and the emulator assumes the same values.
DEFAULT_TIMEOUT = 300
DEFAULT_INSTANCE_CONCURRENCY = 20
HOOK_TIMEOUT = 60


class FCDeployer(Deployer):
    target = "fc"
    name_setting = "function_name"
    sdk_modules = ("alibabacloud_fc20230330", "alibabacloud_tea_openapi", "darabonba", "alibabacloud_credentials")

    def __init__(self, settings: Any, *, environ: Optional[dict[str, str]] = None, api: Any = None, **options: Any) -> None:
        super().__init__(settings, **options)
        from agentpack.deployers.fc_api import FCApi

        self.api = api or FCApi(region=self.region, endpoint=getattr(settings, "endpoint", None), environ=environ)
        self.region = self.api.region or self.region
        self.environ = environ
        self._oss: dict[str, Any] = {}
        #: objects this deployer uploaded (not found in the bucket already), newest last
        self.fresh_objects: list[Any] = []

    def oss(self, region: Optional[str]) -> Any:
        """The OSS client for ``region``, with the deployer's credentials (one per region)."""
        from agentpack.deployers.oss_api import OSSApi

        key = region or ""
        if key not in self._oss:
            self._oss[key] = OSSApi(region=region, credentials=self.api.credentials,
                                    endpoint=getattr(self.settings, "oss_endpoint", None), environ=self.environ)
        return self._oss[key]

    # -- the function as agentpack configures it ---------------------------------------------------
    def spec(self, request: DeployRequest, code: Optional[bytes], oss_object: Optional[Any] = None) -> Any:
        """The function's body: ``code`` inline, or the StoredObject ``oss_object``, or neither (keep the code)."""
        from agentpack.deployers.fc_api import FunctionSpec

        settings = request.settings
        runtime = RUNTIMES.get(request.python)
        if runtime is None:
            raise DeployConfigError(f"Function Compute has no custom runtime with Python {request.python}; build for {', '.join(RUNTIMES)}")
        timeout = settings.timeout or DEFAULT_TIMEOUT
        concurrency = settings.instance_concurrency or DEFAULT_INSTANCE_CONCURRENCY
        variables = self.variables(request, {"AGENTPACK_REQUEST_TIMEOUT": str(timeout), "AGENTPACK_PLATFORM": "fc"})
        return FunctionSpec(
            name=request.name,
            runtime=runtime,
            zip_bytes=code,
            oss_bucket=oss_object.bucket if oss_object is not None else None,
            oss_object=oss_object.key if oss_object is not None else None,
            code_checksum=oss_object.crc64 if oss_object is not None else None,
            command=["/code/bootstrap"],
            port=settings.port,
            cpu=settings.cpu,
            memory_size=settings.memory,
            timeout=timeout,
            instance_concurrency=concurrency,
            environment=variables,
            role=settings.role,
            session_affinity_header=SESSION_HEADER,
            sessions_per_instance=concurrency,
            description="deployed by agentpack",
            initializer_timeout=HOOK_TIMEOUT,
            pre_stop_timeout=HOOK_TIMEOUT,
        )

    def through_oss(self, request: DeployRequest) -> bool:
        """Whether the code goes through OSS; a DeployConfigError saying what to set when it must and cannot."""
        from agentpack.deployers.fc_api import MAX_INLINE_ZIP_BYTES

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

    def ship_through_oss(self, request: DeployRequest) -> Any:
        """Put the artifact in the bucket unless it holds these bytes already; the StoredObject FC reads."""
        from agentpack.deployers.oss_api import crc64_of, object_key

        settings = request.settings
        assert request.artifact is not None, "build() first"
        api = self.oss(settings.oss_region or self.region)
        key = object_key(settings.oss_folder, request.name, request.sha256)
        where = api.where(settings.oss_bucket, key)
        crc64 = crc64_of(request.artifact)
        found = api.head(settings.oss_bucket, key)
        if found is not None and found.crc64 == crc64 and found.size == request.size_bytes:
            self.progress("upload", f"{where} already holds this artifact; not uploaded again")
            return found
        megabytes = request.size_bytes / 1e6
        self.progress("upload", f"uploading {megabytes:.1f} MB to {where}")
        started = time.perf_counter()
        stored = api.upload_file(settings.oss_bucket, key, Path(request.artifact), crc64)
        seconds = time.perf_counter() - started
        self.progress("upload", f"{where}: {megabytes:.1f} MB in {seconds:.2f} s ({megabytes / max(seconds, 1e-6):.0f} MB/s)")
        self.fresh_objects.append(stored)
        return stored

    def auth_type(self, request: DeployRequest) -> str:
        return "anonymous" if request.allow_anonymous else "function"

    # -- deploy ---------------------------------------------------------------------------------------
    def deploy(self, request: DeployRequest, previous: Optional[Deployment]) -> DeployOutcome:
        started = time.perf_counter()
        name = request.name
        via_oss = self.through_oss(request)  # before any call: a missing oss_bucket is the user's to fix
        if via_oss:
            from agentpack.deployers.oss_api import require_sdk

            require_sdk()
        desired = self.spec(request, None).to_api()
        current = self.api.get_function(name)
        known = previous.resource if previous is not None else {}
        code_needed = (
            request.force
            or current is None
            or known.get("latest_sha256") != request.sha256
            or str(current.get("codeChecksum") or "") != str(known.get("code_checksum") or "")
        )
        config_changed = current is None or not same(desired, current, exact=frozenset({"environmentVariables"}))
        auth = self.auth_type(request)
        if not code_needed and not config_changed and previous is not None and previous.sha256 == request.sha256:
            alias, trigger = self.api.get_alias(name, ROUTE), self.api.get_trigger(name, TRIGGER)
            url = ((trigger or {}).get("httpTrigger") or {}).get("urlInternet")
            if (alias and alias.get("versionId") == previous.version and trigger and trigger.get("qualifier") == ROUTE
                    and same(json.dumps({"authType": auth}), str(trigger.get("triggerConfig") or "")) and url):
                previous.url = url
                return DeployOutcome(previous, "unchanged", seconds=time.perf_counter() - started)

        previous_version = previous.version if previous is not None else None
        uploaded = False
        if current is None and previous is not None:  # deleted outside agentpack: its versions went with it
            previous.releases = []
        oss_object = None
        if current is None or code_needed or config_changed:
            if code_needed and via_oss:
                oss_object = self.ship_through_oss(request)
                body = self.spec(request, None, oss_object).to_api()
            else:
                body = self.spec(request, request.zip_bytes() if code_needed else None).to_api()
            source = f" from oss://{oss_object.bucket}/{oss_object.key}" if oss_object is not None else ""
            try:
                if current is None:
                    self.progress("upload", f"creating function {name} with {request.size_bytes / 1e6:.1f} MB of code{source}")
                    result = self.api.create_function(body)
                    action = "created"
                else:
                    what = "uploading code and configuration" if code_needed and config_changed else "uploading code" if code_needed else "updating configuration"
                    self.progress("upload" if code_needed else "configure", f"{what} of function {name}{source}")
                    result = self.api.update_function(name, body)
                    action = "updated" if code_needed else "configured"
            except PlatformError:
                self.forget_fresh_objects(previous)
                raise
            uploaded = code_needed
            checksum = str(result.get("codeChecksum") or "")
            version = self.api.publish_version(name, description=f"agentpack {request.sha256[:12]}")
            self.progress("publish", f"version {version}")
        else:
            checksum = str(known.get("code_checksum") or "")
            version = self.reused_version(previous, request.sha256) or self.api.publish_version(name, description=f"agentpack {request.sha256[:12]}")
            action = "republished"
        self.api.ensure_alias(name, ROUTE, version, description="the version agentpack serves")
        self.progress("route", f"alias {ROUTE} → version {version}; HTTP trigger (auth {auth})")
        url = self.api.ensure_http_trigger(name, TRIGGER, qualifier=ROUTE, auth_type=auth)

        deployment = previous if previous is not None else Deployment(target=self.target, name=name)
        deployment.url = url
        deployment.region = self.region
        deployment.auth = auth
        deployment.env_keys = sorted(body_env(desired))
        deployment.python, deployment.arch = request.python, request.arch
        deployment.status = "deployed"
        deployment.resource = {**known, "function_name": name, "alias": ROUTE, "trigger": TRIGGER,
                               "latest_sha256": request.sha256, "code_checksum": checksum}
        if oss_object is not None:
            deployment.resource["oss_objects"] = remember_object(known.get("oss_objects"), oss_object,
                                                                 request.settings.oss_region or self.region, request.sha256)
        deployment.remember(version, request.sha256)
        from agentpack.deployers.state import now

        deployment.deployed_at = now()
        return DeployOutcome(deployment, action, uploaded, previous_version, seconds=time.perf_counter() - started)

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
            "env": {key: "***" for key in function.get("environmentVariables") or {}},
            "last_modified": function.get("lastModifiedTime"),
        }

    def rollback(self, deployment: Deployment, version: str) -> Deployment:
        name = deployment.name
        if self.api.get_function(name) is None:
            raise PlatformError("FunctionNotFound", f"function {name} does not exist any more; deploy it again", action="GetFunction")
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

    def forget_fresh_objects(self, previous: Optional[Deployment]) -> None:
        """After a failed create/update: delete what this deploy uploaded and no deployment records (best effort)."""
        recorded = {(r.get("bucket"), r.get("key")) for r in ((previous.resource if previous else {}).get("oss_objects") or [])}
        for stored in self.fresh_objects:
            if (stored.bucket, stored.key) in recorded:
                continue
            try:
                self.oss(self.settings.oss_region or self.region).delete(stored.bucket, stored.key)
            except PlatformError:
                pass  # the next deploy finds it by its key and reuses it
        self.fresh_objects.clear()

    def request_auth(self, deployment: Deployment) -> Any:
        if deployment.auth != "function":
            return None
        from agentpack.deployers.request_auth import AcsSignatureAuth

        credentials = self.api.credentials
        return AcsSignatureAuth(credentials.access_key_id, credentials.access_key_secret, credentials.security_token)

    def console_url(self, deployment: Deployment) -> Optional[str]:
        if not self.region:
            return None
        return f"https://fcnext.console.aliyun.com/{self.region}/functions/{deployment.name}"

    def logs(self, deployment: Deployment, *, since_seconds: float = 3600, follow: bool = False) -> Any:
        from agentpack.deployers.base import NotOffered

        where = self.console_url(deployment) or "the Function Compute console"
        raise NotOffered(
            f"Function Compute writes logs to Simple Log Service once the function has a log configuration "
            f"(project and logstore); read them in {where} (Logs tab)"
        )


def body_env(body: dict[str, Any]) -> dict[str, str]:
    return dict(body.get("environmentVariables") or {})


def remember_object(known: Optional[list[dict[str, Any]]], stored: Any, region: Optional[str], sha256: str) -> list[dict[str, Any]]:
    """The deployment's OSS objects with ``stored`` added once (where, never a URL or a secret)."""
    records = [dict(r) for r in known or [] if (r.get("bucket"), r.get("key")) != (stored.bucket, stored.key)]
    records.append({"bucket": stored.bucket, "key": stored.key, "region": region, "sha256": sha256, "bytes": stored.size})
    return records
