"""`agentpack logs NAME` on fc and agentrun reads the deployment's SLS logstore through the real SLS SDK,
against the stand-in in tests/standins/sls.py (which checks each request from the API reference); with no
logstore set it says what to set.  Before this, both targets only said "read them in the console"."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentpack.cli.main import app
from agentpack.deployers.clients.alibaba import Credentials
from agentpack.deployers.clients.sls import LogDestination, SLSApi
from agentpack.deployers.state import Deployment, DeploymentStore
from tests.standins.acs import TEST_ACCESS_KEY_ID, TEST_ACCESS_KEY_SECRET
from tests.standins.sls import SLSStandIn

CREDENTIALS = Credentials(TEST_ACCESS_KEY_ID, TEST_ACCESS_KEY_SECRET)


@pytest.fixture
def sls(monkeypatch, tmp_path):
    """The stand-in as the SDK's HTTP proxy, and an environment with the test keys and nothing else of Alibaba's."""
    import os

    for key in [k for k in os.environ if k.startswith(("ALIBABA_CLOUD_", "AGENTPACK_")) or k.lower() == "no_proxy"]:
        monkeypatch.delenv(key)
    with SLSStandIn() as standin:
        monkeypatch.setenv("HTTP_PROXY", standin.proxy)
        monkeypatch.setenv("http_proxy", standin.proxy)
        monkeypatch.setenv("AGENTPACK_SLS_ENDPOINT", standin.endpoint)
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", TEST_ACCESS_KEY_ID)
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", TEST_ACCESS_KEY_SECRET)
        monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.aliyun profile of the machine's
        yield standin


def project_with(tmp_path: Path, target: str, table: str) -> Path:
    """A project whose state records a deployment ``agent`` on ``target`` (no deploy: logs need only the record)."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "app.py").write_text("")
    (project / "agentpack.toml").write_text(
        f'app = "app.py:app"\nname = "agent"\npython = "3.12"\n\n[targets.{target}]\nregion = "cn-hangzhou"\n{table}'
    )
    DeploymentStore(project).put(
        Deployment(target=target, name="agent", region="cn-hangzhou", url="https://example.invalid")
    )
    return project


def logs(project: Path, *args: str):
    return CliRunner().invoke(app, ["logs", "agent", "--project", str(project), *args])


def test_fc_logs_come_from_the_functions_logstore_oldest_first_page_by_page(sls, tmp_path):
    project = project_with(tmp_path, "fc", 'log_project = "agent-logs"\nlog_store = "fc-store"\n')
    sls.create_store("agent-logs", "fc-store")
    now = int(time.time())
    for i in range(230):  # three pages of at most 100
        sls.write("agent-logs", "fc-store", now - 229 + i, message=f"line {i} 答", __topic__="FCLogs:agent")
    sls.write("agent-logs", "fc-store", now - 30, message="another function's line", __topic__="FCLogs:other")
    sls.write("agent-logs", "fc-store", now - 7200, message="older than --since", __topic__="FCLogs:agent")

    result = logs(project)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [f"line {i} 答" for i in range(230)]

    calls = sls.calls_of("GetLogsV2")
    assert [c.status for c in calls] == [200, 200, 200] and len(sls.calls) == 3
    for offset, call in zip((0, 100, 200), calls, strict=True):
        assert (call.method, call.host, call.path) == (
            "POST",
            "agent-logs.cn-hangzhou.log.aliyuncs.com",
            "/logstores/fc-store/logs",
        )
        assert call.headers["authorization"].startswith(f"LOG {TEST_ACCESS_KEY_ID}:")  # checked against the test secret
        params = call.params
        assert (params["line"], params["offset"], params["reverse"]) == (100, offset, False)
        assert params["query"] == '__topic__: "FCLogs:agent"'
        assert abs(params["from"] - (now - 3600)) <= 2 and params["to"] > now - 2

    sls.calls.clear()
    recent = logs(project, "--since", "60").output.splitlines()
    since = sls.calls_of("GetLogsV2")[0].params["from"]
    assert abs(since - (now - 60)) <= 2
    assert recent == [f"line {i} 答" for i in range(230) if now - 229 + i >= since] and 55 <= len(recent) <= 65


def test_agentrun_logs_come_from_the_runtimes_logstore(sls, tmp_path):
    project = project_with(tmp_path, "agentrun", 'log_project = "agent-logs"\nlog_store = "runtime"\n')
    sls.create_store("agent-logs", "runtime")
    now = int(time.time())
    sls.write("agent-logs", "runtime", now - 20, message="INFO: Uvicorn running on http://0.0.0.0:9000")
    sls.write("agent-logs", "runtime", now - 10, level="info", event="no message field")

    result = logs(project)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "INFO: Uvicorn running on http://0.0.0.0:9000",
        "event=no message field level=info",
    ]
    (call,) = sls.calls_of("GetLogsV2")
    assert call.path == "/logstores/runtime/logs" and call.params["query"] == "*" and call.status == 200


@pytest.mark.parametrize("target", ["fc", "agentrun"])
def test_without_a_logstore_logs_says_what_to_set_and_asks_nothing(sls, tmp_path, target):
    project = project_with(tmp_path, target, "")
    result = logs(project)
    assert result.exit_code == 2 and "Traceback" not in result.output
    message = " ".join(result.output.split())
    for needed in ("log_project = ", "log_store = ", f"[targets.{target}]", "agentpack.toml", "cn-hangzhou"):
        assert needed in message, message
    assert sls.calls == []


def test_an_answer_from_sls_is_reported_with_its_code_and_request_id(sls, tmp_path):
    project = project_with(tmp_path, "fc", 'log_project = "agent-logs"\nlog_store = "missing"\n')
    sls.create_store("agent-logs", "fc-store")
    result = logs(project)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "LogStoreNotExist" in result.output and "request id" in result.output


def test_follow_prints_new_entries_once_even_when_they_share_a_second_with_printed_ones(sls):
    now = int(time.time())
    sls.create_store("p", "s")
    sls.write("p", "s", now - 5, message="a")
    sls.write("p", "s", now - 1, message="same")
    sls.write("p", "s", now - 1, message="same")  # the same line twice in one second: both are printed

    def more(_seconds: float) -> None:  # what arrives while the reader waits
        sls.write("p", "s", now - 1, message="late in that second")
        sls.write("p", "s", now, message="new")

    api = SLSApi(CREDENTIALS, endpoint=sls.endpoint, sleep=more)
    lines = list(itertools.islice(api.log_lines(LogDestination("p", "s"), since_seconds=60, follow=True), 5))
    assert lines == ["a", "same", "same", "late in that second", "new"]
    second = sls.calls_of("GetLogsV2")[1].params
    assert second["from"] == now - 1, "the second pass asks from the newest second it printed"
