"""``agentpack deploy --target lambda``: an AWS Lambda function on the managed Python runtime.

The function is created or updated by name with boto3: runtime ``python<version>``, the
artifact's architecture, handler ``agentpack_lambda.handler`` (buffered), or — with
``streaming = true`` — the exec wrapper ``AWS_LAMBDA_EXEC_WRAPPER=/var/task/agentpack-lambda-stream``
that runs agentpack's streaming loop.  Code is uploaded only when Lambda's ``CodeSha256``
differs from the artifact's; each update is awaited (``LastUpdateStatus``) before the next
call, a version is published and the alias ``live`` moved to it.  The function URL belongs to
the alias, ``InvokeMode=RESPONSE_STREAM`` when streaming, ``AuthType=AWS_IAM`` unless
``allow_anonymous`` (then a resource policy lets anyone call the URL, as AWS requires).

Credentials come from the standard AWS chain (environment, ``~/.aws``, SSO, an instance
role); the endpoint can be pointed elsewhere with ``endpoint`` / ``AGENTPACK_LAMBDA_ENDPOINT``
(or AWS's own ``AWS_ENDPOINT_URL_LAMBDA``), which is how the tests drive moto's server.
"""

from __future__ import annotations

import base64
import os
import time
from typing import Any, Iterator, Optional

from agentpack.deployers.base import ROUTE, Deployer, DeployOutcome, same
from agentpack.deployers.errors import DeployConfigError, PlatformError
from agentpack.deployers.request import DeployRequest
from agentpack.deployers.state import Deployment, now
from agentpack.targets import LAMBDA_HANDLER, LAMBDA_STREAM_WRAPPER

ENDPOINT_ENV = "AGENTPACK_LAMBDA_ENDPOINT"
WRAPPER_PATH = f"/var/task/{LAMBDA_STREAM_WRAPPER}"
#: Sent when the settings leave them unset: Lambda's own 3 s and 128 MB are too small for an
#: agent, and the emulator assumes these.
DEFAULT_TIMEOUT = 30
DEFAULT_MEMORY = 1024
PUBLIC_URL_STATEMENT = "agentpack-public-function-url"
_NO_CREDENTIALS = (
    "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (plus AWS_SESSION_TOKEN for temporary ones), "
    "or AWS_PROFILE with a profile in ~/.aws/credentials or ~/.aws/config (`aws configure`)"
)


def _b64_sha256(hex_digest: str) -> str:
    """Lambda's ``CodeSha256``: the base64 of the zip's SHA-256 (ours is hex)."""
    return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")


def platform_error(exc: BaseException, action: Optional[str] = None) -> Exception:
    """botocore's exceptions as PlatformError (the platform said no) or DeployConfigError (set something)."""
    from botocore import exceptions as errors

    if isinstance(exc, errors.ClientError):
        error = exc.response.get("Error", {})
        meta = exc.response.get("ResponseMetadata", {})
        return PlatformError(str(error.get("Code") or "Unknown"), str(error.get("Message") or exc), meta.get("RequestId"),
                             meta.get("HTTPStatusCode"), action or exc.operation_name)
    if isinstance(exc, (errors.NoCredentialsError, errors.PartialCredentialsError)):
        return DeployConfigError(_NO_CREDENTIALS)
    if isinstance(exc, errors.NoRegionError):
        return DeployConfigError("no AWS region: set [targets.lambda] region, or AWS_REGION / AWS_DEFAULT_REGION")
    if isinstance(exc, errors.WaiterError):
        last = exc.last_response or {}
        reason = last.get("LastUpdateStatusReason") or last.get("StateReason") or str(exc)
        code = last.get("LastUpdateStatusReasonCode") or last.get("StateReasonCode") or "UpdateFailed"
        return PlatformError(str(code), f"the function did not become ready: {reason}", action=action)
    if isinstance(exc, (errors.EndpointConnectionError, errors.ConnectTimeoutError, errors.ReadTimeoutError)):
        return PlatformError("ConnectionError", f"could not reach the endpoint: {exc}", action=action)
    if isinstance(exc, errors.BotoCoreError):
        return PlatformError(type(exc).__name__, str(exc), action=action)
    return exc  # type: ignore[return-value]


class LambdaDeployer(Deployer):
    target = "lambda"
    name_setting = "function_name"
    sdk_modules = ("boto3", "botocore")

    def __init__(self, settings: Any, *, environ: Optional[dict[str, str]] = None, session: Any = None, **options: Any) -> None:
        super().__init__(settings, **options)
        import boto3
        from botocore.config import Config

        env = os.environ if environ is None else environ
        # boto3 reads AWS_DEFAULT_REGION; AWS_REGION is what Lambda itself and the AWS CLI v2 set
        self.session = session or boto3.session.Session(region_name=self.region or env.get("AWS_REGION") or None)
        if self.session.region_name is None:
            raise DeployConfigError("no AWS region: set [targets.lambda] region, or AWS_REGION / AWS_DEFAULT_REGION")
        self.region = self.session.region_name
        self.credentials = self.session.get_credentials()
        if self.credentials is None:
            raise DeployConfigError(_NO_CREDENTIALS)
        self.endpoint = getattr(settings, "endpoint", None) or env.get(ENDPOINT_ENV) or None
        config = Config(retries={"max_attempts": 5, "mode": "standard"}, user_agent_extra="agentpack")
        self.client = self.session.client("lambda", endpoint_url=self.endpoint, config=config)

    # -- calls --------------------------------------------------------------------------------------
    def _call(self, action: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return getattr(self.client, action)(**kwargs)
        except Exception as exc:
            mapped = platform_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    def _call_or_none(self, action: str, **kwargs: Any) -> Optional[dict[str, Any]]:
        try:
            return self._call(action, **kwargs)
        except PlatformError as error:
            if error.code == "ResourceNotFoundException" or error.status == 404:
                return None
            raise

    def _wait(self, name: str, waiter: str, action: str) -> None:
        try:
            self.client.get_waiter(waiter).wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 900})
        except Exception as exc:
            mapped = platform_error(exc, action)
            if mapped is exc:
                raise
            raise mapped from exc

    # -- the function as agentpack configures it -----------------------------------------------------
    def configuration(self, request: DeployRequest, streaming: bool) -> dict[str, Any]:
        settings = request.settings
        extra = {"AWS_LAMBDA_EXEC_WRAPPER": WRAPPER_PATH} if streaming else {}
        body: dict[str, Any] = {
            "Runtime": f"python{request.python}",
            "Handler": LAMBDA_HANDLER,
            "MemorySize": settings.memory or DEFAULT_MEMORY,
            "Timeout": settings.timeout or DEFAULT_TIMEOUT,
            "Environment": {"Variables": self.variables(request, extra)},
            "Description": "deployed by agentpack",
        }
        if settings.role:
            body["Role"] = settings.role
        return body

    def deploy(self, request: DeployRequest, previous: Optional[Deployment]) -> DeployOutcome:
        started = time.perf_counter()
        name = request.name
        streaming = bool(request.settings.streaming)
        desired = self.configuration(request, streaming)
        found = self._call_or_none("get_function", FunctionName=name)
        current = (found or {}).get("Configuration")
        code_sha = _b64_sha256(request.sha256)
        code_needed = request.force or current is None or current.get("CodeSha256") != code_sha or (current.get("Architectures") or ["x86_64"]) != [request.arch]
        config_changed = current is None or not same(desired, current, exact=frozenset({"Variables"}))
        auth = "NONE" if request.allow_anonymous else "AWS_IAM"
        invoke_mode = "RESPONSE_STREAM" if streaming else "BUFFERED"
        if not code_needed and not config_changed and previous is not None and previous.sha256 == request.sha256:
            alias = self._call_or_none("get_alias", FunctionName=name, Name=ROUTE)
            url_config = self._call_or_none("get_function_url_config", FunctionName=name, Qualifier=ROUTE)
            if (alias and alias.get("FunctionVersion") == previous.version and url_config
                    and url_config.get("AuthType") == auth and url_config.get("InvokeMode", "BUFFERED") == invoke_mode):
                previous.url = url_config["FunctionUrl"]
                return DeployOutcome(previous, "unchanged", seconds=time.perf_counter() - started)

        previous_version = previous.version if previous is not None else None
        if current is None and previous is not None:  # deleted outside agentpack: its versions went with it
            previous.releases = []
        if current is None:
            if "Role" not in desired:
                raise DeployConfigError(
                    "a new Lambda function needs an execution role: set [targets.lambda] role = \"arn:aws:iam::<account>:role/<name>\""
                )
            self.progress("upload", f"creating function {name} with {request.size_bytes / 1e6:.1f} MB of code")
            self._call("create_function", FunctionName=name, Code={"ZipFile": request.zip_bytes()}, Architectures=[request.arch],
                       PackageType="Zip", Publish=False, **desired)
            self._wait(name, "function_active_v2", "CreateFunction")
            action = "created"
        else:
            action = "republished"
            if code_needed:
                self.progress("upload", f"uploading {request.size_bytes / 1e6:.1f} MB of code to function {name}")
                self._call("update_function_code", FunctionName=name, ZipFile=request.zip_bytes(), Architectures=[request.arch])
                self._wait(name, "function_updated_v2", "UpdateFunctionCode")
                action = "updated"
            if config_changed:
                self.progress("configure", f"updating configuration of function {name}")
                self._call("update_function_configuration", FunctionName=name, **desired)
                self._wait(name, "function_updated_v2", "UpdateFunctionConfiguration")
                action = "updated" if code_needed else "configured"
        if action == "republished":
            version = self.reused_version(previous, request.sha256) or self._publish(name, code_sha)
        else:
            version = self._publish(name, code_sha)
            self.progress("publish", f"version {version}")
        self._point_alias(name, version)
        self.progress("route", f"alias {ROUTE} → version {version}; function URL ({invoke_mode}, auth {auth})")
        url = self._ensure_url(name, auth, invoke_mode)

        deployment = previous if previous is not None else Deployment(target=self.target, name=name)
        deployment.url = url
        deployment.region = self.region
        deployment.auth = auth
        deployment.env_keys = sorted(desired["Environment"]["Variables"])
        deployment.python, deployment.arch = request.python, request.arch
        deployment.status = "deployed"
        deployment.resource = {**(previous.resource if previous else {}), "function_name": name, "alias": ROUTE,
                               "latest_sha256": request.sha256, "invoke_mode": invoke_mode}
        deployment.remember(version, request.sha256)
        deployment.deployed_at = now()
        return DeployOutcome(deployment, action, action in ("created", "updated"), previous_version,
                             seconds=time.perf_counter() - started)

    def _publish(self, name: str, code_sha: str) -> str:
        published = self._call("publish_version", FunctionName=name, CodeSha256=code_sha, Description="agentpack")
        return str(published["Version"])

    def _point_alias(self, name: str, version: str) -> None:
        if self._call_or_none("get_alias", FunctionName=name, Name=ROUTE) is None:
            self._call("create_alias", FunctionName=name, Name=ROUTE, FunctionVersion=version,
                       Description="the version agentpack serves")
        else:
            self._call("update_alias", FunctionName=name, Name=ROUTE, FunctionVersion=version)

    def _ensure_url(self, name: str, auth: str, invoke_mode: str) -> str:
        existing = self._call_or_none("get_function_url_config", FunctionName=name, Qualifier=ROUTE)
        if existing is None:
            result = self._call("create_function_url_config", FunctionName=name, Qualifier=ROUTE, AuthType=auth, InvokeMode=invoke_mode)
        elif existing.get("AuthType") != auth or existing.get("InvokeMode", "BUFFERED") != invoke_mode:
            result = self._call("update_function_url_config", FunctionName=name, Qualifier=ROUTE, AuthType=auth, InvokeMode=invoke_mode)
        else:
            result = existing
        if auth == "NONE":  # a public URL also needs a resource policy that lets anyone call it
            try:
                self._call("add_permission", FunctionName=name, Qualifier=ROUTE, StatementId=PUBLIC_URL_STATEMENT,
                           Action="lambda:InvokeFunctionUrl", Principal="*", FunctionUrlAuthType="NONE")
            except PlatformError as error:
                if error.code != "ResourceConflictException":
                    raise
        else:
            self._call_or_none("remove_permission", FunctionName=name, Qualifier=ROUTE, StatementId=PUBLIC_URL_STATEMENT)
        url = str(result.get("FunctionUrl") or "")
        if not url:
            raise PlatformError("NoFunctionUrl", f"function {name} reports no function URL", action="CreateFunctionUrlConfig")
        return url

    # -- the other commands -------------------------------------------------------------------------
    def status(self, deployment: Deployment) -> dict[str, Any]:
        name = deployment.name
        found = self._call_or_none("get_function", FunctionName=name)
        if found is None:
            return {"exists": False, "detail": f"function {name} does not exist on Lambda ({self.region})"}
        config = found.get("Configuration") or {}
        alias = self._call_or_none("get_alias", FunctionName=name, Name=ROUTE) or {}
        url_config = self._call_or_none("get_function_url_config", FunctionName=name, Qualifier=ROUTE) or {}
        return {
            "exists": True,
            "state": config.get("State"),
            "last_update": config.get("LastUpdateStatus"),
            "reason": config.get("StateReason") or config.get("LastUpdateStatusReason") or "",
            "version": alias.get("FunctionVersion"),
            "url": url_config.get("FunctionUrl"),
            "invoke_mode": url_config.get("InvokeMode"),
            "runtime": config.get("Runtime"),
            "memory": config.get("MemorySize"),
            "timeout": config.get("Timeout"),
            "arch": (config.get("Architectures") or [None])[0],
            "env": {key: "***" for key in ((config.get("Environment") or {}).get("Variables") or {})},
            "last_modified": config.get("LastModified"),
        }

    def rollback(self, deployment: Deployment, version: str) -> Deployment:
        if self._call_or_none("get_function", FunctionName=deployment.name) is None:
            raise PlatformError("ResourceNotFoundException", f"function {deployment.name} does not exist any more; deploy it again", action="GetFunction")
        self._point_alias(deployment.name, version)
        return deployment

    def destroy(self, deployment: Deployment) -> bool:
        """Deleting the function deletes its versions, aliases and function URLs with it."""
        if self._call_or_none("get_function", FunctionName=deployment.name) is None:
            return False
        self._call("delete_function", FunctionName=deployment.name)
        return True

    def request_auth(self, deployment: Deployment) -> Any:
        if deployment.auth != "AWS_IAM":
            return None
        from agentpack.deployers.request_auth import AwsSigV4Auth

        return AwsSigV4Auth(self.credentials, self.region)

    def console_url(self, deployment: Deployment) -> Optional[str]:
        return f"https://{self.region}.console.aws.amazon.com/lambda/home?region={self.region}#/functions/{deployment.name}"

    def logs(self, deployment: Deployment, *, since_seconds: float = 3600, follow: bool = False) -> Iterator[str]:
        """CloudWatch Logs of the function (``/aws/lambda/<name>``), oldest first; with ``follow``, new ones as they come."""
        from botocore.config import Config

        logs = self.session.client("logs", config=Config(retries={"max_attempts": 5, "mode": "standard"}))
        group = f"/aws/lambda/{deployment.name}"
        start = int((time.time() - since_seconds) * 1000)
        seen: set[str] = set()
        while True:
            token: Optional[str] = None
            newest = start
            while True:
                kwargs: dict[str, Any] = {"logGroupName": group, "startTime": start}
                if token:
                    kwargs["nextToken"] = token
                try:
                    page = logs.filter_log_events(**kwargs)
                except Exception as exc:
                    mapped = platform_error(exc, "FilterLogEvents")
                    if isinstance(mapped, PlatformError) and mapped.code == "ResourceNotFoundException":
                        page = {"events": []}
                    elif mapped is exc:
                        raise
                    else:
                        raise mapped from exc
                for event in page.get("events", []):
                    if event["eventId"] in seen:
                        continue
                    seen.add(event["eventId"])
                    newest = max(newest, int(event["timestamp"]))
                    yield str(event.get("message", "")).rstrip("\n")
                token = page.get("nextToken")
                if not token:
                    break
            if not follow:
                return
            start = newest
            time.sleep(2)
