"""Function Compute facts a deploy must get right on the real service (issue 19: items 1, 4, 5,
9, 10 and 12 for FC), each checked by the FC stand-in as tests/standins/README.md §2 records it.

Every test drives ``agentpack deploy --target fc`` through the command line and the real SDK
against the stand-in, which keeps what FC keeps (request concurrency 200 under session
affinity, its own defaults in trigger, affinity and log configs), refuses what FC refuses
(custom.debian12 outside the regions FC names, cpu and memory outside 1-4 GB per vCPU) and
tells what a new instance of the code would start (the interpreter on the function's runtime).
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.standins import TEST_ACCESS_KEY_ID, TEST_ACCESS_KEY_SECRET, FCStandIn
from tests.standins.fc import affinity_id_problem
from tests.support import CLI, cli_env, copy_project, refused, set_version

pytestmark = pytest.mark.integration

ALIBABA_KEYS = {"ALIBABA_CLOUD_ACCESS_KEY_ID": TEST_ACCESS_KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": TEST_ACCESS_KEY_SECRET}
FC_WRITES = {"CreateFunction", "UpdateFunction", "PublishFunctionVersion", "CreateAlias", "UpdateAlias", "CreateTrigger", "UpdateTrigger"}


def fc_settings(project: Path, *lines: str, python: str | None = None) -> None:
    """Add ``lines`` to the project's ``[targets.fc]`` (and set its Python)."""
    config = project / "agentpack.toml"
    text = config.read_text().replace("[targets.fc]\n", "[targets.fc]\n" + "".join(f"{line}\n" for line in lines), 1)
    if python is not None:
        text = text.replace('python = "3.12"', f'python = "{python}"', 1)
    config.write_text(text)


@pytest.fixture
def fc_at(tmp_path):
    """``fc_at(region)``: an FC stand-in for that region and a CLI on a fresh copy of the test project."""
    made: list[FCStandIn] = []

    def make(region: str = "cn-hangzhou") -> tuple[FCStandIn, CLI, Path]:
        standin = FCStandIn(region=region).start()
        made.append(standin)
        project = copy_project(tmp_path, f"deployed-{len(made)}")
        env = cli_env(**ALIBABA_KEYS, AGENTPACK_FC_ENDPOINT=f"http://{standin.endpoint}", DEPLOYED_SECRET="s3cret",
                      REDIS_URL="redis://127.0.0.1:1/0", HOME=str(tmp_path))
        return standin, CLI(project, env), project

    yield make
    for standin in made:
        standin.stop()


def writes(standin: FCStandIn) -> list[str]:
    return [c.action for c in standin.calls if c.action in FC_WRITES and c.status < 300]


def sent(standin: FCStandIn, action: str = "CreateFunction") -> dict:
    return standin.calls_of(action)[-1].json


# -- item 1: the interpreter each runtime has, and where custom.debian12 is offered ------------------------
@pytest.mark.parametrize(
    "python, runtime_setting, runtime, interpreter, version",
    [
        ("3.11", None, "custom.debian12", "/usr/bin/python3", "3.11.2"),
        ("3.12", None, "custom.debian11", "/var/fc/lang/python3.12/bin/python3", "3.12.4"),
        ("3.12", "custom.debian12", "custom.debian12", "/opt/python3.12/bin/python3", "3.12.4"),
    ],
)
def test_a_new_instance_starts_the_artifacts_python_on_its_runtime(fc_at, python, runtime_setting, runtime, interpreter, version):
    standin, cli, project = fc_at()
    fc_settings(project, *([f'runtime = "{runtime_setting}"'] if runtime_setting else []), python=python)
    done = cli.run("deploy", "--target", "fc")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{runtime}: Python {python} at {interpreter}" in done.stdout + done.stderr  # the deploy says which runtime
    assert sent(standin)["runtime"] == runtime
    assert standin.cold_start("deployed") == {"interpreter": interpreter, "python": version}


def test_custom_debian12_outside_the_regions_fc_names_is_refused_with_what_to_do(fc_at):
    standin, cli, project = fc_at("ap-southeast-1")
    config = project / "agentpack.toml"
    config.write_text(config.read_text().replace('region = "cn-hangzhou"', 'region = "ap-southeast-1"', 1))
    fc_settings(project, python="3.11")
    done = cli.run("deploy", "--target", "fc")
    refused(done, 1, "CreateFunction failed", "refused runtime custom.debian12 in ap-southeast-1",
            'runtime = "custom.debian11" (Python 3.12)', "or deploy to cn-hangzhou")
    assert "deployed" not in standin.functions


def test_a_runtime_without_the_artifacts_python_is_refused_before_any_call(fc_at):
    standin, cli, project = fc_at()
    fc_settings(project, 'runtime = "custom.debian10"')  # the project builds for 3.12
    refused(cli.run("deploy", "--target", "fc"), 2, 'runtime = "custom.debian10"', "Python 3.12")
    assert standin.calls == []


# -- items 4 and 10: what FC keeps, and "unchanged" from what agentpack wrote ----------------------------------
def test_a_redeploy_compares_what_agentpack_wrote_not_what_fc_fills_in(fc_at):
    standin, cli, project = fc_at()
    first = cli.json("deploy", "--target", "fc")
    body = sent(standin)
    # with session affinity FC fixes request concurrency at 200: that is what is sent; the setting is sessions
    assert body["instanceConcurrency"] == 200 and body["instanceIsolationMode"] == "SHARE"
    assert json.loads(body["sessionAffinityConfig"])["sessionConcurrencyPerInstance"] == 20
    assert f"sha256:{first['sha256']}" in body["description"]
    kept = standin.functions["deployed"].config
    assert "disableSessionIdReuse" in kept["sessionAffinityConfig"]
    assert "disableURLInternet" in standin.functions["deployed"].triggers["http"]["triggerConfig"]

    before = writes(standin)
    again = cli.json("deploy", "--target", "fc")
    assert again["action"] == "unchanged" and writes(standin) == before

    # what agentpack sends changed (a variable): configured, the code stays
    configured = cli.json("deploy", "--target", "fc", "--env", "EXTRA=1")
    assert configured["action"] == "configured" and configured["uploaded"] is False
    assert "code" not in sent(standin, "UpdateFunction")
    assert sent(standin, "UpdateFunction")["environmentVariables"]["EXTRA"] == "1"

    # new code: uploaded and routed; the trigger FC keeps (with its defaults) is left as it is
    set_version(project, "v2")
    updated = cli.json("deploy", "--target", "fc")
    assert updated["action"] == "updated" and updated["uploaded"] is True
    assert standin.calls_of("UpdateTrigger") == []
    assert cli.json("deploy", "--target", "fc")["action"] == "unchanged"


def test_a_setting_changed_in_the_console_is_repaired_by_the_next_deploy(fc_at):
    from agentpack.deployers.clients.fc import FCApi

    standin, cli, _ = fc_at()
    cli.json("deploy", "--target", "fc")
    api = FCApi(endpoint=f"http://{standin.endpoint}", environ={**ALIBABA_KEYS})
    api.update_function("deployed", {"memorySize": 2048, "cpu": 1.0})  # someone resized it in the console
    repaired = cli.json("deploy", "--target", "fc")
    assert repaired["action"] == "configured"
    assert (standin.functions["deployed"].config["memorySize"], standin.functions["deployed"].config["cpu"]) == (512, 0.25)


# -- item 5: the affinity id fits FC's rule, the app still gets the full ids ---------------------------------
def test_the_affinity_id_clients_send_fits_fcs_rule_and_the_full_ids_still_travel(fc_at):
    from agentpack.client import session_headers

    standin, cli, _ = fc_at()
    cli.json("deploy", "--target", "fc")
    header = json.loads(sent(standin)["sessionAffinityConfig"])["affinityHeaderFieldName"]
    ids = [("会话-1", "用户-1"), ("a.b", None), ("x~y", "u"), ("s" * 200, None), ("plain", None), ("-leading", "_")]
    keys = set()
    for session, user in ids:
        headers = {name.lower(): value for name, value in session_headers(session, user).items()}
        key = headers[header.lower()]
        assert affinity_id_problem(key) is None, (session, key)
        assert unquote(headers["x-agentpack-session-id"]) == session  # what the app reads is the whole id
        assert unquote(headers["x-agentpack-user-id"]) == (user or session)
        keys.add(key)
    assert len(keys) == len(ids)
    # a run and its stop (same user and session) pin to one instance; another user's session does not
    def pin(session: str, user: str) -> str:
        return {name.lower(): value for name, value in session_headers(session, user).items()}[header.lower()]

    assert pin("s", "u") == pin("s", "u") != pin("s", "v")


# -- item 9: cpu and memory as they are sent ------------------------------------------------------------------
def test_memory_alone_goes_with_a_cpu_inside_fcs_ratio_on_create_and_update(fc_at):
    standin, cli, project = fc_at()
    config = project / "agentpack.toml"
    config.write_text(config.read_text().replace("memory = 512", "memory = 8192", 1))
    assert cli.json("deploy", "--target", "fc")["action"] == "created"
    assert (sent(standin)["memorySize"], sent(standin)["cpu"]) == (8192, 4.0)
    config.write_text(config.read_text().replace("memory = 8192", "cpu = 8.0", 1))
    assert cli.json("deploy", "--target", "fc")["action"] == "configured"
    assert (sent(standin, "UpdateFunction")["memorySize"], sent(standin, "UpdateFunction")["cpu"]) == (16384, 8.0)


def test_cpu_and_memory_outside_the_ratio_are_refused_before_any_call(fc_at):
    standin, cli, project = fc_at()
    fc_settings(project, "cpu = 0.5")  # with memory = 512 … and now 8192:
    config = project / "agentpack.toml"
    config.write_text(config.read_text().replace("memory = 512", "memory = 8192", 1))
    refused(cli.run("deploy", "--target", "fc"), 2, "cpu = 0.5 with memory = 8192", "1 to 4 GB of memory per vCPU")
    assert standin.calls == []


# -- item 12: VPC and log settings, sent as FC's vpcConfig and logConfig --------------------------------------
def test_vpc_and_log_settings_reach_fc_as_vpc_config_and_log_config(fc_at):
    standin, cli, project = fc_at()
    fc_settings(project, 'vpc_id = "vpc-bp1abc"', 'vswitch_ids = ["vsw-bp1a", "vsw-bp1b"]', 'security_group_id = "sg-bp1abc"',
                'log_project = "agent-logs"', 'log_store = "fc-requests"')
    cli.json("deploy", "--target", "fc")
    body = sent(standin)
    assert body["vpcConfig"] == {"vpcId": "vpc-bp1abc", "vSwitchIds": ["vsw-bp1a", "vsw-bp1b"], "securityGroupId": "sg-bp1abc"}
    assert body["logConfig"] == {"project": "agent-logs", "logstore": "fc-requests"}
    assert standin.functions["deployed"].config["logConfig"]["enableRequestMetrics"] is True  # FC's default, kept
    assert cli.json("deploy", "--target", "fc")["action"] == "unchanged"


@pytest.mark.parametrize(
    "lines, says",
    [
        (['vpc_id = "vpc-bp1abc"'], "vpc_id, vswitch_ids and security_group_id go together"),
        (['log_project = "agent-logs"'], "log_project and log_store go together"),
        (['vpc_id = "bp1abc"'], "vpc_id"),
    ],
)
def test_incomplete_network_or_log_settings_are_refused_before_any_call(fc_at, lines, says):
    standin, cli, project = fc_at()
    fc_settings(project, *lines)
    refused(cli.run("deploy", "--target", "fc"), 2, says)
    assert standin.calls == []
