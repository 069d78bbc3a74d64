"""The deployers' logic in-process: the state file under concurrency, release history and
rollback order, the configuration comparison behind "unchanged", request signing, the checks a
deploy makes before any platform call, and the Python managers' arguments."""

from __future__ import annotations

import hashlib
import json
import threading
import warnings
from pathlib import Path

import httpx
import pytest

from agentpack.deployers.pipeline import same
from agentpack.deployers.errors import DeployConfigError
from agentpack.deployers.request import DeployOptions, prepare
from agentpack.deployers.state import Deployment, DeploymentStore
from tests.support import copy_project


# -- state ------------------------------------------------------------------------------------------------
def test_concurrent_writers_never_lose_a_record(tmp_path):
    def write(index: int) -> None:
        store = DeploymentStore(tmp_path)  # each writer opens the files itself, as separate processes do
        for round_ in range(10):
            deployment = Deployment(target="fc", name=f"agent-{index}", url=f"https://{index}.example/{round_}")
            deployment.remember(str(round_), hashlib.sha256(f"{index}{round_}".encode()).hexdigest())
            store.put(deployment)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    records = DeploymentStore(tmp_path).all()
    assert sorted(d.name for d in records) == sorted(f"agent-{i}" for i in range(8))
    assert all(d.version == "9" and d.url.endswith("/9") for d in records)
    leftovers = [p.name for p in (tmp_path / ".agentpack").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    assert json.loads((tmp_path / ".agentpack" / "deployments.json").read_text())["format"] == 1


def test_a_corrupt_state_file_is_reported_not_overwritten(tmp_path):
    from agentpack.deployers.state import StateError

    state = tmp_path / ".agentpack" / "deployments.json"
    state.parent.mkdir()
    state.write_text("{not json")
    with pytest.raises(StateError, match="not valid JSON"):
        DeploymentStore(tmp_path).put(Deployment(target="fc", name="x"))
    assert state.read_text() == "{not json"


def test_rollback_walks_back_through_the_releases():
    deployment = Deployment(target="fc", name="x")
    for version in ("1", "2", "3"):
        deployment.remember(version, f"sha{version}")
    assert deployment.previous_release().version == "2"
    deployment.version, deployment.sha256 = "2", "sha2"  # what a rollback records
    assert deployment.previous_release().version == "1"
    deployment.version = "1"
    assert deployment.previous_release() is None
    deployment.remember("4", "sha4")  # a new deploy goes on top
    assert [r.version for r in deployment.releases] == ["1", "2", "3", "4"] and deployment.previous_release().version == "3"


def test_the_state_keeps_names_of_variables_never_values(tmp_path):
    deployment = Deployment(target="fc", name="x", env_keys=["API_KEY"])
    DeploymentStore(tmp_path).put(deployment)
    assert deployment.masked_env() == {"API_KEY": "***"}
    assert "API_KEY" in (tmp_path / ".agentpack" / "deployments.json").read_text()


# -- comparing what the platform holds -------------------------------------------------------------------------
def test_same_compares_what_agentpack_sets_and_ignores_the_rest():
    platform = {"memorySize": 512, "cpu": 1, "environmentVariables": {"A": "1"}, "state": "Active",
                "sessionAffinityConfig": '{"affinityHeaderFieldName":"x-agentpack-session-id","sessionTTLInSeconds":21600}',
                "customRuntimeConfig": {"command": ["/code/bootstrap"], "port": 9000, "args": None}}
    desired = {"memorySize": 512, "cpu": 1.0, "environmentVariables": {"A": "1"},
               "sessionAffinityConfig": '{"sessionTTLInSeconds": 21600, "affinityHeaderFieldName": "x-agentpack-session-id"}',
               "customRuntimeConfig": {"command": ["/code/bootstrap"], "port": 9000}}
    exact = frozenset({"environmentVariables"})
    assert same(desired, platform, exact)
    assert not same({**desired, "environmentVariables": {}}, platform, exact), "a removed variable is a change"
    assert not same({**desired, "memorySize": 1024}, platform, exact)
    assert not same({**desired, "customRuntimeConfig": {"command": ["/code/bootstrap"], "port": 9001}}, platform, exact)


# -- signing ----------------------------------------------------------------------------------------------------
def test_fc_trigger_requests_carry_a_signature_the_gateway_accepts():
    from agentpack.deployers.clients.signing import AcsSignatureAuth
    from tests.standins.acs import canonical_request, sign

    seen: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda request: seen.append(request) or httpx.Response(200, json={}))
    with httpx.Client(transport=transport) as client:
        client.post("https://fn-abc.cn-hangzhou.fcapp.run/process/stop?x=1&a=%E4%BD%A0", json={"session_id": "会话"},
                    auth=AcsSignatureAuth("LTAI-id", "the-secret"))
    request = seen[0]
    authorization = request.headers["authorization"]
    assert authorization.startswith("ACS3-HMAC-SHA256 Credential=LTAI-id,SignedHeaders=")
    signed = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {"host", "content-type", "x-acs-date", "x-acs-content-sha256", "x-acs-signature-nonce"} <= set(signed)
    assert request.headers["x-acs-content-sha256"] == hashlib.sha256(request.content).hexdigest()
    headers = {name: [request.headers[name] if name != "host" else request.url.netloc.decode()] for name in signed}
    from urllib.parse import parse_qsl

    canonical = canonical_request("POST", request.url.raw_path.decode().split("?")[0], parse_qsl(request.url.query.decode()), headers, signed,
                                  request.headers["x-acs-content-sha256"])
    assert authorization.endswith(f"Signature={sign('the-secret', canonical)}")


def test_lambda_function_url_requests_are_signed_with_sigv4():
    from botocore.credentials import Credentials

    from agentpack.deployers.clients.signing import AwsSigV4Auth

    seen: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda request: seen.append(request) or httpx.Response(200))
    with httpx.Client(transport=transport) as client:
        client.post("https://abc.lambda-url.us-east-1.on.aws/process", json={"input": []}, auth=AwsSigV4Auth(Credentials("AKID", "SECRET"), "us-east-1"))
    authorization = seen[0].headers["authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKID/") and "/us-east-1/lambda/aws4_request" in authorization
    assert "x-amz-date" in seen[0].headers


# -- before any call --------------------------------------------------------------------------------------------
@pytest.fixture
def project(tmp_path):
    return copy_project(tmp_path)


SHELL = {"DEPLOYED_SECRET": "v", "REDIS_URL": "redis://10.0.0.1:6379/0"}


def test_the_name_env_and_secrets_of_a_request(project):
    (project / ".env").write_text("DEPLOYED_SECRET='from dotenv'\n")
    request = prepare(project, "fc", DeployOptions(env={"EXTRA": "1"}), shell={"REDIS_URL": "redis://10.0.0.1:6379/0"})
    assert request.name == "deployed" and request.settings.function_name == "deployed"
    assert request.environment == {"DEPLOYED_MODE": "test", "EXTRA": "1", "DEPLOYED_SECRET": "from dotenv", "AGENTPACK_REDIS_URL": "redis://10.0.0.1:6379/0"}
    assert "from dotenv" not in repr(request)
    assert request.warnings == []
    assert prepare(project, "fc", DeployOptions(name="other"), shell=SHELL).name == "other"


def test_no_redis_warns_on_platforms_with_many_instances_only(project):
    config = project / "agentpack.toml"
    config.write_text(config.read_text().replace('redis_url = "${REDIS_URL}"\n', ""))
    assert "several instances" in prepare(project, "fc", shell=SHELL).warnings[0]
    assert "several instances" in prepare(project, "lambda", shell=SHELL).warnings[0]
    assert prepare(project, "local", shell=SHELL).warnings == []


@pytest.mark.parametrize(
    "target, kwargs, says",
    [
        ("fc", {"env": {"AGENTPACK_REDIS_URL": "redis://x"}}, "keep redis_url only"),
        ("lambda", {"env": {"AWS_REGION": "x"}}, "reserved by the platform"),
        ("local", {"allow_anonymous": True}, "no authentication to turn off"),
        ("local", {"name": "a/b"}, "without '/'"),
        ("agentrun", {"settings_overrides": {"memory": 10}}, "between 128 and 32768"),
        ("nowhere", {}, "unknown target"),
    ],
)
def test_bad_requests_are_refused_before_any_call(project, target, kwargs, says):
    with pytest.raises(DeployConfigError, match=says):
        prepare(project, target, DeployOptions(**kwargs), shell=SHELL)


def test_a_chinese_name_is_fine_for_a_local_deployment(project):
    assert prepare(project, "local", DeployOptions(name="智能体"), shell=SHELL).name == "智能体"


# -- the Python managers -------------------------------------------------------------------------------------------
def test_managers_refuse_agentscope_config_objects_and_warn_about_ignored_keywords(tmp_path):
    import asyncio

    from agentpack import FCDeployManager

    with pytest.raises(TypeError, match=r"\[targets.fc\]"):
        FCDeployManager(fc_config=object())
    manager = FCDeployManager(project_dir=tmp_path)  # no agentpack.toml there
    with warnings.catch_warnings(record=True) as caught, pytest.raises(Exception, match="agentpack.toml"):
        warnings.simplefilter("always")
        asyncio.run(manager.deploy(None, requirements=["x"]))
    assert any("has no effect" in str(w.message) for w in caught)
    with pytest.raises(TypeError, match="unexpected keyword"):
        asyncio.run(manager.deploy(None, bogus=1))
    assert asyncio.run(manager.stop("fc:nothing"))["success"] is False


def test_the_project_of_an_app_is_found_from_the_module_that_defines_it(project):
    import importlib.util
    import sys

    from agentpack.deployers.managers import project_of

    spec = importlib.util.spec_from_file_location("deployed_app_for_project_of", project / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        assert project_of(module.app) == project.resolve()
        assert project_of(object()) is None
    finally:
        del sys.modules[spec.name]


def test_cli_usage_errors_exit_2(tmp_path):
    from typer.testing import CliRunner

    from agentpack.cli.main import app

    runner = CliRunner()
    assert runner.invoke(app, ["deploy", str(tmp_path), "--target", "fc", "--wait", "0"]).exit_code == 2
    result = runner.invoke(app, ["deploy", str(tmp_path), "--target", "fc"])
    assert result.exit_code == 2 and "agentpack init" in result.output
    listed = runner.invoke(app, ["list", "--project", str(tmp_path), "--json"])
    assert listed.exit_code == 0 and json.loads(listed.output.splitlines()[-1]) == {"deployments": []}


def test_lambda_takes_its_region_from_aws_region_as_the_aws_cli_does(monkeypatch):
    from agentpack.deployers.platforms.aws_lambda import LambdaDeployer
    from agentpack.targets import get_target

    for variable in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings = get_target("lambda").parse_settings({})
    deployer = LambdaDeployer(settings, environ={"AWS_REGION": "eu-west-1"})
    assert deployer.region == "eu-west-1"
    with pytest.raises(DeployConfigError, match="AWS_REGION"):
        LambdaDeployer(settings, environ={})


def test_polling_waits_with_growing_intervals_up_to_the_deadline_and_reports_the_last_state():
    from agentpack.deployers.clients.alibaba import PollPolicy

    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    poll = PollPolicy(sleep=sleep, clock=lambda: now[0])
    states = iter(["CREATING", "CREATING", "READY"])
    assert poll.until(lambda: next(states), lambda s: s == "READY", 60, lambda s: AssertionError(s)) == "READY"
    assert sleeps == [0.5, 0.75]

    sleeps.clear()
    fetched: list[str] = []
    with pytest.raises(TimeoutError, match="still UPDATING"):
        poll.until(lambda: fetched.append("GET") or "UPDATING", lambda s: False, 3,
                   lambda s: TimeoutError(f"still {s}"), start="CREATING")
    assert sum(sleeps) == pytest.approx(3) and len(fetched) == len(sleeps), "a state in hand is checked before any fetch"

    def failed(state: str) -> bool:
        if state == "FAILED":
            raise RuntimeError("the platform's reason")
        return False

    with pytest.raises(RuntimeError, match="the platform's reason"):
        poll.until(lambda: "FAILED", failed, 60, lambda s: AssertionError(s))


# -- the error tree ---------------------------------------------------------------------------------------------
def test_every_packager_error_is_on_one_of_the_two_branches_and_the_cli_reports_only_those():
    import agentpack
    from agentpack.builders.errors import BuildError, ProjectError
    from agentpack.cli.errors import FlagError, reported
    from agentpack.deployers.clients.alibaba import AlibabaConfigError, CredentialsError, ResourceFailed, WaitTimeout
    from agentpack.deployers.clients.oss import MissingBucket
    from agentpack.deployers.errors import NotOffered, PlatformError
    from agentpack.deployers.local import DeployError
    from agentpack.deployers.state import StateError
    from agentpack.errors import OperationFailed, UserError
    from agentpack.loader import AppLoadError

    for user_error in (ProjectError, AppLoadError, FlagError, StateError, DeployConfigError, NotOffered, AlibabaConfigError,
                       CredentialsError, MissingBucket):
        assert issubclass(user_error, UserError) and not issubclass(user_error, OperationFailed), user_error
        assert reported(user_error("set x")) == (2, "error", {"code": "UserError", "message": "set x"})
    for failure in (BuildError, DeployError, PlatformError, ResourceFailed, WaitTimeout):
        assert issubclass(failure, OperationFailed) and not issubclass(failure, UserError), failure
    refused = PlatformError("AccessDenied", "no", "req-1", 403, "CreateFunction")
    assert reported(refused) == (1, "failed", {"code": "AccessDenied", "message": "no", "request_id": "req-1", "status": 403,
                                               "action": "CreateFunction"})
    assert reported(BuildError("no wheel")) == (1, "build failed", {"code": "BuildFailed", "message": "no wheel"})
    assert reported(ValueError("a bug")) is None and reported(KeyError("a bug")) is None, "a bug is not the user's mistake"
    assert issubclass(DeployError, RuntimeError), "AgentScope Runtime's callers catch RuntimeError"
    assert agentpack.SessionBusy.__module__ == "agentpack.interrupt.base" and agentpack.PlatformError is PlatformError
    assert {"SessionBusy", "BackendUnavailable", "DeployConfigError", "PlatformError", "DeployError", "UserError",
            "OperationFailed", "AgentpackError"} <= set(agentpack.__all__)


def test_a_bug_in_a_deploy_command_is_not_reported_as_the_users_mistake(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from agentpack.cli.main import app
    from agentpack.deployers import service

    def broken(*args, **kwargs):
        raise ValueError("a bug inside agentpack")

    monkeypatch.setattr(service, "deploy", broken)
    result = CliRunner().invoke(app, ["deploy", str(tmp_path), "--target", "local"])
    assert result.exit_code != 2 and isinstance(result.exception, ValueError)
    refused = CliRunner().invoke(app, ["deploy", str(tmp_path), "--target", "local", "--env", "NOEQUALS"])
    assert refused.exit_code == 2 and "write KEY=VALUE" in refused.output


def test_one_options_object_carries_a_deploy_from_the_managers_to_the_request(tmp_path, monkeypatch):
    import asyncio

    from agentpack import FCDeployManager
    from agentpack.deployers import service

    seen = []

    def deploy(project, target, options, **kwargs):
        seen.append(options)
        raise DeployConfigError("stop here")

    monkeypatch.setattr(service, "deploy", deploy)
    manager = FCDeployManager(project_dir=tmp_path, name="agent", memory=1024, wait_seconds=60)
    with pytest.raises(DeployConfigError, match="stop here"):
        asyncio.run(manager.deploy(None, environment={"K": "v"}))
    assert seen == [DeployOptions(name="agent", env={"K": "v"}, settings_overrides={"memory": 1024}, wait_seconds=60)]
