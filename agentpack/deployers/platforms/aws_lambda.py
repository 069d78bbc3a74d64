"""``agentpack deploy --target lambda``: an AWS Lambda function on the managed Python runtime.

The function is created or updated by name with boto3: runtime ``python<version>``, the
artifact's architecture, handler ``agentpack_lambda.handler``; with ``streaming = true`` (the
default: an agent's answer streams) the exec wrapper
``AWS_LAMBDA_EXEC_WRAPPER=/var/task/agentpack-lambda-stream`` runs agentpack's streaming loop in
place of the runtime's client, and ``streaming = false`` keeps the buffered handler (API
Gateway).  Code is uploaded only when Lambda's ``CodeSha256`` differs from the artifact's; each
update is awaited (``LastUpdateStatus``) before the next call, a version is published and the
alias ``live`` moved to it.  The function URL belongs to
the alias, ``InvokeMode=RESPONSE_STREAM`` when streaming, ``AuthType=AWS_IAM`` unless
``allow_anonymous`` (then the resource policy lets anyone call the URL: since October 2025 that
takes both ``lambda:InvokeFunctionUrl`` and ``lambda:InvokeFunction`` with
``InvokedViaFunctionUrl``, https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html).

The calls, credentials, region and endpoint are the client's, :mod:`agentpack.deployers.clients.aws`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from agentpack.deployers.errors import DeployConfigError, PlatformError
from agentpack.deployers.pipeline import ROUTE, Deployer, Plan
from agentpack.deployers.request import DeployRequest
from agentpack.deployers.state import Deployment
from agentpack.targets import LAMBDA_HANDLER, LAMBDA_STREAM_WRAPPER

if TYPE_CHECKING:
    import httpx

    from agentpack.deployers.clients.aws import LambdaApi
    from agentpack.target_settings import LambdaSettings

WRAPPER_PATH = f"/var/task/{LAMBDA_STREAM_WRAPPER}"
#: The function's Description starts with this; ``(config <digest>)`` follows (``config_digest``).
DESCRIPTION = "deployed by agentpack"


def comparable(config: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """Lambda's ``Configuration`` in the shape ``desired`` has, so that an unchanged function compares equal.

    * Lambda leaves ``Environment`` out of its answer when the function has no variables (moto's
      server does the same); absent means none, not a change from ``{}`` (issue 19, item 10).
    * An ``Environment`` reported without ``Variables`` (only ``Error``, as when the caller may not
      decrypt them [assumed]) cannot be compared: then the digest agentpack wrote into the
      Description decides — the same digest means the variables agentpack wrote are still there
      (secrets are in the digest by name only, so a secret's new value alone is then not seen:
      ``deploy --force`` sends it).
    """
    current = dict(config)
    environment = config.get("Environment")
    if environment is None:
        current["Environment"] = {"Variables": {}}
    elif "Variables" not in environment and config.get("Description") == desired.get("Description"):
        current["Environment"] = {**environment, "Variables": (desired.get("Environment") or {}).get("Variables")}
    return current


def variables_of(config: dict[str, Any] | None) -> dict[str, str | None] | None:
    """A function's variables as Lambda reports them (None: no function).  No ``Environment``
    means none; one without ``Variables`` (only ``Error`` [assumed]) shows no value, so the API
    key counts as present and unreadable — the description's digest then tells what is there."""
    from agentpack.deployers.api_key import VARIABLE

    if config is None:
        return None
    environment = config.get("Environment")
    if environment is None:
        return {}
    if "Variables" not in environment:
        return {VARIABLE: None}
    return dict(environment.get("Variables") or {})


class LambdaDeployer(Deployer):
    target = "lambda"
    name_setting = "function_name"
    sdk_modules = ("boto3", "botocore")
    client = "agentpack.deployers.clients.aws:LambdaApi"
    exact = frozenset({"Variables"})
    settings: LambdaSettings
    api: LambdaApi

    @staticmethod
    def invoke_mode(request: DeployRequest) -> str:
        return "RESPONSE_STREAM" if request.settings.streaming else "BUFFERED"

    def auth(self, request: DeployRequest) -> str:
        return "NONE" if request.allow_anonymous else "AWS_IAM"

    # -- the pipeline's hooks -------------------------------------------------------------------------
    def own_variables(self, request: DeployRequest) -> dict[str, str]:
        return {"AWS_LAMBDA_EXEC_WRAPPER": WRAPPER_PATH} if request.settings.streaming else {}

    def desired(self, plan: Plan) -> dict[str, Any]:
        request, settings = plan.request, plan.request.settings
        body: dict[str, Any] = {
            "Runtime": f"python{request.python}",
            "Handler": LAMBDA_HANDLER,
            "MemorySize": settings.effective("memory"),
            "Timeout": settings.effective("timeout"),
            "Environment": {"Variables": plan.variables},
        }
        if settings.role:
            body["Role"] = settings.role
        body["Description"] = f"{DESCRIPTION} (config {self.config_digest(plan, body)})"
        return body

    def config_digest(self, plan: Plan, body: dict[str, Any]) -> str:
        """A digest of the configuration agentpack writes, kept in the function's Description so
        that a later deploy can tell what it wrote when Lambda does not echo it back.  Values from
        ``[targets.lambda] env`` and agentpack's own variables are in it; the other variables
        (secrets, ``redis_url``, ``--env``) only by name: the Description must not carry a hash an
        attacker could test guesses of a secret against."""
        from agentpack.deployers.api_key import VARIABLE

        plain = {**plan.request.settings.env, **self.own_variables(plan.request)}
        plain.pop(VARIABLE, None)  # the API key by name only, even when written in env
        variables = {key: value if plain.get(key) == value else None for key, value in sorted(plan.variables.items())}
        shown = {**body, "Environment": {"Variables": variables}}
        return hashlib.sha256(json.dumps(shown, sort_keys=True).encode()).hexdigest()[:16]

    def held_variables(self, plan: Plan) -> dict[str, str | None] | None:
        """GetFunction's ``Environment.Variables``; the answer is kept for ``find``."""
        plan.facts["configuration"] = self.configuration(plan.request.name)
        return variables_of(plan.facts["configuration"])

    def find(self, plan: Plan) -> dict[str, Any] | None:
        if "configuration" in plan.facts:  # read a moment ago by held_variables
            config = plan.facts.pop("configuration")
        else:
            config = self.configuration(plan.request.name)
        return None if config is None else comparable(config, plan.desired)

    def sends_variables(self, plan: Plan) -> bool:
        """New code alone goes by UpdateFunctionCode, which leaves the variables as they are."""
        return plan.current is None or plan.config_changed

    def deployed_variables(self, deployment: Deployment) -> dict[str, str | None] | None:
        return variables_of(self.configuration(deployment.name))

    def configuration(self, name: str) -> dict[str, Any] | None:
        """GetFunction's ``Configuration`` of ``name`` (None: no such function)."""
        found: dict[str, Any] | None = (self.api.get_function(name) or {}).get("Configuration")
        return found

    def code_differs(self, plan: Plan) -> bool:
        from agentpack.deployers.clients.aws import code_sha256

        current, request = plan.current or {}, plan.request
        return current.get("CodeSha256") != code_sha256(request.sha256) or (
            current.get("Architectures") or ["x86_64"]
        ) != [request.arch]

    def serving_url(self, plan: Plan) -> str | None:
        name, previous = plan.request.name, plan.previous
        assert previous is not None
        alias = self.api.get_alias(name, ROUTE)
        url_config = self.api.get_url_config(name, ROUTE)
        if (
            alias
            and alias.get("FunctionVersion") == previous.version
            and url_config
            and url_config.get("AuthType") == self.auth(plan.request)
            and url_config.get("InvokeMode", "BUFFERED") == self.invoke_mode(plan.request)
            and (url_config.get("AuthType") != "NONE" or self.api.public_url_granted(name, ROUTE))
        ):
            return str(url_config["FunctionUrl"])
        return None

    def upload(self, plan: Plan) -> str:
        """Create, or update the code and then the configuration, each awaited before the next call."""
        request, name, desired = plan.request, plan.request.name, plan.desired
        if plan.current is None:
            if "Role" not in desired:
                raise DeployConfigError(
                    'a new Lambda function needs an execution role: set [targets.lambda] role = "arn:aws:iam::<account>:role/<name>"'
                )
            self.progress("upload", f"creating function {name} with {request.size_bytes / 1e6:.1f} MB of code")
            self.api.create_function(name, request.zip_bytes(), request.arch, desired)
            return "created"
        if plan.code_needed:
            self.progress("upload", f"uploading {request.size_bytes / 1e6:.1f} MB of code to function {name}")
            self.api.update_code(name, request.zip_bytes(), request.arch)
        if plan.config_changed:
            self.progress("configure", f"updating configuration of function {name}")
            self.api.update_configuration(name, desired)
        return "updated" if plan.code_needed else "configured"

    def publish(self, plan: Plan) -> str:
        from agentpack.deployers.clients.aws import code_sha256

        return self.api.publish_version(plan.request.name, code_sha256(plan.request.sha256))

    def route(self, plan: Plan, version: str) -> str:
        name, auth, invoke_mode = plan.request.name, self.auth(plan.request), self.invoke_mode(plan.request)
        self.api.ensure_alias(name, ROUTE, version, description="the version agentpack serves")
        self.progress("route", f"alias {ROUTE} → version {version}; function URL ({invoke_mode}, auth {auth})")
        return self.api.ensure_url(name, ROUTE, auth, invoke_mode)

    def resource(self, plan: Plan) -> dict[str, Any]:
        return {
            "function_name": plan.request.name,
            "alias": ROUTE,
            "latest_sha256": plan.request.sha256,
            "invoke_mode": self.invoke_mode(plan.request),
        }

    # -- the other commands -------------------------------------------------------------------------
    def status(self, deployment: Deployment) -> dict[str, Any]:
        name = deployment.name
        found = self.api.get_function(name)
        if found is None:
            return {"exists": False, "detail": f"function {name} does not exist on Lambda ({self.region})"}
        config = found.get("Configuration") or {}
        alias = self.api.get_alias(name, ROUTE) or {}
        url_config = self.api.get_url_config(name, ROUTE) or {}
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
            "env": dict.fromkeys((config.get("Environment") or {}).get("Variables") or {}, "***"),
            "last_modified": config.get("LastModified"),
        }

    def rollback(self, deployment: Deployment, version: str) -> Deployment:
        if self.api.get_function(deployment.name) is None:
            raise PlatformError(
                "ResourceNotFoundException",
                f"function {deployment.name} does not exist any more; deploy it again",
                action="GetFunction",
            )
        self.api.ensure_alias(deployment.name, ROUTE, version, description="the version agentpack serves")
        return deployment

    def destroy(self, deployment: Deployment) -> bool:
        """Deleting the function deletes its versions, aliases and function URLs with it."""
        return self.api.delete_function(deployment.name)

    def request_auth(self, deployment: Deployment) -> httpx.Auth | None:
        if deployment.auth != "AWS_IAM":
            return None
        from agentpack.deployers.clients.signing import AwsSigV4Auth

        return AwsSigV4Auth(self.api.credentials, self.api.region)

    def console_url(self, deployment: Deployment) -> str | None:
        return f"https://{self.region}.console.aws.amazon.com/lambda/home?region={self.region}#/functions/{deployment.name}"

    def logs(self, deployment: Deployment, *, since_seconds: float = 3600, follow: bool = False) -> Iterator[str]:
        """CloudWatch Logs of the function (``/aws/lambda/<name>``), oldest first; with ``follow``, new ones as they come."""
        return self.api.log_lines(f"/aws/lambda/{deployment.name}", since_seconds=since_seconds, follow=follow)
