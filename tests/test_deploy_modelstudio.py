"""``--target modelstudio`` end to end: the real Bailian SDK against tests/standins/modelstudio.py.

The stand-in checks each request as the SDK builds it and the gateway checks it (signature,
version, action, payload hash), serves the lease's upload URL, publishes slowly (404 until a
few polls) and starts the uploaded wheel under ``agentpack emulate --target modelstudio``, so
the deployment answers for real through the stand-in's data plane (bearer key checked).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from agentpack.targets import MODELSTUDIO_WHEEL
from tests.standins import TEST_ACCESS_KEY_ID, TEST_ACCESS_KEY_SECRET
from tests.standins.modelstudio import TEST_API_KEY, ModelStudioStandIn
from tests.support import CLI, Emulations, cli_env, copy_project, refused, set_version, wait_until

pytestmark = pytest.mark.integration

ALIBABA_KEYS = {"ALIBABA_CLOUD_ACCESS_KEY_ID": TEST_ACCESS_KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": TEST_ACCESS_KEY_SECRET}
SECRET = "s3cret-value-never-in-the-wheel"
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


CONFIG = """
[targets.modelstudio]
description = "agentpack's test agent"
"""


@pytest.fixture
def modelstudio(tmp_path):
    emulations = Emulations("modelstudio", tmp_path / "emulations", instances=1)
    emulations.scratch.mkdir()
    standin = ModelStudioStandIn(on_code=emulations.hook, publish_after_polls=2).start()
    project = copy_project(tmp_path)
    (project / "agentpack.toml").write_text((project / "agentpack.toml").read_text() + CONFIG)
    env = cli_env(**ALIBABA_KEYS, AGENTPACK_MODELSTUDIO_ENDPOINT=f"http://{standin.endpoint}",
                  MODELSTUDIO_WORKSPACE_ID=standin.workspace, AGENTPACK_MODELSTUDIO_INVOKE_URL=standin.data_plane,
                  DASHSCOPE_API_KEY=TEST_API_KEY, DEPLOYED_SECRET=SECRET, HOME=str(tmp_path))
    yield standin, CLI(project, env), project, emulations
    standin.stop()
    emulations.close()


def test_the_lifecycle_through_the_command_line(modelstudio):
    standin, cli, project, _emulations = modelstudio

    # deploy: lease, upload with the lease's headers, HighCodeDeploy, a slow publish waited out
    first = cli.json("deploy", "--target", "modelstudio")
    agent = standin.by_name("deployed")
    assert agent is not None and first["action"] == "created" and first["uploaded"]
    assert first["url"] == standin.data_plane.format(agent_id=agent.code) and first["auth"] == "bearer"
    assert standin.actions()[:4] == ["ListPublishedAgent", "ApplyTempStorageLease", "Upload", "HighCodeDeploy"]
    assert standin.actions().count("GetPublishedAgent") >= 3, "polled through the slow publish"
    deploy_call = standin.calls_of("HighCodeDeploy")[0]
    assert deploy_call.path == f"/openapi/{standin.workspace}/highCode/publish"
    assert deploy_call.json == {"agentName": "deployed", "agentDesc": "agentpack's test agent", "sourceCodeName": MODELSTUDIO_WHEEL,
                                "sourceCodeOssUrl": standin.uploads[0][0], "telemetryEnabled": False}
    assert agent.file_name == MODELSTUDIO_WHEEL and agent.description == "agentpack's test agent"
    lease_form = standin.calls_of("ApplyTempStorageLease")[0]
    assert lease_form.path == f"/{standin.workspace}/datacenter" and b"FileName=" + MODELSTUDIO_WHEEL.encode() in lease_form.body
    state = (project / ".agentpack" / "deployments.json").read_text()
    assert SECRET not in state and agent.code in state

    # redeploy unchanged (right away: agentpack's own files are packed, and this tree may be edited meanwhile): no lease, no upload, no deploy
    before = len(standin.calls)
    again = cli.json("deploy", "--target", "modelstudio")
    assert again["action"] == "unchanged" and not again["uploaded"]
    assert not {c.action for c in standin.calls[before:]} & {"ApplyTempStorageLease", "Upload", "HighCodeDeploy"}

    # the deployment answers for real: the uploaded wheel runs under the emulator, reached with the key
    reply = cli.run("invoke", "deployed", "count 3")
    assert reply.returncode == 0, reply.stdout + reply.stderr
    assert "2 " in reply.stdout
    assert any(line.startswith("POST /process") for line in standin.relayed)
    no_key = {k: v for k, v in cli.env.items() if k != "DASHSCOPE_API_KEY"}
    refused(cli.run("invoke", "deployed", "hi", env=no_key), 2, "DASHSCOPE_API_KEY")

    # a stop through the platform's URL reaches the run (streamed through the relay as it goes)
    long = cli.popen("invoke", "deployed", "count 300", "--session", "s-1")
    reader = Reader(long)
    wait_until(lambda: "3 " in reader.text or long.poll() is not None, 120, lambda: reader.text)
    assert long.poll() is None, f"the reply arrived only at the end:\n{reader.text}"
    assert cli.json("stop", "deployed", "--session", "s-1")["stopped"] is True
    assert long.wait(timeout=60) == 1
    reader.join(timeout=10)
    assert "response canceled" in reader.text and "299" not in reader.text

    # list and status
    listed = cli.json("list")["deployments"]
    assert [(d["name"], d["target"], d["url"]) for d in listed] == [("deployed", "modelstudio", first["url"])]
    status = cli.json("status", "deployed")
    assert status["platform"]["exists"] is True and status["platform"]["agent_id"] == agent.code

    # a code change updates the same agent (agentId sent), no second agent
    set_version(project, "2")
    second = cli.json("deploy", "--target", "modelstudio")
    assert second["action"] == "updated" and second["uploaded"]
    assert standin.calls_of("HighCodeDeploy")[-1].json["agentId"] == agent.code
    assert len(standin.agents) == 1 and agent.deploys == 2

    # rollback and logs are not offered, and say so
    refused(cli.run("rollback", "deployed"), 2, "keeps no versions")
    refused(cli.run("logs", "deployed"), 2, "console")

    # destroy removes the agent; a second destroy finds nothing
    gone = cli.json("destroy", "deployed", "--yes")
    assert standin.agents == {} and gone
    assert "DeleteAgent" in standin.actions()


def test_the_artifact_is_a_wheel_pip_installs_and_the_starter_serves(tmp_path):
    """What the platform does with the upload (install, then deploy_starter/main.py), with the real pip."""
    project = copy_project(tmp_path)
    cli = CLI(project, cli_env())
    built = cli.json("build", "--target", "modelstudio")
    wheel = tmp_path / MODELSTUDIO_WHEEL
    wheel.write_bytes(Path(built["artifact"]).read_bytes())
    names = zipfile.ZipFile(wheel).namelist()
    assert "deploy_starter/main.py" in names and not any(n.startswith(".env") or n.endswith("/.env") for n in names)
    assert len({n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}) == 1
    installed = tmp_path / "installed"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(installed), str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (installed / "deploy_starter" / "main.py").is_file() and (installed / "app.py").is_file()


def test_a_failed_deploy_says_the_platforms_reason_and_records_nothing(modelstudio):
    standin, cli, project, _ = modelstudio
    standin.fail_next_deploy("HighCode.InstallFailed", "pip could not install the package")
    done = cli.run("deploy", "--target", "modelstudio", "--json")
    refused(done, 1, "HighCode.InstallFailed", "pip could not install the package")
    assert json.loads(done.stdout.splitlines()[-1])["error"]["code"] == "HighCode.InstallFailed"
    assert not (project / ".agentpack" / "deployments.json").exists() and standin.agents == {}


def test_a_publish_that_never_ends_times_out_at_the_deadline(modelstudio):
    standin, cli, _, _ = modelstudio
    standin.publish_after_polls = 10_000
    refused(cli.run("deploy", "--target", "modelstudio", "--wait", "2"), 1, "Timeout", "not published after 2 s")
    # the agent was created, so it is recorded: status sees it, and the next deploy updates it (agentId sent), no second agent
    created = next(iter(standin.agents.values()))
    status = cli.json("status", "deployed")["platform"]
    assert status["exists"] is True and status["agent_id"] == created.code and status["state"].startswith("not published")
    standin.publish_after_polls = 0
    assert cli.json("deploy", "--target", "modelstudio")["action"] == "updated"
    assert len(standin.agents) == 1 and standin.calls_of("HighCodeDeploy")[-1].json["agentId"] == created.code


def test_throttling_is_retried_and_a_workspace_without_access_shows_the_platforms_error(modelstudio):
    standin, cli, _, _ = modelstudio
    standin.throttle_next("ApplyTempStorageLease", times=2)
    assert cli.json("deploy", "--target", "modelstudio")["action"] == "created"
    assert [c.status for c in standin.calls_of("ApplyTempStorageLease")] == [429, 429, 200]
    env = {**cli.env, "MODELSTUDIO_WORKSPACE_ID": "llm-not-mine"}
    refused(cli.run("deploy", "--target", "modelstudio", "--name", "other", env=env), 1, "Workspace.AccessDenied", "llm-not-mine")


def test_secrets_and_env_are_refused_with_the_fix_before_any_call(modelstudio):
    standin, cli, project, _ = modelstudio
    config = project / "agentpack.toml"
    config.write_text(config.read_text() + 'secrets = ["DEPLOYED_SECRET"]\n')
    refused(cli.run("deploy", "--target", "modelstudio"), 2, "DEPLOYED_SECRET", "Model Studio console")
    assert standin.calls == []


def test_no_workspace_names_what_to_set(modelstudio):
    standin, cli, _, _ = modelstudio
    env = {k: v for k, v in cli.env.items() if k != "MODELSTUDIO_WORKSPACE_ID"}
    refused(cli.run("deploy", "--target", "modelstudio", env=env), 2, "MODELSTUDIO_WORKSPACE_ID")
    assert standin.calls == []


def test_the_manager_takes_upstreams_keywords_returns_the_deploy_id_and_stop_removes_the_agent(modelstudio, monkeypatch):
    import asyncio
    import importlib.util
    from types import SimpleNamespace

    from agentpack import ModelstudioDeployManager

    standin, cli, project, _ = modelstudio
    for key, value in cli.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MODELSTUDIO_WORKSPACE_ID")  # from upstream's modelstudio_config instead
    spec = importlib.util.spec_from_file_location("modelstudio_deployed_app", project / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["modelstudio_deployed_app"] = module
    spec.loader.exec_module(module)
    try:
        upstream_config = SimpleNamespace(workspace_id=standin.workspace, endpoint=None, access_key_id=None)
        with pytest.warns(UserWarning, match="build_root"):
            manager = ModelstudioDeployManager(modelstudio_config=upstream_config, build_root="/tmp/ignored")
        result = asyncio.run(module.app.deploy(manager, agent_desc="from the manager", telemetry_enabled=True))
        agent = standin.by_name("deployed")
        assert result["deploy_id"] == "modelstudio:deployed" and result["success"] is True and agent is not None
        assert result["url"] == standin.data_plane.format(agent_id=agent.code)
        assert agent.description == "from the manager" and agent.telemetry is True
        stopped = asyncio.run(manager.stop(result["deploy_id"]))
        assert stopped["success"] is True and standin.agents == {}, "stop really removes the agent"
        assert asyncio.run(manager.stop(result["deploy_id"]))["success"] is False
    finally:
        del sys.modules["modelstudio_deployed_app"]


def test_emulate_runs_the_wheel_as_the_platform_starts_it(tmp_path):
    """``agentpack emulate --target modelstudio``: deploy_starter/main.py with the target's Python, on $PORT."""
    project = copy_project(tmp_path)
    cli = CLI(project, cli_env(DEPLOYED_SECRET=SECRET))
    built = cli.json("build", "--target", "modelstudio")
    done = cli.run("emulate", built["artifact"], "--target", "modelstudio", "--ask", "count 3", "--once")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 " in done.stdout


def test_destroy_removes_an_agent_whose_first_publish_timed_out(modelstudio):
    standin, cli, project, _ = modelstudio
    standin.publish_after_polls = 10_000
    refused(cli.run("deploy", "--target", "modelstudio", "--wait", "1"), 1, "Timeout")
    assert len(standin.agents) == 1
    cli.json("destroy", "deployed", "--yes")
    assert standin.agents == {} and "DeleteAgent" in standin.actions()
    assert "modelstudio/deployed" not in (project / ".agentpack" / "deployments.json").read_text()


def test_a_missing_sdk_or_credentials_name_the_fix_before_building(tmp_path):
    project = copy_project(tmp_path)
    hide = tmp_path / "hide-sdk"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['alibabacloud_bailian20231229'] = None  # as if not installed\n")
    base = {"MODELSTUDIO_WORKSPACE_ID": "llm-x", "AGENTPACK_MODELSTUDIO_ENDPOINT": "http://127.0.0.1:9", "HOME": str(tmp_path)}
    done = CLI(project, cli_env(**ALIBABA_KEYS, **base, PYTHONPATH=str(hide))).run("deploy", "--target", "modelstudio")
    refused(done, 2, "alibabacloud_bailian20231229", "pip install 'agentpack[modelstudio]'")
    done = CLI(project, cli_env(**base)).run("deploy", "--target", "modelstudio")
    refused(done, 2, "ALIBABA_CLOUD_ACCESS_KEY_ID")
    assert not (project / "dist").exists(), "refused before the build"


def test_a_5xx_on_the_create_is_not_retried_but_throttling_is(modelstudio):
    """A 5xx may come after HighCodeDeploy made the agent: retrying it could make a second agent of one name."""
    standin, cli, _, _ = modelstudio
    standin.fail_next("HighCodeDeploy", status=503)
    refused(cli.run("deploy", "--target", "modelstudio"), 1, "ServiceUnavailable")
    assert len(standin.calls_of("HighCodeDeploy")) == 1
    standin.throttle_next("HighCodeDeploy")
    assert cli.json("deploy", "--target", "modelstudio")["action"] == "created"
    assert [c.status for c in standin.calls_of("HighCodeDeploy")] == [503, 429, 200] and len(standin.agents) == 1
