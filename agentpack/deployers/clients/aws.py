"""AWS Lambda (and CloudWatch Logs) operations the Lambda deployer needs, over boto3.

* **Credentials** come from the standard AWS chain (environment, ``~/.aws``, SSO, an instance
  role); none is a :class:`DeployConfigError` that says what to set, found before any call.
* **Region**: the one given, else ``AWS_REGION`` (what Lambda itself and the AWS CLI v2 set),
  else boto3's own (``AWS_DEFAULT_REGION``, the profile).
* **Endpoint**: the one given, else ``AGENTPACK_LAMBDA_ENDPOINT``, else botocore's own
  (``AWS_ENDPOINT_URL_LAMBDA``); that is how the tests drive moto's server.
* **Errors and retries**: botocore's exceptions become a :class:`PlatformError` with the
  platform's code, message, request id and HTTP status (or a DeployConfigError when there is
  something to set); botocore retries throttling and 5xx answers (standard mode, 5 attempts).
  Each change is awaited with Lambda's own waiters before the next call, as Lambda requires.

boto3 is imported when a client is made, so that ``import agentpack`` stays light.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from agentpack.deployers.clients.timeouts import API_TIMEOUT_ENV, CONNECT_TIMEOUT, api_timeout
from agentpack.deployers.errors import DeployConfigError, PlatformError

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config

ENDPOINT_ENV = "AGENTPACK_LAMBDA_ENDPOINT"
#: The resource-policy statements that let anyone call a function URL with ``AuthType: NONE``.
#: Since October 2025 a function URL needs both ``lambda:InvokeFunctionUrl`` and
#: ``lambda:InvokeFunction`` (the latter limited to calls through the URL by
#: ``InvokedViaFunctionUrl``); with only the first, the URL answers 403.  Source: AWS Lambda
#: Developer Guide, "Control access to Lambda function URLs",
#: https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html
PUBLIC_URL_STATEMENTS: dict[str, dict[str, Any]] = {
    "agentpack-public-function-url": {"Action": "lambda:InvokeFunctionUrl", "FunctionUrlAuthType": "NONE"},
    "agentpack-public-function-url-invoke": {"Action": "lambda:InvokeFunction", "InvokedViaFunctionUrl": True},
}
_NO_CREDENTIALS = (
    "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (plus AWS_SESSION_TOKEN for temporary ones), "
    "or AWS_PROFILE with a profile in ~/.aws/credentials or ~/.aws/config (`aws configure`)"
)
_NO_REGION = "no AWS region: set [targets.lambda] region, or AWS_REGION / AWS_DEFAULT_REGION"


def code_sha256(hex_digest: str) -> str:
    """Lambda's ``CodeSha256``: the base64 of the zip's SHA-256 (ours is hex)."""
    return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")


def platform_error(exc: BaseException, action: str | None = None) -> BaseException:
    """botocore's exceptions as PlatformError (the platform said no) or DeployConfigError (set
    something); anything else is returned as it is (a bug on our side, not an answer)."""
    from botocore import exceptions as errors

    if isinstance(exc, errors.ClientError):
        error = exc.response.get("Error", {})
        meta = exc.response.get("ResponseMetadata", {})
        return PlatformError(
            str(error.get("Code") or "Unknown"),
            str(error.get("Message") or exc),
            meta.get("RequestId"),
            meta.get("HTTPStatusCode"),
            action or exc.operation_name,
        )
    if isinstance(exc, (errors.NoCredentialsError, errors.PartialCredentialsError)):
        return DeployConfigError(_NO_CREDENTIALS)
    if isinstance(exc, errors.NoRegionError):
        return DeployConfigError(_NO_REGION)
    if isinstance(exc, errors.WaiterError):
        last = exc.last_response or {}
        reason = last.get("LastUpdateStatusReason") or last.get("StateReason") or str(exc)
        code = last.get("LastUpdateStatusReasonCode") or last.get("StateReasonCode") or "UpdateFailed"
        return PlatformError(str(code), f"the function did not become ready: {reason}", action=action)
    if isinstance(exc, errors.ReadTimeoutError):
        return PlatformError(
            "Timeout",
            f"{exc.kwargs.get('endpoint_url') or 'the endpoint'} accepted the connection but sent no answer within "
            f"{api_timeout():g} s (tried {_ATTEMPTS} times); check the endpoint and the network "
            f"({API_TIMEOUT_ENV} sets how long to wait)",
            action=action,
        )
    if isinstance(exc, (errors.EndpointConnectionError, errors.ConnectTimeoutError)):
        return PlatformError("ConnectionError", f"could not reach the endpoint: {exc}", action=action)
    if isinstance(exc, errors.BotoCoreError):
        return PlatformError(type(exc).__name__, str(exc), action=action)
    return exc


#: Attempts per call (throttling and 5xx answers are retried; so are timeouts, by botocore).
_ATTEMPTS = 3


def _config() -> Config:
    from botocore.config import Config

    # bounded: botocore's default read timeout is 60 s, taken again on each of the attempts
    return Config(
        retries={"max_attempts": _ATTEMPTS, "mode": "standard"},
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=api_timeout(),
        user_agent_extra="agentpack",
    )


class LambdaApi:
    """One region's Lambda control plane (see the module doc)."""

    def __init__(
        self,
        *,
        region: str | None = None,
        endpoint: str | None = None,
        environ: Mapping[str, str] | None = None,
        session: boto3.session.Session | None = None,
    ) -> None:
        import boto3

        env = os.environ if environ is None else environ
        # boto3 reads AWS_DEFAULT_REGION; AWS_REGION is what Lambda itself and the AWS CLI v2 set
        self.session = session or boto3.session.Session(region_name=region or env.get("AWS_REGION") or None)
        if self.session.region_name is None:
            raise DeployConfigError(_NO_REGION)
        self.region: str = self.session.region_name
        self.credentials = self.session.get_credentials()
        if self.credentials is None:
            raise DeployConfigError(_NO_CREDENTIALS)
        self.endpoint = endpoint or env.get(ENDPOINT_ENV) or None
        self.client = self.session.client("lambda", endpoint_url=self.endpoint, config=_config())

    # -- calls --------------------------------------------------------------------------------------
    def _call(self, action: str, **kwargs: Any) -> dict[str, Any]:
        try:
            answer: dict[str, Any] = getattr(self.client, action)(**kwargs)
            return answer
        except Exception as exc:
            mapped = platform_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    def _call_or_none(self, action: str, **kwargs: Any) -> dict[str, Any] | None:
        """Like _call, but "not found" means there is none rather than an error."""
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

    # -- the function -------------------------------------------------------------------------------
    def get_function(self, name: str) -> dict[str, Any] | None:
        """``{"Configuration": …, "Code": …}``, or None when there is no such function."""
        return self._call_or_none("get_function", FunctionName=name)

    def create_function(self, name: str, zip_bytes: bytes, arch: str, configuration: dict[str, Any]) -> None:
        """Create the function (unpublished) and wait until it is Active."""
        self._call(
            "create_function",
            FunctionName=name,
            Code={"ZipFile": zip_bytes},
            Architectures=[arch],
            PackageType="Zip",
            Publish=False,
            **configuration,
        )
        self._wait(name, "function_active_v2", "CreateFunction")

    def update_code(self, name: str, zip_bytes: bytes, arch: str) -> None:
        self._call("update_function_code", FunctionName=name, ZipFile=zip_bytes, Architectures=[arch])
        self._wait(name, "function_updated_v2", "UpdateFunctionCode")

    def update_configuration(self, name: str, configuration: dict[str, Any]) -> None:
        self._call("update_function_configuration", FunctionName=name, **configuration)
        self._wait(name, "function_updated_v2", "UpdateFunctionConfiguration")

    def publish_version(self, name: str, code_sha: str) -> str:
        """Publish ``$LATEST`` as a version, refused by Lambda unless its code is ``code_sha``."""
        published = self._call("publish_version", FunctionName=name, CodeSha256=code_sha, Description="agentpack")
        return str(published["Version"])

    def delete_function(self, name: str) -> bool:
        """Delete the function with its versions, aliases and URLs; False when there was none."""
        if self.get_function(name) is None:
            return False
        self._call("delete_function", FunctionName=name)
        return True

    # -- the route: alias and function URL -----------------------------------------------------------
    def get_alias(self, name: str, alias: str) -> dict[str, Any] | None:
        return self._call_or_none("get_alias", FunctionName=name, Name=alias)

    def ensure_alias(self, name: str, alias: str, version: str, description: str = "") -> None:
        """Point ``alias`` at ``version``, creating it if needed."""
        if self.get_alias(name, alias) is None:
            self._call("create_alias", FunctionName=name, Name=alias, FunctionVersion=version, Description=description)
        else:
            self._call("update_alias", FunctionName=name, Name=alias, FunctionVersion=version)

    def get_url_config(self, name: str, qualifier: str) -> dict[str, Any] | None:
        return self._call_or_none("get_function_url_config", FunctionName=name, Qualifier=qualifier)

    def public_url_granted(self, name: str, qualifier: str) -> bool:
        """Whether the resource policy of ``qualifier`` holds every statement a public URL needs
        (:data:`PUBLIC_URL_STATEMENTS`); a URL made by an agentpack that granted only one is not."""
        found = self._call_or_none("get_policy", FunctionName=name, Qualifier=qualifier)
        if found is None:
            return False
        statements = json.loads(found.get("Policy") or "{}").get("Statement") or []
        return set(PUBLIC_URL_STATEMENTS) <= {statement.get("Sid") for statement in statements}

    def ensure_url(self, name: str, qualifier: str, auth: str, invoke_mode: str) -> str:
        """Create or change the function URL of ``qualifier`` and return it.  A public URL
        (``auth`` NONE) also needs the resource-policy statements that let anyone call it, as AWS
        requires (:data:`PUBLIC_URL_STATEMENTS`); with IAM auth those statements are removed."""
        existing = self.get_url_config(name, qualifier)
        options = {"FunctionName": name, "Qualifier": qualifier, "AuthType": auth, "InvokeMode": invoke_mode}
        if existing is None:
            result = self._call("create_function_url_config", **options)
        elif existing.get("AuthType") != auth or existing.get("InvokeMode", "BUFFERED") != invoke_mode:
            result = self._call("update_function_url_config", **options)
        else:
            result = existing
        for statement, grant in PUBLIC_URL_STATEMENTS.items():
            if auth == "NONE":
                try:
                    self._call(
                        "add_permission",
                        FunctionName=name,
                        Qualifier=qualifier,
                        StatementId=statement,
                        Principal="*",
                        **grant,
                    )
                except PlatformError as error:
                    if error.code != "ResourceConflictException":  # already there: Lambda keeps statement ids unique
                        raise
            else:
                self._call_or_none("remove_permission", FunctionName=name, Qualifier=qualifier, StatementId=statement)
        url = str(result.get("FunctionUrl") or "")
        if not url:
            raise PlatformError(
                "NoFunctionUrl", f"function {name} reports no function URL", action="CreateFunctionUrlConfig"
            )
        return url

    # -- CloudWatch Logs ----------------------------------------------------------------------------
    def log_lines(self, group: str, *, since_seconds: float = 3600, follow: bool = False) -> Iterator[str]:
        """The log group's events, oldest first, page by page; with ``follow``, new ones as they come."""
        logs = self.session.client("logs", config=_config())
        start = int((time.time() - since_seconds) * 1000)
        seen: set[str] = set()
        while True:
            token: str | None = None
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
