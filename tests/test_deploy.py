"""``agentpack deploy`` end to end, through the command line, for every target.

The control planes are loopback stand-ins driven by the real SDKs (FC, AgentRun: tests/standins,
which check paths, bodies, limits and the ACS3 signature) and moto's server driven by boto3
(Lambda).  What they receive is run as the platform would: the stand-ins' code hook starts the
uploaded zip under ``agentpack emulate`` with two instances, whose interrupt backend is a real
redis-server named by ``redis_url = "${REDIS_URL}"``; for Lambda (moto runs no code) the zip
behind the alias is taken from moto and emulated the same way.  Local deployments are real
detached processes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

from tests.support import CLI, Emulations, cli_env, copy_project, free_port, refused, set_version, wait_until, http
from tests.standins import TEST_ACCESS_KEY_ID, TEST_ACCESS_KEY_SECRET, AgentRunStandIn, FCStandIn

pytestmark = pytest.mark.integration

SECRET = "s3cret-value-不可外泄"
ALIBABA_KEYS = {"ALIBABA_CLOUD_ACCESS_KEY_ID": TEST_ACCESS_KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": TEST_ACCESS_KEY_SECRET}
AWS_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true"}
FC_WRITES = {"CreateFunction", "UpdateFunction", "PublishFunctionVersion", "CreateAlias", "UpdateAlias", "CreateTrigger", "UpdateTrigger"}
AGENTRUN_WRITES = {"CreateAgentRuntime", "UpdateAgentRuntime", "PublishRuntimeVersion", "CreateAgentRuntimeEndpoint", "UpdateAgentRuntimeEndpoint"}


@dataclass
class Platform:
    """One target's control plane for a test, and how to reach what it serves."""

    target: str
    env: dict[str, str]
    #: the NAME or URL ``agentpack invoke`` / ``stop`` get for the deployment's current version
    invoke_target: Callable[[], str]
    #: requests that changed something on the control plane so far (method and path / action)
    writes: Callable[[], list[str]]
    exists: Callable[[], bool]
    uploads: Callable[[], int]
    extra: dict[str, Any] = field(default_factory=dict)


# -- the platforms ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def fc_platform(tmp: Path, redis_url: str) -> Iterator[Platform]:
    emulations = Emulations("fc", tmp / "emulations-fc")
    emulations.scratch.mkdir()
    standin = FCStandIn(on_code=emulations.hook).start()
    env = cli_env(**ALIBABA_KEYS, AGENTPACK_FC_ENDPOINT=f"http://{standin.endpoint}", REDIS_URL=redis_url, DEPLOYED_SECRET=SECRET, HOME=str(tmp))
    try:
        yield Platform(
            "fc", env, lambda: "deployed",
            writes=lambda: [c.action for c in standin.calls if c.action in FC_WRITES and c.status < 300],
            exists=lambda: "deployed" in standin.functions,
            uploads=lambda: sum(1 for c in standin.calls if c.action in ("CreateFunction", "UpdateFunction") and c.status < 300 and "code" in (c.json or {})),
            extra={"standin": standin, "emulations": emulations},
        )
    finally:
        standin.stop()
        emulations.close()


@contextlib.contextmanager
def agentrun_platform(tmp: Path, redis_url: str) -> Iterator[Platform]:
    emulations = Emulations("agentrun", tmp / "emulations-agentrun")
    emulations.scratch.mkdir()
    standin = AgentRunStandIn(on_code=emulations.hook, ready_after_polls=2).start()
    env = cli_env(**ALIBABA_KEYS, AGENTPACK_AGENTRUN_ENDPOINT=f"http://{standin.endpoint}", REDIS_URL=redis_url, DEPLOYED_SECRET=SECRET,
                  HOME=str(tmp))
    try:
        yield Platform(
            "agentrun", env, lambda: "deployed",
            writes=lambda: [c.action for c in standin.calls if c.action in AGENTRUN_WRITES and c.status < 300],
            exists=lambda: standin.by_name("deployed") is not None,
            uploads=lambda: sum(1 for c in standin.calls if c.action in ("CreateAgentRuntime", "UpdateAgentRuntime") and c.status < 300
                                and "zipFile" in ((c.json or {}).get("codeConfiguration") or {})),
            extra={"standin": standin, "emulations": emulations},
        )
    finally:
        standin.stop()
        emulations.close()


class RecordingMoto:
    """moto's server (all services on one port) behind a WSGI layer that logs every request."""

    def __init__(self) -> None:
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.requests: list[tuple[str, str, int]] = []
        moto_app = DomainDispatcherApplication(create_backend_app)

        def app(environ: dict, start_response: Callable) -> Any:
            seen: dict[str, int] = {}

            def recording_start(status: str, headers: list, *args: Any) -> Any:
                seen["status"] = int(status.split()[0])
                return start_response(status, headers, *args)

            body = moto_app(environ, recording_start)
            self.requests.append((environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), seen.get("status", 0)))
            return body

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)


@contextlib.contextmanager
def lambda_platform(tmp: Path, redis_url: str) -> Iterator[Platform]:
    import boto3
    from moto.awslambda.models import lambda_backends
    from moto.core import DEFAULT_ACCOUNT_ID

    moto = RecordingMoto()
    http.post(f"{moto.url}/moto-api/reset", timeout=30).raise_for_status()  # moto's backends live in this process
    client_options = {"endpoint_url": moto.url, "region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    boto3.client("iam", **client_options).create_role(RoleName="agentpack-tests", AssumeRolePolicyDocument=json.dumps(trust))
    lam = boto3.client("lambda", **client_options)
    emulations = Emulations("lambda", tmp / "emulations-lambda")
    emulations.scratch.mkdir()
    env = cli_env(**AWS_KEYS, AGENTPACK_LAMBDA_ENDPOINT=moto.url, AWS_ENDPOINT_URL_CLOUDWATCH_LOGS=moto.url, REDIS_URL=redis_url,
                  DEPLOYED_SECRET=SECRET, HOME=str(tmp))

    def serving() -> str:
        """moto runs no code: emulate the zip and environment the alias ``live`` resolves to."""
        version = lam.get_alias(FunctionName="deployed", Name="live")["FunctionVersion"]
        config = lam.get_function_configuration(FunctionName="deployed", Qualifier=version)
        code = lambda_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_function("deployed", version).code_bytes
        return emulations.serve(code, config["Environment"]["Variables"], float(config["Timeout"]))

    def writes() -> list[str]:
        return [f"{method} {path}" for method, path, status in moto.requests if method != "GET" and status < 300 and "/functions" in path]

    def exists() -> bool:
        try:
            lam.get_function(FunctionName="deployed")
            return True
        except lam.exceptions.ResourceNotFoundException:
            return False

    try:
        yield Platform(
            "lambda", env, serving, writes, exists,
            uploads=lambda: sum(1 for method, path, status in moto.requests if status < 300 and (
                (method == "POST" and path.endswith("/functions")) or (method == "PUT" and path.endswith("/code")))),
            extra={"moto": moto, "lambda": lam, "emulations": emulations, "logs": boto3.client("logs", **client_options)},
        )
    finally:
        emulations.close()
        moto.stop()


@contextlib.contextmanager
def local_platform(tmp: Path, redis_url: str) -> Iterator[Platform]:
    env = cli_env(DEPLOYED_SECRET=SECRET, REDIS_URL=redis_url)
    project_holder: dict[str, Path] = {}

    def record() -> Optional[dict]:
        state = project_holder["project"] / ".agentpack" / "deployments.json"
        if not state.exists():
            return None
        return json.loads(state.read_text())["deployments"].get("local/deployed")

    def pid_alive() -> bool:
        found = record()
        return bool(found) and Path(f"/proc/{found['resource']['pid']}").exists()

    platform = Platform(
        "local", env, lambda: "deployed",
        writes=lambda: [str((record() or {}).get("resource", {}).get("pid"))],
        exists=pid_alive,
        uploads=lambda: len(list((project_holder["project"] / ".agentpack" / "local" / "deployed" / "versions").glob("*"))),
        extra={"project": project_holder},
    )
    try:
        yield platform
    finally:
        found = record() if "project" in project_holder else None
        if found and pid_alive():  # a failed test must not leave the process behind
            import os
            import signal

            os.killpg(int(found["resource"]["pid"]), signal.SIGKILL)


PLATFORMS = {"fc": fc_platform, "agentrun": agentrun_platform, "lambda": lambda_platform, "local": local_platform}


# -- helpers ------------------------------------------------------------------------------------------------
class Reader(threading.Thread):
    """Collects a process's stdout as it arrives (to tell a stream from a buffered reply)."""

    def __init__(self, process: subprocess.Popen) -> None:
        super().__init__(daemon=True)
        self.process = process
        self.text = ""
        self.start()

    def run(self) -> None:
        assert self.process.stdout is not None
        for chunk in iter(lambda: self.process.stdout.read(1), ""):
            self.text += chunk


def invoke_text(cli: CLI, where: str, text: str) -> str:
    done = cli.run("invoke", where, text)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def instances_of_last_run_and_stop(lines: list[str]) -> tuple[str, str]:
    """Which emulated instance logged the last ``POST /process/stop`` and the run before it."""
    import re

    def instance(line: str) -> str:
        found = re.match(r"\[instance (\d+)\]", line)
        assert found, line
        return found.group(1)

    stop = max(i for i, line in enumerate(lines) if '"POST /process/stop HTTP' in line)
    run = max(i for i, line in enumerate(lines[:stop]) if '"POST /process HTTP' in line)
    return instance(lines[run]), instance(lines[stop])


def whoami(cli: CLI, where: str, tries: int = 12) -> list[dict]:
    url = where if where.startswith("http") else cli.json("status", where)["deployment"]["url"]
    return [http.get(f"{url}/whoami", timeout=30).json() for _ in range(tries)]


# -- the lifecycle ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", list(PLATFORMS))
def test_the_whole_lifecycle_through_the_command_line(target, tmp_path, redis_server):
    with PLATFORMS[target](tmp_path, redis_server.url) as platform:
        project = copy_project(tmp_path)
        platform.extra.setdefault("project", {})["project"] = project
        if target == "local":  # not the default 8090: this machine is shared
            config = project / "agentpack.toml"
            config.write_text(config.read_text().replace("[targets.local]\n", f"[targets.local]\nport = {free_port()}\n"))
        cli = CLI(project, platform.env)

        # deploy: a URL, the environment masked, nothing secret printed or stored
        done = cli.run("deploy", "--target", target, "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        first = json.loads(done.stdout.splitlines()[-1])
        assert first["action"] == "created" and first["uploaded"] and first["url"].startswith(("http://", "https://"))
        assert first["deploy_id"] == f"{target}:deployed"
        assert first["env"]["DEPLOYED_SECRET"] == "***" and set(first["env"].values()) == {"***"}
        state_text = (project / ".agentpack" / "deployments.json").read_text()
        for secret in (SECRET, redis_server.url):
            assert secret not in done.stdout + done.stderr and secret not in state_text
        if target != "local":
            assert "warning" not in done.stderr, "redis_url is set: no warning about stops across instances"

        # list and status (status asks the platform)
        listed = cli.json("list")["deployments"]
        assert [(d["name"], d["target"], d["url"], d["version"]) for d in listed] == [("deployed", target, first["url"], first["version"])]
        status = cli.json("status", "deployed")
        assert status["platform"]["exists"] is True and str(status["platform"]["version"]) == str(first["version"]) and status["drift"] == []
        assert status["platform"].get("env", {}).get("DEPLOYED_SECRET", "***") == "***"

        # logs, where the platform keeps them
        if target == "local":
            assert "GET /readiness" in cli.run("logs", "deployed").stdout
        elif target == "lambda":
            logs = platform.extra["logs"]
            logs.create_log_group(logGroupName="/aws/lambda/deployed")
            logs.create_log_stream(logGroupName="/aws/lambda/deployed", logStreamName="2026/01/01/[1]abc")
            now_ms = int(__import__("time").time() * 1000)
            logs.put_log_events(logGroupName="/aws/lambda/deployed", logStreamName="2026/01/01/[1]abc",
                                logEvents=[{"timestamp": now_ms, "message": "START RequestId: 1"}, {"timestamp": now_ms + 1, "message": "答案 END"}])
            assert cli.run("logs", "deployed").stdout.splitlines() == ["START RequestId: 1", "答案 END"]

        # invoke streams: the first numbers are on the terminal while the run is still going
        where = platform.invoke_target()
        running = cli.popen("invoke", where, "count 25", "--session", "s-0")
        reader = Reader(running)
        wait_until(lambda: "3 " in reader.text and running.poll() is None or running.poll() is not None, 120, lambda: reader.text)
        assert running.poll() is None, f"the reply arrived only at the end:\n{reader.text}"
        assert running.wait(timeout=120) == 0
        reader.join(timeout=10)
        assert "24 " in reader.text

        # the instances share Redis, so a stop reaches the run wherever it is
        if target != "local":
            seen = whoami(cli, where)
            assert len({s["pid"] for s in seen}) == 2, "two instances serve the deployment"
            assert all(s["backend"].startswith("Redis at 127.0.0.1") and s["secret_is_set"] for s in seen)
        long = cli.popen("invoke", where, "count 300", "--session", "会话-1", "--user", "用户-1")
        long_reader = Reader(long)
        wait_until(lambda: "3 " in long_reader.text or long.poll() is not None, 120, lambda: long_reader.text)
        stopped = cli.json("stop", where, "--session", "会话-1", "--user", "用户-1")
        assert stopped["stopped"] is True
        assert long.wait(timeout=60) == 1  # the reply ended canceled
        long_reader.join(timeout=10)
        assert "response canceled" in long_reader.text and "299" not in long_reader.text
        # ... also when the stop carries no session header (curl from another shell): FC's affinity
        # cannot route it, so it lands on the other instance, the one not busy with the run
        base = where if where.startswith("http") else first["url"]
        other = cli.popen("invoke", where, "count 300", "--session", "s-2")
        other_reader = Reader(other)
        wait_until(lambda: "3 " in other_reader.text or other.poll() is not None, 120, lambda: other_reader.text)
        answer = http.post(f"{base}/process/stop", json={"session_id": "s-2"}, timeout=30)
        assert answer.json()["stopped"] is True
        assert other.wait(timeout=60) == 1
        other_reader.join(timeout=10)
        assert "response canceled" in other_reader.text
        if target in ("fc", "agentrun"):  # the instances' access logs say who ran it and who got the stop
            ran, stopped_by = instances_of_last_run_and_stop(platform.extra["emulations"].lines)
            assert ran != stopped_by, "the stop reached the run from the other instance, through Redis"

        # redeploy unchanged: nothing uploaded, nothing changed on the platform
        writes, uploads = platform.writes(), platform.uploads()
        again = cli.json("deploy", "--target", target)
        assert again["action"] == "unchanged" and again["uploaded"] is False and again["version"] == first["version"]
        assert platform.writes() == writes and platform.uploads() == uploads

        # a code change: uploaded, a new version answers
        set_version(project, "v2")
        second = cli.json("deploy", "--target", target)
        assert second["action"] == "updated" and second["uploaded"] is True
        assert second["version"] != first["version"] and second["previous_version"] == first["version"]
        assert platform.uploads() == uploads + 1
        assert "v2: hello world" in invoke_text(cli, platform.invoke_target(), "hello world")

        # rollback: the previous version answers again, nothing uploaded
        back = cli.json("rollback", "deployed")
        assert back["version"] == first["version"] and back["previous_version"] == second["version"]
        assert platform.uploads() == uploads + 1
        assert "v1: hello world" in invoke_text(cli, platform.invoke_target(), "hello world")
        assert str(cli.json("status", "deployed")["platform"]["version"]) == str(first["version"])

        # destroy: gone from the platform and from the state
        gone = cli.json("destroy", "deployed", "--yes")
        assert gone["destroyed"] is True and not platform.exists()
        assert cli.json("list")["deployments"] == []


# -- refusals before anything is uploaded ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "target, variables, says",
    [
        ("fc", list(ALIBABA_KEYS), "ALIBABA_CLOUD_ACCESS_KEY_ID"),
        ("agentrun", list(ALIBABA_KEYS), "ALIBABA_CLOUD_ACCESS_KEY_ID"),
        ("lambda", list(AWS_KEYS)[:2], "AWS_ACCESS_KEY_ID"),
    ],
)
def test_missing_credentials_name_what_to_set_before_building(target, variables, says, tmp_path):
    project = copy_project(tmp_path)
    extra = {"AGENTPACK_FC_ENDPOINT": "http://127.0.0.1:9", "AGENTPACK_AGENTRUN_ENDPOINT": "http://127.0.0.1:9",
             "AGENTPACK_LAMBDA_ENDPOINT": "http://127.0.0.1:9", "AWS_EC2_METADATA_DISABLED": "true"}
    env = cli_env(**extra, DEPLOYED_SECRET=SECRET, REDIS_URL="redis://127.0.0.1:1/0", HOME=str(tmp_path))
    for variable in variables:
        env.pop(variable, None)
    done = CLI(project, env).run("deploy", "--target", target)
    refused(done, 2, says)
    assert not (project / "dist").exists(), "refused before the build"
    assert not (project / ".agentpack" / "deployments.json").exists()


@pytest.mark.parametrize("target, sdk", [("fc", "alibabacloud_fc20230330"), ("agentrun", "alibabacloud_agentrun20250910"),
                                         ("lambda", "boto3")])
def test_a_missing_cloud_sdk_names_the_extra_to_install(target, sdk, tmp_path):
    """The SDKs are extras: a plain ``pip install agentpack`` deploys nowhere but local, and says so."""
    project = copy_project(tmp_path)
    hide = tmp_path / "hide-sdk"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(f"import sys\nsys.modules[{sdk!r}] = None  # as if not installed\n")
    env = cli_env(**ALIBABA_KEYS, **AWS_KEYS, AWS_DEFAULT_REGION="us-east-1", DEPLOYED_SECRET=SECRET, REDIS_URL="redis://127.0.0.1:1/0",
                  HOME=str(tmp_path), PYTHONPATH=str(hide))
    done = CLI(project, env).run("deploy", "--target", target)
    refused(done, 2, sdk, f"pip install 'agentpack[{target}]'")
    assert not (project / ".agentpack" / "deployments.json").exists()


@pytest.fixture
def fc(tmp_path):
    standin = FCStandIn().start()
    project = copy_project(tmp_path)
    env = cli_env(**ALIBABA_KEYS, AGENTPACK_FC_ENDPOINT=f"http://{standin.endpoint}", DEPLOYED_SECRET=SECRET, REDIS_URL="redis://127.0.0.1:1/0",
                  HOME=str(tmp_path))
    yield standin, CLI(project, env), project
    standin.stop()


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--env", "1BAD=x"], "'1BAD' is not a valid variable name on fc"),
        (["--env", "FC_REGION=x"], "names starting with FC_ are reserved"),
        (["--env", "NOEQUALS"], "write KEY=VALUE"),
        (["--env", f"BIG={'x' * 4100}"], "over the platform's 4 KB"),
        (["--name", "智能体"], "--name 智能体: must be 1-64 letters, digits"),
    ],
)
def test_bad_input_is_refused_with_the_fix_and_no_platform_call(fc, flags, says):
    standin, cli, _ = fc
    refused(cli.run("deploy", "--target", "fc", *flags), 2, says)
    assert standin.calls == []


def test_a_secret_without_a_value_is_refused(fc):
    standin, cli, _ = fc
    env = {k: v for k, v in cli.env.items() if k != "DEPLOYED_SECRET"}
    refused(cli.run("deploy", "--target", "fc", env=env), 2, "DEPLOYED_SECRET has no value; set it in the shell or in .env")
    assert standin.calls == []


def test_the_environment_over_4_kb_with_secrets_is_refused(fc):
    standin, cli, _ = fc
    env = {**cli.env, "DEPLOYED_SECRET": "s" * 4000}  # env alone is small: only the secret's value tips it over
    refused(cli.run("deploy", "--target", "fc", env=env), 2, "over the platform's 4 KB")
    assert standin.calls == []


def test_platform_errors_show_code_message_and_request_id(fc):
    standin, cli, project = fc
    standin.fail_next("CreateFunction", status=403, code="AccessDenied", message="the RAM user may not create functions")
    done = cli.run("deploy", "--target", "fc", "--json")
    stderr = refused(done, 1, "AccessDenied", "the RAM user may not create functions", "request id")
    request_id = standin.calls_of("CreateFunction")[-1].request_id
    assert request_id in stderr
    assert json.loads(done.stdout.splitlines()[-1])["error"]["request_id"] == request_id
    assert not (project / ".agentpack" / "deployments.json").exists()


def test_a_5xx_once_and_throttling_are_retried(fc):
    standin, cli, _ = fc
    standin.fail_next("CreateFunction", status=503)
    standin.throttle_next("PublishFunctionVersion", retry_after=10)
    result = cli.json("deploy", "--target", "fc")
    assert result["action"] == "created"
    assert [c.status for c in standin.calls_of("CreateFunction")] == [503, 200]


def test_a_create_that_took_effect_before_its_5xx_is_updated_on_the_retry(fc):
    """A gateway may answer 5xx for a call the platform went on to apply: the retry then meets
    "already exists" (409), and the deploy updates the function it made instead of failing."""
    standin, cli, _ = fc
    standin.fail_after_next("CreateFunction")
    assert cli.json("deploy", "--target", "fc")["action"] == "created"
    assert [c.status for c in standin.calls_of("CreateFunction")] == [503, 409]
    assert [c.status for c in standin.calls_of("UpdateFunction")] == [200]


def test_a_failed_trigger_fails_the_deploy(fc):
    standin, cli, project = fc
    standin.fail_next("CreateTrigger", status=400, code="InvalidArgument", message="triggerConfig refused")
    refused(cli.run("deploy", "--target", "fc"), 1, "CreateTrigger failed", "triggerConfig refused")
    assert not (project / ".agentpack" / "deployments.json").exists()


def test_no_redis_url_warns_at_deploy_and_in_the_apps_start_up_log(tmp_path):
    emulations = Emulations("fc", tmp_path / "emulations", instances=2)  # a platform runs several
    emulations.scratch.mkdir()
    standin = FCStandIn(on_code=emulations.hook).start()
    try:
        project = copy_project(tmp_path)
        config = project / "agentpack.toml"
        config.write_text(config.read_text().replace('redis_url = "${REDIS_URL}"\n', "", 1))
        env = cli_env(**ALIBABA_KEYS, AGENTPACK_FC_ENDPOINT=f"http://{standin.endpoint}", DEPLOYED_SECRET=SECRET, HOME=str(tmp_path))
        done = CLI(project, env).run("deploy", "--target", "fc")
        assert done.returncode == 0, done.stderr
        assert "several instances" in done.stderr and "redis_url" in done.stderr
        assert any("will not cross instances" in line for line in emulations.lines), "\n".join(emulations.lines)
    finally:
        standin.stop()
        emulations.close()


@pytest.fixture
def agentrun(tmp_path):
    standin = AgentRunStandIn(ready_after_polls=1).start()
    project = copy_project(tmp_path)
    env = cli_env(**ALIBABA_KEYS, AGENTPACK_AGENTRUN_ENDPOINT=f"http://{standin.endpoint}", DEPLOYED_SECRET=SECRET,
                  REDIS_URL="redis://127.0.0.1:1/0", HOME=str(tmp_path))
    yield standin, CLI(project, env), project
    standin.stop()


def test_a_failed_runtime_ends_the_deploy_with_the_platforms_reason(agentrun):
    standin, cli, project = agentrun
    standin.fail_next_deploy("bootstrap exited with code 1: ModuleNotFoundError: No module named 'yaml'")
    done = cli.run("deploy", "--target", "agentrun", "--json")
    refused(done, 1, "FAILED", "No module named 'yaml'")
    assert json.loads(done.stdout.splitlines()[-1])["error"]["code"] == "FAILED"
    assert "PublishRuntimeVersion" not in standin.actions()
    # the FAILED runtime exists (and is billed): it is recorded, so status and destroy can see it
    assert json.loads(cli.run("status", "deployed", "--json").stdout)["platform"]["state"] == "FAILED"
    # the next deploy updates the failed runtime in place (by name), no second runtime
    assert cli.json("deploy", "--target", "agentrun")["action"] == "updated"
    assert len(standin.runtimes) == 1


def test_agentrun_calls_that_took_effect_before_their_5xx_are_met_on_the_retry(agentrun):
    """The retried create finds the runtime it made ("already exists") and updates it; the
    retried update finds the runtime UPDATING with its own change, waits for it and sends it again."""
    standin, cli, _ = agentrun
    standin.fail_after_next("CreateAgentRuntime")
    first = cli.json("deploy", "--target", "agentrun")
    assert first["action"] == "created"
    assert [c.status for c in standin.calls_of("CreateAgentRuntime")] == [503, 409]
    standin.fail_after_next("UpdateAgentRuntime")
    again = cli.json("deploy", "--target", "agentrun", "--env", "CHANGED=1")
    assert again["action"] in ("updated", "configured") and again["url"] == first["url"]
    assert [c.status for c in standin.calls_of("UpdateAgentRuntime")][-3:] == [503, 409, 200]
    assert json.loads(cli.run("status", "deployed", "--json").stdout)["platform"]["state"] == "READY"


def test_a_runtime_that_never_gets_ready_times_out_at_the_deadline(agentrun):
    standin, cli, _ = agentrun
    standin.hang_next_deploy()
    refused(cli.run("deploy", "--target", "agentrun", "--wait", "2"), 1, "Timeout", "still CREATING after 2 s")
    polls = standin.calls_of("GetAgentRuntime")
    assert 2 <= len(polls) < 20, "polled with a growing interval, not in a tight loop"


def test_commands_on_an_unknown_deployment_say_what_exists(fc):
    _, cli, _ = fc
    refused(cli.run("status", "nope"), 2, "no deployment named 'nope'")
    refused(cli.run("rollback", "nope"), 2, "no deployment named 'nope'")


def test_rollback_with_nothing_before_and_logs_where_there_are_none(fc):
    standin, cli, _ = fc
    cli.json("deploy", "--target", "fc")
    refused(cli.run("rollback", "deployed"), 2, "nothing to roll back to")
    refused(cli.run("logs", "deployed"), 2, "Simple Log Service")
    refused(cli.run("stop", "deployed"), 2, "give --session")


# -- the Python API ---------------------------------------------------------------------------------------------------
def _import_app(project: Path, module_name: str):
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(module_name, project / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("target", ["fc", "lambda"])
def test_app_deploy_with_a_manager_returns_the_deploy_id_and_a_url_that_answers(target, tmp_path, redis_server, monkeypatch):
    import asyncio
    import sys

    from agentpack import FCDeployManager, LambdaDeployManager

    with PLATFORMS[target](tmp_path, redis_server.url) as platform:
        for key, value in platform.env.items():
            monkeypatch.setenv(key, value)
        for key in [k for k in list(__import__("os").environ) if k.startswith(("ALIBABA_CLOUD_", "AWS_")) and k not in platform.env]:
            monkeypatch.delenv(key)
        project = copy_project(tmp_path)
        module = _import_app(project, f"deployed_app_{target}")
        try:
            manager = (FCDeployManager if target == "fc" else LambdaDeployManager)(memory=1024)  # project found from the app's module
            result = asyncio.run(module.app.deploy(manager))
            assert result["deploy_id"] == f"{target}:deployed" and result["success"] is True and result["action"] == "created"
            assert result["url"] and result["env"]["DEPLOYED_SECRET"] == "***"
            url = result["url"] if target == "fc" else platform.invoke_target()
            events = [json.loads(line[6:]) for line in http.post(f"{url}/process", json={"input": [{"role": "user", "content": [
                {"type": "text", "text": "hi"}]}]}, timeout=60).text.splitlines() if line.startswith("data: ")]
            assert events[-1]["status"] == "completed"
            assert asyncio.run(manager.deploy(module.app))["action"] == "unchanged"
            assert (asyncio.run(manager.status()))["platform"]["memory"] == 1024
            stopped = asyncio.run(manager.stop(result["deploy_id"]))
            assert stopped["success"] is True and not platform.exists()
            assert asyncio.run(manager.stop(result["deploy_id"]))["success"] is False
        finally:
            del sys.modules[f"deployed_app_{target}"]


def test_changes_made_in_the_console_show_as_drift_and_the_next_deploy_repairs_them(fc):
    from agentpack.deployers.clients.fc import FCApi

    standin, cli, project = fc
    first = cli.json("deploy", "--target", "fc")
    set_version(project, "v2")
    cli.json("deploy", "--target", "fc")
    api = FCApi(endpoint=f"http://{standin.endpoint}", environ={**ALIBABA_KEYS})
    api.ensure_alias("deployed", "live", first["version"])  # someone moved the alias in the console
    assert cli.json("status", "deployed")["drift"] == [f"serves version {first['version']}, agentpack deployed 2"]
    repaired = cli.json("deploy", "--target", "fc")
    assert repaired["action"] == "republished" and repaired["version"] == "2" and repaired["uploaded"] is False
    api.delete_function("deployed")  # ... or deleted the function
    missing = cli.json("status", "deployed", expect=1)
    assert missing["platform"]["exists"] is False and "does not exist" in missing["drift"][0]
    recreated = cli.json("deploy", "--target", "fc")
    assert recreated["action"] == "created" and recreated["uploaded"] is True and "deployed" in standin.functions
    assert [r["version"] for r in cli.json("list")["deployments"][0]["releases"]] == [recreated["version"]]


def test_a_deployment_does_not_silently_move_to_another_region(fc):
    _, cli, project = fc
    cli.json("deploy", "--target", "fc")
    config = project / "agentpack.toml"
    config.write_text(config.read_text().replace('region = "cn-hangzhou"', 'region = "cn-shanghai"', 1))
    refused(cli.run("deploy", "--target", "fc"), 2, "is deployed in cn-hangzhou, not cn-shanghai")
