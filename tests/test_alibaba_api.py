"""The Alibaba Cloud control-plane layer the FC and AgentRun deployers call.

Credentials and endpoint parsing are plain logic; everything that talks to a control plane
goes through the real SDK clients to the loopback stand-ins in tests/standins, so the bodies,
signatures and error envelopes are the ones a real deploy produces.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from agentpack.deployers.clients.alibaba import (
    AlibabaConfigError,
    Credentials,
    CredentialsError,
    Endpoint,
    PlatformError,
    PollPolicy,
    ResourceFailed,
    RetryPolicy,
    WaitTimeout,
    resolve_credentials,
    resolve_endpoint,
)
from tests.standins import TEST_ACCESS_KEY_ID, TEST_ACCESS_KEY_SECRET, AgentRunStandIn, FCStandIn, RecordingHook, make_zip

ZIP_V1 = make_zip({"bootstrap": "#!/bin/sh\nexec python3 -m app\n", "app.py": "print('v1')\n"})
ZIP_V2 = make_zip({"bootstrap": "#!/bin/sh\nexec python3 -m app\n", "app.py": "print('v2')\n"})
TEST_CREDENTIALS = Credentials(TEST_ACCESS_KEY_ID, TEST_ACCESS_KEY_SECRET, source="test")


# -- credentials ---------------------------------------------------------------------------------


def test_credentials_from_the_environment_win(tmp_path: Path) -> None:
    found = resolve_credentials({"ALIBABA_CLOUD_ACCESS_KEY_ID": "id", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "secret",
                                 "ALIBABA_CLOUD_SECURITY_TOKEN": "sts"}, home=str(tmp_path))
    assert (found.access_key_id, found.access_key_secret, found.security_token, found.source) == \
        ("id", "secret", "sts", "environment")
    assert "secret" not in repr(found) and "sts" not in repr(found)


def test_half_set_environment_names_the_missing_variable(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="ALIBABA_CLOUD_ACCESS_KEY_SECRET"):
        resolve_credentials({"ALIBABA_CLOUD_ACCESS_KEY_ID": "id"}, home=str(tmp_path))
    with pytest.raises(CredentialsError, match="ALIBABA_CLOUD_ACCESS_KEY_ID"):
        resolve_credentials({"ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s"}, home=str(tmp_path))


def test_no_credentials_anywhere_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError) as missing:
        resolve_credentials({}, home=str(tmp_path))
    message = str(missing.value)
    assert "ALIBABA_CLOUD_ACCESS_KEY_ID" in message and "ALIBABA_CLOUD_ACCESS_KEY_SECRET" in message
    assert "aliyun configure" in message and "credentials.ini" in message


def test_credentials_file_profile(tmp_path: Path) -> None:
    folder = tmp_path / ".alibabacloud"
    folder.mkdir()
    (folder / "credentials.ini").write_text(
        "[default]\ntype = access_key\naccess_key_id = file-id\naccess_key_secret = file-secret\n\n"
        "[prod]\ntype = access_key\naccess_key_id = prod-id\naccess_key_secret = prod-secret\n")
    assert resolve_credentials({}, home=str(tmp_path)).access_key_id == "file-id"
    chosen = resolve_credentials({"ALIBABA_CLOUD_PROFILE": "prod"}, home=str(tmp_path))
    assert (chosen.access_key_id, chosen.access_key_secret) == ("prod-id", "prod-secret")
    assert chosen.source.startswith("profile:")
    with pytest.raises(CredentialsError, match="staging"):
        resolve_credentials({"ALIBABA_CLOUD_PROFILE": "staging"}, home=str(tmp_path))


def test_cli_config_profile(tmp_path: Path) -> None:
    folder = tmp_path / ".aliyun"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"current": "work", "profiles": [
        {"name": "work", "mode": "AK", "access_key_id": "cli-id", "access_key_secret": "cli-secret"},
        {"name": "home", "mode": "AK", "access_key_id": "home-id", "access_key_secret": "home-secret"},
    ]}))
    assert resolve_credentials({}, home=str(tmp_path)).access_key_id == "cli-id"
    assert resolve_credentials({"ALIBABA_CLOUD_PROFILE": "home"}, home=str(tmp_path)).access_key_id == "home-id"
    (folder / "config.json").write_text("{ not json")
    with pytest.raises(CredentialsError, match="config.json"):
        resolve_credentials({}, home=str(tmp_path))


def test_explicit_credentials_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="ALIBABA_CLOUD_CREDENTIALS_FILE.*nowhere.ini"):
        resolve_credentials({"ALIBABA_CLOUD_CREDENTIALS_FILE": str(tmp_path / "nowhere.ini")}, home=str(tmp_path))


# -- endpoints and configuration ------------------------------------------------------------------


def test_endpoint_overrides() -> None:
    assert resolve_endpoint("http://127.0.0.1:8123", "X", {}) == Endpoint("127.0.0.1:8123", "http")
    assert resolve_endpoint(None, "AGENTPACK_FC_ENDPOINT", {"AGENTPACK_FC_ENDPOINT": "fcv3.cn-beijing.aliyuncs.com/"}) \
        == Endpoint("fcv3.cn-beijing.aliyuncs.com", "https")
    assert resolve_endpoint(None, "AGENTPACK_FC_ENDPOINT", {}) is None
    with pytest.raises(AlibabaConfigError, match="unsupported scheme 'ftp'"):
        resolve_endpoint("ftp://host", "X", {})
    with pytest.raises(AlibabaConfigError, match="AGENTPACK_AGENTRUN_ENDPOINT.*no path"):
        resolve_endpoint(None, "AGENTPACK_AGENTRUN_ENDPOINT", {"AGENTPACK_AGENTRUN_ENDPOINT": "https://h/api"})


def test_a_region_or_an_endpoint_is_required() -> None:
    from agentpack.deployers.clients.fc import FCApi

    with pytest.raises(AlibabaConfigError, match="no region.*AGENTPACK_FC_ENDPOINT"):
        FCApi(credentials=TEST_CREDENTIALS, environ={})
    assert FCApi(credentials=TEST_CREDENTIALS, environ={"ALIBABA_CLOUD_REGION_ID": "cn-shanghai"}).region == "cn-shanghai"


def test_missing_credentials_fail_before_any_call(tmp_path: Path) -> None:
    from agentpack.deployers.clients.agentrun import AgentRunApi

    with pytest.raises(CredentialsError, match="ALIBABA_CLOUD_ACCESS_KEY_ID"):
        AgentRunApi(region="cn-hangzhou", environ={"HOME": str(tmp_path)})


def test_sdk_modules_are_not_imported_by_agentpack() -> None:
    import subprocess
    import sys

    code = ("import sys, agentpack, agentpack.deployers.clients.alibaba, agentpack.deployers.clients.fc, "
            "agentpack.deployers.clients.agentrun; "
            "print(sorted(m for m in sys.modules if m.startswith(('alibabacloud', 'darabonba', 'Tea'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_spec_bodies_and_the_inline_limit() -> None:
    from agentpack.deployers.clients.agentrun import RuntimeSpec
    from agentpack.deployers.clients.fc import FunctionSpec

    body = FunctionSpec(name="fn", zip_bytes=ZIP_V1, port=8080, cpu=1.0, memory_size=2048,
                        session_affinity_header="x-agentpack-session-id", sessions_per_instance=10,
                        environment={"K": "v"}).to_api()
    assert body["sessionAffinity"] == "HEADER_FIELD"
    assert json.loads(body["sessionAffinityConfig"])["affinityHeaderFieldName"] == "x-agentpack-session-id"
    assert body["customRuntimeConfig"] == {"command": ["/code/bootstrap"], "port": 8080}
    assert body["handler"] == "index.handler" and "zipFile" in body["code"]
    assert "code" not in FunctionSpec(name="fn").to_api()
    too_big = bytes(100 * 1024 * 1024 + 1)
    with pytest.raises(AlibabaConfigError, match="through OSS"):
        FunctionSpec(name="fn", zip_bytes=too_big).to_api()
    with pytest.raises(AlibabaConfigError, match="through OSS"):
        RuntimeSpec(name="rt", command=["python3"], port=8090, zip_bytes=too_big).to_api()
    runtime = RuntimeSpec(name="rt", command=["python3", "-m", "app"], port=8090, zip_bytes=ZIP_V1).to_api()
    assert runtime["codeConfiguration"]["command"] == ["python3", "-m", "app"] and runtime["artifactType"] == "Code"


# -- errors and retries against the stand-ins ---------------------------------------------------------


class FakeTime:
    """A clock the waits and backoffs advance instead of sleeping."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def hook() -> RecordingHook:
    return RecordingHook()


@pytest.fixture
def fc(hook: RecordingHook) -> Iterator[FCStandIn]:
    with FCStandIn(on_code=hook) as stand_in:
        yield stand_in


@pytest.fixture
def fc_api(fc: FCStandIn, fake_time: FakeTime) -> Any:
    from agentpack.deployers.clients.fc import FCApi

    return FCApi(endpoint=f"http://{fc.endpoint}", credentials=TEST_CREDENTIALS,
                 retry=RetryPolicy(max_attempts=4, sleep=fake_time.sleep), environ={})


def spec(**overrides: Any) -> Any:
    from agentpack.deployers.clients.fc import FunctionSpec

    values: dict[str, Any] = dict(name="agent-fn", zip_bytes=ZIP_V1, port=9000, cpu=1.0, memory_size=2048,
                                  timeout=600, instance_concurrency=20, environment={"GREETING": "你好"},
                                  session_affinity_header="x-agentpack-session-id", health_check_path="/readiness")
    values.update(overrides)
    return FunctionSpec(**values)


@pytest.mark.integration
def test_endpoint_from_the_environment_reaches_the_stand_in(fc: FCStandIn) -> None:
    from agentpack.deployers.clients.fc import FCApi

    api = FCApi(credentials=TEST_CREDENTIALS, environ={"AGENTPACK_FC_ENDPOINT": f"http://{fc.endpoint}"})
    assert api.get_function("nothing-here") is None
    assert fc.calls_of("GetFunction")[0].status == 404


@pytest.mark.integration
def test_server_errors_are_retried_with_backoff(fc: FCStandIn, fc_api: Any, fake_time: FakeTime) -> None:
    fc.fail_next("GetFunction", times=3)
    assert fc_api.get_function("agent-fn") is None  # the 4th attempt reaches the stand-in: no such function
    assert [call.status for call in fc.calls_of("GetFunction")] == [503, 503, 503, 404]
    assert len(fake_time.sleeps) == 3 and all(0 <= s <= 10 for s in fake_time.sleeps)


@pytest.mark.integration
def test_throttling_honours_retry_after(fc: FCStandIn, fc_api: Any, fake_time: FakeTime) -> None:
    fc.throttle_next("ListFunctions", retry_after=1500)
    fc.throttle_next("ListFunctions")
    assert fc_api.list_functions() == []
    assert fake_time.sleeps[0] == 1.5 and len(fake_time.sleeps) == 2


@pytest.mark.integration
def test_retries_give_up_with_the_platform_error(fc: FCStandIn, fc_api: Any) -> None:
    fc.fail_next("GetFunction", times=10, status=500, code="InternalServerError", message="an internal error has occurred")
    with pytest.raises(PlatformError) as failed:
        fc_api.get_function("agent-fn")
    error = failed.value
    assert (error.code, error.status, error.action) == ("InternalServerError", 500, "GetFunction")
    assert error.message == "an internal error has occurred"
    assert error.request_id == fc.calls[-1].request_id
    assert len(fc.calls_of("GetFunction")) == 4
    assert str(error) == (f"GetFunction failed: InternalServerError: an internal error has occurred "
                          f"(HTTP 500, request id {error.request_id})")


@pytest.mark.integration
def test_client_errors_are_not_retried(fc: FCStandIn, fc_api: Any, fake_time: FakeTime) -> None:
    with pytest.raises(PlatformError) as refused:
        fc_api.create_or_update_function(spec(environment={"FC_REGION": "mine"}))
    assert (refused.value.code, refused.value.status) == ("InvalidArgument", 400)
    assert "reserved FC_ prefix" in refused.value.message
    assert len(fc.calls_of("CreateFunction")) == 1 and fake_time.sleeps == []


@pytest.mark.integration
def test_a_wrong_secret_is_a_platform_error(fc: FCStandIn) -> None:
    from agentpack.deployers.clients.fc import FCApi

    api = FCApi(endpoint=f"http://{fc.endpoint}", credentials=Credentials(TEST_ACCESS_KEY_ID, "wrong"), environ={})
    with pytest.raises(PlatformError) as refused:
        api.list_functions()
    assert (refused.value.code, refused.value.status) == ("SignatureNotMatch", 403)
    assert len(fc.calls) == 1


@pytest.mark.integration
def test_an_unreachable_endpoint_is_a_platform_error() -> None:
    from agentpack.deployers.clients.fc import FCApi
    from tests.support import free_port

    api = FCApi(endpoint=f"http://127.0.0.1:{free_port()}", credentials=TEST_CREDENTIALS, environ={})
    with pytest.raises(PlatformError) as unreachable:
        api.get_function("agent-fn")
    assert unreachable.value.code == "ConnectionError" and unreachable.value.status is None


# -- Function Compute flow -------------------------------------------------------------------------------


@pytest.mark.integration
def test_fc_create_or_update_publish_alias_trigger_and_delete(fc: FCStandIn, fc_api: Any, hook: RecordingHook) -> None:
    created = fc_api.create_or_update_function(spec())
    assert created["functionName"] == "agent-fn" and created["codeSize"] == len(ZIP_V1)
    assert fc.actions() == ["GetFunction", "CreateFunction"]
    sent = fc.calls_of("CreateFunction")[0].json
    assert sent["handler"] == "index.handler" and sent["customRuntimeConfig"]["healthCheckConfig"] == {"httpGetUrl": "/readiness"}
    assert json.loads(sent["sessionAffinityConfig"])["affinityHeaderFieldName"] == "x-agentpack-session-id"

    version_1 = fc_api.publish_version("agent-fn", "v1")
    fc_api.ensure_alias("agent-fn", "live", version_1)
    url_1 = fc_api.ensure_http_trigger("agent-fn", qualifier="live")
    assert url_1 == "http://127.0.0.1:1/agent-fn/upload-1"
    sent_trigger = json.loads(fc.calls_of("CreateTrigger")[0].json["triggerConfig"])
    assert sent_trigger["authType"] == "function" and "POST" in sent_trigger["methods"]

    # Unchanged trigger: nothing to update.
    assert fc_api.ensure_http_trigger("agent-fn", qualifier="live") == url_1
    assert fc.calls_of("UpdateTrigger") == []

    updated = fc_api.create_or_update_function(spec(zip_bytes=ZIP_V2, timeout=900))
    assert updated["timeout"] == 900 and fc.actions()[-2:] == ["GetFunction", "UpdateFunction"]
    assert "functionName" not in fc.calls_of("UpdateFunction")[0].json
    version_2 = fc_api.publish_version("agent-fn")
    fc_api.ensure_alias("agent-fn", "live", version_2)
    assert fc.calls_of("UpdateAlias")[0].json["versionId"] == "2"
    assert fc_api.ensure_http_trigger("agent-fn", qualifier="live") == "http://127.0.0.1:1/agent-fn/upload-2"

    # An update without code keeps the code (no zip is sent).
    fc_api.create_or_update_function(spec(zip_bytes=None, timeout=30))
    assert "code" not in fc.calls_of("UpdateFunction")[-1].json and fc.code_of("agent-fn") == ZIP_V2

    anonymous = fc_api.ensure_http_trigger("agent-fn", qualifier="live", auth_type="anonymous")
    assert anonymous.startswith("http://127.0.0.1:1/agent-fn/")
    assert json.loads(fc.calls_of("UpdateTrigger")[0].json["triggerConfig"])["authType"] == "anonymous"
    assert [v["versionId"] for v in fc_api.list_versions("agent-fn")] == ["2", "1"]

    assert fc_api.delete_function("agent-fn") is True
    assert "agent-fn" not in fc.functions
    assert fc_api.delete_function("agent-fn") is False


@pytest.mark.integration
def test_fc_create_that_loses_a_race_updates_instead(fc: FCStandIn, fc_api: Any) -> None:
    fc_api.create_or_update_function(spec())
    # Another deploy created it between our look-up and our create: the look-up says 404.
    fc.fail_next("GetFunction", status=404, code="FunctionNotFound", message="function 'agent-fn' does not exist")
    fc_api.create_or_update_function(spec(timeout=42))
    assert fc.actions()[-3:] == ["GetFunction", "CreateFunction", "UpdateFunction"]
    assert fc.functions["agent-fn"].config["timeout"] == 42


# -- AgentRun flow -----------------------------------------------------------------------------------


@pytest.fixture
def agentrun(hook: RecordingHook) -> Iterator[AgentRunStandIn]:
    with AgentRunStandIn(on_code=hook, ready_after_polls=2) as stand_in:
        yield stand_in


@pytest.fixture
def ar_api(agentrun: AgentRunStandIn, fake_time: FakeTime) -> Any:
    from agentpack.deployers.clients.agentrun import AgentRunApi

    return AgentRunApi(endpoint=f"http://{agentrun.endpoint}", credentials=TEST_CREDENTIALS,
                       retry=RetryPolicy(max_attempts=4, sleep=fake_time.sleep),
                       poll=PollPolicy(sleep=fake_time.sleep, clock=fake_time.clock), environ={})


def runtime_spec(**overrides: Any) -> Any:
    from agentpack.deployers.clients.agentrun import RuntimeSpec

    values: dict[str, Any] = dict(name="agent-rt", command=["python3", "-m", "agentpack.adapters.agentrun"], port=8090,
                                  zip_bytes=ZIP_V1, session_concurrency=50, session_idle_timeout_seconds=600,
                                  environment={"AGENTPACK_TARGET": "agentrun"}, health_check_path="/readiness")
    values.update(overrides)
    return RuntimeSpec(**values)


@pytest.mark.integration
def test_agentrun_deploy_flow_by_name(agentrun: AgentRunStandIn, ar_api: Any, fake_time: FakeTime) -> None:
    created = ar_api.create_or_update_runtime(runtime_spec())
    assert created["status"] == "CREATING"
    ready = ar_api.wait_until_ready(created["agentRuntimeId"], timeout=60)
    assert ready["status"] == "READY" and len(fake_time.sleeps) == 2
    assert fake_time.sleeps[1] > fake_time.sleeps[0]  # the poll interval grows
    runtime_id = ready["agentRuntimeId"]
    version_1 = ar_api.publish_version(runtime_id, "first")
    url_1 = ar_api.ensure_endpoint(runtime_id, "default", version_1, timeout=60)
    assert url_1 == "http://127.0.0.1:1/agent-rt/upload-1"
    sent = agentrun.calls_of("CreateAgentRuntime")[0].json
    assert sent["codeConfiguration"]["language"] == "python3.12" and sent["port"] == 8090
    assert sent["healthCheckConfiguration"] == {"httpGetUrl": "/readiness"}

    again = ar_api.create_or_update_runtime(runtime_spec(zip_bytes=ZIP_V2))
    assert again["agentRuntimeId"] == runtime_id and again["status"] == "UPDATING"
    ar_api.wait_until_ready(runtime_id, timeout=60)
    version_2 = ar_api.publish_version(runtime_id)
    assert ar_api.ensure_endpoint(runtime_id, "default", version_2, timeout=60) == "http://127.0.0.1:1/agent-rt/upload-2"
    assert agentrun.calls_of("UpdateAgentRuntimeEndpoint")[0].json["targetVersion"] == "2"
    # Same target: no update call, same URL.
    assert ar_api.ensure_endpoint(runtime_id, "default", version_2) == "http://127.0.0.1:1/agent-rt/upload-2"
    assert len(agentrun.calls_of("UpdateAgentRuntimeEndpoint")) == 1
    assert [v["agentRuntimeVersion"] for v in ar_api.list_versions(runtime_id)] == ["1", "2"]

    assert ar_api.delete_runtime(runtime_id, timeout=60) is True
    assert agentrun.by_name("agent-rt") is None
    assert ar_api.delete_runtime(runtime_id) is False
    assert ar_api.find_runtime_by_name("agent-rt") is None


@pytest.mark.integration
def test_agentrun_find_by_name_is_exact(agentrun: AgentRunStandIn, ar_api: Any) -> None:
    ar_api.create_or_update_runtime(runtime_spec(name="agent-rt-2"))
    assert ar_api.find_runtime_by_name("agent-rt") is None
    ar_api.create_or_update_runtime(runtime_spec())
    assert ar_api.find_runtime_by_name("agent-rt")["agentRuntimeName"] == "agent-rt"


@pytest.mark.integration
def test_agentrun_failed_runtime_ends_with_the_platform_reason(agentrun: AgentRunStandIn, ar_api: Any) -> None:
    agentrun.fail_next_deploy("process exited with code 1: ModuleNotFoundError: No module named 'fastapi'")
    created = ar_api.create_or_update_runtime(runtime_spec())
    with pytest.raises(ResourceFailed) as failed:
        ar_api.wait_until_ready(created["agentRuntimeId"], timeout=60)
    assert failed.value.code == "FAILED"
    assert "No module named 'fastapi'" in failed.value.message and "agent-rt" in failed.value.message


@pytest.mark.integration
def test_agentrun_wait_has_a_deadline(agentrun: AgentRunStandIn, ar_api: Any, fake_time: FakeTime) -> None:
    agentrun.hang_next_deploy()
    created = ar_api.create_or_update_runtime(runtime_spec())
    with pytest.raises(WaitTimeout) as late:
        ar_api.wait_until_ready(created["agentRuntimeId"], timeout=30)
    assert "still CREATING after 30 s" in late.value.message
    assert fake_time.now == pytest.approx(30) and max(fake_time.sleeps) <= 5.0


@pytest.mark.integration
def test_agentrun_update_waits_out_a_change_in_progress(agentrun: AgentRunStandIn, ar_api: Any) -> None:
    ar_api.create_or_update_runtime(runtime_spec())  # still CREATING
    updated = ar_api.create_or_update_runtime(runtime_spec(zip_bytes=ZIP_V2))
    assert updated["status"] == "UPDATING"
    assert [c.status for c in agentrun.calls_of("UpdateAgentRuntime")] == [200]


@pytest.mark.integration
def test_agentrun_polling_survives_throttling_and_5xx(agentrun: AgentRunStandIn, ar_api: Any) -> None:
    created = ar_api.create_or_update_runtime(runtime_spec())
    agentrun.throttle_next("GetAgentRuntime")
    agentrun.fail_next("GetAgentRuntime", status=502, code="BadGateway", message="upstream closed")
    assert ar_api.wait_until_ready(created["agentRuntimeId"], timeout=60)["status"] == "READY"
    assert [c.status for c in agentrun.calls_of("GetAgentRuntime")][:2] == [429, 502]


@pytest.mark.integration
def test_agentrun_endpoint_reported_active_counts_as_ready(hook: RecordingHook, fake_time: FakeTime) -> None:
    from agentpack.deployers.clients.agentrun import AgentRunApi

    with AgentRunStandIn(on_code=hook, ready_after_polls=1, endpoint_ready_status="ACTIVE") as stand_in:
        api = AgentRunApi(endpoint=f"http://{stand_in.endpoint}", credentials=TEST_CREDENTIALS, environ={},
                          poll=PollPolicy(sleep=fake_time.sleep, clock=fake_time.clock))
        runtime_id = api.create_or_update_runtime(runtime_spec())["agentRuntimeId"]
        api.wait_until_ready(runtime_id, timeout=60)
        assert api.ensure_endpoint(runtime_id, "default", "LATEST", timeout=60).endswith("/agent-rt/upload-1")
        assert [e["status"] for e in stand_in.runtimes[runtime_id].endpoints.values()] == ["ACTIVE"]


@pytest.mark.integration
def test_sts_credentials_send_the_security_token(hook: RecordingHook) -> None:
    from agentpack.deployers.clients.fc import FCApi

    with FCStandIn(on_code=hook, security_token="sts-token-0123") as stand_in:
        with_token = Credentials(TEST_ACCESS_KEY_ID, TEST_ACCESS_KEY_SECRET, security_token="sts-token-0123")
        api = FCApi(endpoint=f"http://{stand_in.endpoint}", credentials=with_token, environ={})
        assert api.list_functions() == []
        assert stand_in.calls[-1].headers["x-acs-security-token"] == "sts-token-0123"
        without = FCApi(endpoint=f"http://{stand_in.endpoint}", credentials=TEST_CREDENTIALS, environ={})
        with pytest.raises(PlatformError) as refused:
            without.list_functions()
        assert (refused.value.status, refused.value.code) == (403, "InvalidAccessKeyID")
        # A token that cannot travel in an HTTP header is reported as such, not as a network failure.
        odd = Credentials(TEST_ACCESS_KEY_ID, TEST_ACCESS_KEY_SECRET, security_token="令牌")
        with pytest.raises(PlatformError) as unsendable:
            FCApi(endpoint=f"http://{stand_in.endpoint}", credentials=odd, environ={}).list_functions()
        assert unsendable.value.code == "RequestError" and "UnicodeEncodeError" in unsendable.value.message


def test_only_sdk_failures_become_platform_errors() -> None:
    from agentpack.deployers.clients.alibaba import call

    def broken() -> None:
        raise KeyError("a bug in the caller")

    with pytest.raises(KeyError):
        call("GetFunction", broken)


def test_two_resources_of_one_name_are_an_error_naming_their_ids():
    from agentpack.deployers.clients.alibaba import only_one
    from agentpack.deployers.errors import PlatformError

    assert only_one([], "agents", "a", "code", "ListPublishedAgent") is None
    assert only_one([{"code": "x"}], "agents", "a", "code", "ListPublishedAgent") == {"code": "x"}
    with pytest.raises(PlatformError, match=r"2 agents are named 'a' in workspace w \(x, y\); delete the extra ones"):
        only_one([{"code": "x"}, {"code": "y"}], "agents", "a", "code", "ListPublishedAgent", " in workspace w")
