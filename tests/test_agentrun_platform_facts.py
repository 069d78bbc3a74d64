"""``agentpack deploy --target agentrun`` against the AgentRun stand-in, on the facts issue 19
found the first deployer got wrong (items 6-12 and 15).  Each test fails on the old behaviour:

* 6: a configuration-only update sends neither ``artifactType`` nor ``codeConfiguration``;
* 7: session affinity routes on the header ``invoke`` and ``stop`` send;
* 8: the URL is not public unless asked: an inbound credential closes it, agentpack's own
  calls are signed for the ``-ram`` host, and ``--allow-anonymous`` says so in the output;
* 9: cpu and memory are checked as they will be sent, defaults included;
* 10: "unchanged" holds though publishing moves ``lastUpdatedAt`` and lists mask variables;
* 11: code through OSS (``code_upload = "oss"``, and above the inline size);
* 12: VPC and SLS log settings, in the SDK's fields;
* 15: a first deploy that times out still CREATING leaves a record status/list/destroy see.

The stand-in (tests/standins/agentrun.py, facts and sources in tests/standins/README.md §3)
enforces each of these, driven by the real SDK through the real CLI.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.standins import TEST_ACCESS_KEY_ID, TEST_ACCESS_KEY_SECRET, AgentRunStandIn, OSSStandIn
from tests.support import CLI, cli_env, copy_project, refused

pytestmark = pytest.mark.integration

SECRET = "s3cret-value"
KEYS = {"ALIBABA_CLOUD_ACCESS_KEY_ID": TEST_ACCESS_KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": TEST_ACCESS_KEY_SECRET}
BUCKET = "agentpack-artifacts"


def settings(project: Path, lines: str, drop: tuple[str, ...] = ()) -> None:
    """Add ``lines`` to ``[targets.agentrun]`` (and remove the lines in ``drop``)."""
    config = project / "agentpack.toml"
    text = config.read_text()
    for line in drop:  # lines only [targets.agentrun] has
        assert text.count(f"\n{line}\n") == 1, line
        text = text.replace(f"\n{line}\n", "\n")
    config.write_text(text.replace("[targets.agentrun]\n", f"[targets.agentrun]\n{lines}", 1))


class Cloud:
    def __init__(self, tmp: Path, standin: AgentRunStandIn, **env: str) -> None:
        self.standin = standin
        self.project = copy_project(tmp)
        self.cli = CLI(self.project, cli_env(**KEYS, AGENTPACK_AGENTRUN_ENDPOINT=f"http://{standin.endpoint}", DEPLOYED_SECRET=SECRET,
                                            REDIS_URL="redis://127.0.0.1:1/0", HOME=str(tmp), **env))

    def deploy(self, *flags: str, expect: int = 0) -> dict[str, Any]:
        return self.cli.json("deploy", "--target", "agentrun", *flags, expect=expect)

    def bodies(self, action: str) -> list[dict[str, Any]]:
        return [call.json for call in self.standin.calls_of(action) if call.status < 300]


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    with AgentRunStandIn(ready_after_polls=1) as standin:
        yield Cloud(tmp_path, standin)


def test_a_configuration_only_update_sends_no_artifact_type_and_keeps_the_code(cloud: Cloud) -> None:
    assert cloud.deploy()["action"] == "created"
    code = cloud.standin.code_of(cloud.standin.by_name("deployed")["agentRuntimeId"])
    assert cloud.deploy("--env", "EXTRA=1")["action"] == "configured"
    update = cloud.bodies("UpdateAgentRuntime")[-1]
    assert "artifactType" not in update and "codeConfiguration" not in update, update
    assert cloud.standin.code_of(cloud.standin.by_name("deployed")["agentRuntimeId"]) == code


def test_session_affinity_routes_on_the_header_invoke_and_stop_send(cloud: Cloud) -> None:
    from agentpack.client import session_headers

    cloud.deploy()
    header = cloud.standin.affinity_header("deployed")
    assert header is not None and header in session_headers("a session", "a user")
    assert cloud.standin.by_name("deployed")["sessionAffinityType"] == "HEADER_FIELD"


class Recorder(http.server.BaseHTTPRequestHandler):
    """A real HTTP server standing where the endpoint's URL points: it keeps what it was sent."""

    seen: list[tuple[str, str, dict[str, str]]] = []

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_the_url_is_closed_by_default_and_agentpacks_calls_are_signed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    from agentpack.deployers import service
    from agentpack.deployers.clients.agentrun_signing import signed_headers

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        with AgentRunStandIn(ready_after_polls=1, on_code=lambda *_: url) as standin:
            cloud = Cloud(tmp_path, standin)
            result = cloud.deploy()
            for key, value in cloud.cli.env.items():  # this process signs as the CLI did
                monkeypatch.setenv(key, value)
            runtime = standin.by_name("deployed")
            assert runtime["credentialName"] == "agentpack-deployed"
            assert standin.credentials["agentpack-deployed"]["credentialSourceType"] == "internal"
            assert result["auth"] == "agentrun-ram" and "signed" in result["curl"]
            # what invoke, stop and the chat page's relay use: the recorded URL with its auth
            endpoint = service.endpoint(cloud.project, "deployed")
            httpx.post(f"{endpoint.url}/process", json={}, auth=endpoint.auth, timeout=10).raise_for_status()
            _, path, headers = Recorder.seen[-1]
            when = dt.datetime.strptime(headers["x-acs-date"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
            expected = signed_headers("POST", f"{url}{path}", TEST_ACCESS_KEY_ID, TEST_ACCESS_KEY_SECRET, "cn-hangzhou", when=when)
            assert headers["agentrun-authorization"] == expected["Agentrun-Authorization"]
            # --allow-anonymous opens it, drops the credential, and the output says so
            opened = cloud.deploy("--allow-anonymous")
            assert opened["action"] == "configured" and opened["auth"] == "anonymous"
            assert any("public" in warning for warning in opened["warnings"]), opened["warnings"]
            assert not standin.by_name("deployed").get("credentialName")
            assert cloud.cli.json("destroy", "deployed")  # the credential goes with the runtime
            assert "agentpack-deployed" not in standin.credentials
    finally:
        server.shutdown()


def test_the_signature_matches_alibabas_published_vector() -> None:
    """Serverless-Devs/agentrun-sdk-python tests/unittests/ram_signature/test_signer.py
    (test_fixed_params_snapshot_matches_compare_script): these inputs sign to this value."""
    from agentpack.deployers.clients.agentrun_signing import ram_url, signed_headers

    headers = signed_headers("GET", "https://1431999136518149-ram.agentrun-data.cn-hangzhou.aliyuncs.com/sandboxes/sbx-xxx/health",
                             "LTAI5t5opp3xMWk2B3a4gZVq", "secret", "cn-hangzhou",
                             when=dt.datetime(2026, 3, 6, 12, 0, 0, tzinfo=dt.timezone.utc))
    assert headers["Agentrun-Authorization"].endswith("Signature=e1479ea1aec37e55f91d82b1ccc48df2feef04184a911f91a3e3fe0e27d02610")
    assert ram_url("https://123.agentrun-data.cn-hangzhou.aliyuncs.com/a?b=1") == "https://123-ram.agentrun-data.cn-hangzhou.aliyuncs.com/a?b=1"
    assert ram_url("http://127.0.0.1:9000/a") == "http://127.0.0.1:9000/a"


@pytest.mark.parametrize("lines, drop, says", [
    ("", ("memory = 1024", "cpu = 1.0"), None),  # the defaults, 2 vCPU and 4096 MB, fit
    ("", ("cpu = 1.0",), "cpu 2 (the default) and memory = 1024: AgentRun needs 1 to 4 GB of memory per vCPU"),
    ("cpu = 0.5\n", ("memory = 1024", "cpu = 1.0"), "cpu = 0.5 and memory 4096 (the default): AgentRun needs 1 to 4 GB"),
])
def test_cpu_and_memory_are_checked_as_they_will_be_sent(cloud: Cloud, lines: str, drop: tuple[str, ...], says: str | None) -> None:
    settings(cloud.project, lines, drop)
    if says is None:
        cloud.deploy()
        runtime = cloud.standin.by_name("deployed")
        assert (runtime["cpu"], runtime["memory"]) == (2.0, 4096)
    else:
        refused(cloud.cli.run("deploy", "--target", "agentrun"), 2, says)
        assert cloud.standin.calls == []


def test_unchanged_holds_when_publishing_moves_last_updated_at_and_lists_mask_values(cloud: Cloud) -> None:
    cloud.deploy()
    listed = cloud.standin.calls_of("ListAgentRuntimes")
    assert listed, "found by name"
    assert cloud.deploy()["action"] == "unchanged"
    assert cloud.bodies("UpdateAgentRuntime") == [] and len(cloud.bodies("PublishRuntimeVersion")) == 1
    # a changed secret is a change, though no answer shows its value
    env = {**cloud.cli.env, "DEPLOYED_SECRET": "another"}
    done = cloud.cli.run("deploy", "--target", "agentrun", "--json", env=env)
    assert json.loads(done.stdout.splitlines()[-1])["action"] == "configured", done.stderr
    assert cloud.bodies("UpdateAgentRuntime")[-1]["environmentVariables"]["DEPLOYED_SECRET"] == "another"


def test_code_through_oss(tmp_path: Path) -> None:
    oss = OSSStandIn(tmp_path / "oss", buckets=(BUCKET,)).start()
    try:
        with AgentRunStandIn(ready_after_polls=1, oss=oss) as standin:
            cloud = Cloud(tmp_path, standin, AGENTPACK_OSS_ENDPOINT=f"http://{oss.endpoint}")
            settings(cloud.project, f'code_upload = "oss"\noss_bucket = "{BUCKET}"\n')
            result = cloud.deploy()
            code = cloud.bodies("CreateAgentRuntime")[0]["codeConfiguration"]
            assert "zipFile" not in code and code["ossBucketName"] == BUCKET
            assert code["ossObjectName"] == f"agentpack/deployed/{result['sha256']}.zip"
            assert cloud.deploy()["action"] == "unchanged"
            cloud.cli.json("destroy", "deployed")
            assert oss.keys(BUCKET) == []
    finally:
        oss.stop()


def test_an_artifact_over_the_inline_size_needs_a_bucket(tmp_path: Path) -> None:
    from agentpack.deployers.errors import DeployConfigError
    from agentpack.deployers.platforms.agentrun import MAX_INLINE_BYTES, AgentRunDeployer
    from agentpack.deployers.request import DeployRequest
    from agentpack.target_settings import AgentRunSettings

    def request(size: int, **values: Any) -> DeployRequest:
        return DeployRequest(tmp_path, "agentrun", "a", AgentRunSettings(**values), {}, size_bytes=size)

    deployer = AgentRunDeployer(AgentRunSettings(region="cn-hangzhou"), api=object())
    assert deployer.through_oss(request(MAX_INLINE_BYTES)) is False
    with pytest.raises(DeployConfigError, match=r'over the 10 MB agentpack sends to AgentRun inline: set \[targets.agentrun\] oss_bucket'):
        deployer.through_oss(request(MAX_INLINE_BYTES + 1))
    assert deployer.through_oss(request(MAX_INLINE_BYTES + 1, oss_bucket=BUCKET)) is True


def test_vpc_and_log_settings_go_in_the_sdks_fields(cloud: Cloud) -> None:
    settings(cloud.project, 'vpc_id = "vpc-bp1a"\nvswitch_ids = ["vsw-bp1b"]\nsecurity_group_id = "sg-bp1c"\n'
                            'log_project = "agent-logs"\nlog_store = "agentrun"\n')
    cloud.deploy()
    sent = cloud.bodies("CreateAgentRuntime")[0]
    assert sent["networkConfiguration"] == {"networkMode": "PUBLIC_AND_PRIVATE", "vpcId": "vpc-bp1a", "vswitchIds": ["vsw-bp1b"],
                                            "securityGroupId": "sg-bp1c"}
    assert sent["logConfiguration"] == {"project": "agent-logs", "logstore": "agentrun"}
    assert cloud.deploy()["action"] == "unchanged"


def test_half_a_vpc_is_refused_before_any_call(cloud: Cloud) -> None:
    settings(cloud.project, 'vpc_id = "vpc-bp1a"\n')
    refused(cloud.cli.run("deploy", "--target", "agentrun"), 2, "vpc_id, vswitch_ids and security_group_id go together")
    assert cloud.standin.calls == []


def test_a_first_deploy_that_times_out_is_recorded_for_status_list_and_destroy(cloud: Cloud) -> None:
    cloud.standin.hang_next_deploy()
    refused(cloud.cli.run("deploy", "--target", "agentrun", "--wait", "2"), 1, "still CREATING after 2 s")
    listed = cloud.cli.json("list")
    assert "deployed" in json.dumps(listed), listed
    assert cloud.cli.json("status", "deployed")["platform"]["state"] == "CREATING"
    cloud.standin.runtimes[cloud.standin.by_name("deployed")["agentRuntimeId"]].plan.outcome = "READY"  # it gets there at last
    cloud.cli.json("destroy", "deployed")
    assert cloud.standin.by_name("deployed") is None
