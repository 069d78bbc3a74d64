"""The FC and AgentRun stand-ins, driven by the real Alibaba Cloud SDK clients over loopback.

What a test here pins down is what the SDK (and so a deployer) sees: the requests it builds
are accepted and answered in the real shapes, every rule the published API states is
enforced with the SDK's real exception carrying code, message and request id, and the
stand-ins' failure injection and status machine behave as scripted.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any, Iterator

import pytest

from tests.standins import (
    TEST_ACCESS_KEY_ID,
    TEST_ACCESS_KEY_SECRET,
    AgentRunStandIn,
    FCStandIn,
    RecordingHook,
    crc64_xz,
    make_zip,
)
from tests.support import http

pytestmark = pytest.mark.integration

ZIP_V1 = make_zip({"bootstrap": "#!/bin/sh\nexec python3 -m app\n", "app.py": "print('v1')\n"})
ZIP_V2 = make_zip({"bootstrap": "#!/bin/sh\nexec python3 -m app\n", "app.py": "print('v2')\n"})


def sdk_config(endpoint: str, secret: str = TEST_ACCESS_KEY_SECRET, key_id: str = TEST_ACCESS_KEY_ID) -> Any:
    from alibabacloud_tea_openapi import utils_models as open_api_models

    return open_api_models.Config(access_key_id=key_id, access_key_secret=secret, endpoint=endpoint, protocol="http")


def runtime_options() -> Any:
    from darabonba.runtime import RuntimeOptions

    return RuntimeOptions()


# -- Function Compute ------------------------------------------------------------------------------


@pytest.fixture
def hook() -> RecordingHook:
    return RecordingHook()


@pytest.fixture
def fc(hook: RecordingHook) -> Iterator[FCStandIn]:
    with FCStandIn(on_code=hook, max_inline_zip=64 * 1024) as stand_in:
        yield stand_in


@pytest.fixture
def fc_client(fc: FCStandIn) -> Any:
    from alibabacloud_fc20230330.client import Client

    return Client(sdk_config(fc.endpoint))


def fc_models() -> Any:
    from alibabacloud_fc20230330 import models

    return models


def function_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "functionName": "agent-fn",
        "runtime": "custom.debian10",
        "handler": "index.handler",
        "code": {"zipFile": base64.b64encode(ZIP_V1).decode(), "checksum": str(crc64_xz(ZIP_V1))},
        "customRuntimeConfig": {"command": ["/code/bootstrap"], "port": 9000,
                                "healthCheckConfig": {"httpGetUrl": "/readiness"}},
        "cpu": 1.0,
        "memorySize": 2048,
        "diskSize": 512,
        "timeout": 600,
        "instanceConcurrency": 20,
        "environmentVariables": {"AGENTPACK_TARGET": "fc", "GREETING": "你好"},
        "internetAccess": True,
        "sessionAffinity": "HEADER_FIELD",
        "sessionAffinityConfig": json.dumps({"affinityHeaderFieldName": "x-agentpack-session-id",
                                             "sessionTTLInSeconds": 3600, "sessionConcurrencyPerInstance": 20}),
        "description": "agentpack test",
    }
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not None}


def create_function(client: Any, body: dict[str, Any]) -> Any:
    m = fc_models()
    return client.create_function_with_options(
        m.CreateFunctionRequest(body=m.CreateFunctionInput().from_map(body)), {}, runtime_options())


def http_trigger(client: Any, name: str = "agent-fn", trigger: str = "http", qualifier: str = "LATEST",
                 config: Any = None) -> Any:
    m = fc_models()
    raw = config if isinstance(config, str) else json.dumps(config or {"authType": "function", "methods": ["GET", "POST"]})
    return client.create_trigger_with_options(name, m.CreateTriggerRequest(body=m.CreateTriggerInput(
        trigger_name=trigger, trigger_type="http", qualifier=qualifier, trigger_config=raw)), {}, runtime_options())


def test_fc_full_lifecycle_with_the_real_sdk(fc: FCStandIn, fc_client: Any, hook: RecordingHook) -> None:
    m = fc_models()
    created = create_function(fc_client, function_body()).body
    assert created.function_name == "agent-fn"
    assert created.function_arn == f"acs:fc:{fc.region}:{fc.account_id}:functions/agent-fn"
    assert created.code_size == len(ZIP_V1) and created.code_checksum == str(crc64_xz(ZIP_V1))
    assert created.state == "Active" and created.custom_runtime_config.port == 9000
    assert hook.calls[0][0] == "agent-fn" and hook.calls[0][1] == ZIP_V1
    assert hook.calls[0][2]["environmentVariables"]["GREETING"] == "你好"

    got = fc_client.get_function_with_options("agent-fn", m.GetFunctionRequest(), {}, runtime_options()).body
    assert got.session_affinity == "HEADER_FIELD" and got.environment_variables["AGENTPACK_TARGET"] == "fc"

    version_1 = fc_client.publish_function_version_with_options(
        "agent-fn", m.PublishFunctionVersionRequest(body=m.PublishVersionInput(description="first")), {},
        runtime_options()).body.version_id
    fc_client.create_alias_with_options("agent-fn", m.CreateAliasRequest(body=m.CreateAliasInput(
        alias_name="live", version_id=version_1)), {}, runtime_options())
    trigger = http_trigger(fc_client, qualifier="live").body
    assert trigger.trigger_type == "http" and trigger.qualifier == "live"
    assert trigger.http_trigger.url_internet == "http://127.0.0.1:1/agent-fn/upload-1"
    assert trigger.http_trigger.url_intranet.endswith("-vpc.fcapp.run")

    updated = fc_client.update_function_with_options("agent-fn", m.UpdateFunctionRequest(body=m.UpdateFunctionInput(
        code=m.InputCodeLocation(zip_file=base64.b64encode(ZIP_V2).decode()), timeout=900)), {}, runtime_options()).body
    assert updated.timeout == 900 and updated.code_size == len(ZIP_V2)
    assert hook.calls[-1][1] == ZIP_V2
    # The alias still routes to version 1, whose code was the first upload.
    assert fc_client.get_trigger_with_options("agent-fn", "http", {}, runtime_options()).body \
        .http_trigger.url_internet == "http://127.0.0.1:1/agent-fn/upload-1"

    version_2 = fc_client.publish_function_version_with_options(
        "agent-fn", m.PublishFunctionVersionRequest(body=m.PublishVersionInput()), {}, runtime_options()).body.version_id
    assert (version_1, version_2) == ("1", "2")
    fc_client.update_alias_with_options("agent-fn", "live", m.UpdateAliasRequest(body=m.UpdateAliasInput(
        version_id=version_2)), {}, runtime_options())
    assert fc_client.get_alias_with_options("agent-fn", "live", {}, runtime_options()).body.version_id == "2"
    assert fc_client.get_trigger_with_options("agent-fn", "http", {}, runtime_options()).body \
        .http_trigger.url_internet == "http://127.0.0.1:1/agent-fn/upload-2"
    assert fc.code_of("agent-fn", "1") == ZIP_V1 and fc.code_of("agent-fn", "live") == ZIP_V2

    versions = fc_client.list_function_versions_with_options("agent-fn", m.ListFunctionVersionsRequest(), {},
                                                             runtime_options()).body
    assert [v.version_id for v in versions.versions] == ["2", "1"] and versions.direction == "BACKWARD"
    triggers = fc_client.list_triggers_with_options("agent-fn", m.ListTriggersRequest(), {}, runtime_options()).body
    assert [t.trigger_name for t in triggers.triggers] == ["http"]
    listed = fc_client.list_functions_with_options(m.ListFunctionsRequest(prefix="agent"), {}, runtime_options()).body
    assert [f.function_name for f in listed.functions] == ["agent-fn"]

    assert fc_client.delete_trigger_with_options("agent-fn", "http", {}, runtime_options()).status_code == 204
    fc_client.delete_alias_with_options("agent-fn", "live", {}, runtime_options())
    fc_client.delete_function_version_with_options("agent-fn", "1", {}, runtime_options())
    assert fc_client.delete_function_with_options("agent-fn", {}, runtime_options()).status_code == 204
    with pytest.raises(Exception) as gone:
        fc_client.get_function_with_options("agent-fn", m.GetFunctionRequest(), {}, runtime_options())
    assert (gone.value.status_code, gone.value.code) == (404, "FunctionNotFound")
    assert fc.actions()[:3] == ["CreateFunction", "GetFunction", "PublishFunctionVersion"]


def assert_refused(exc_info: Any, fc_or_ar: Any, status: int, code: str, words: str) -> None:
    """The SDK raised its real exception with the stand-in's code, message and request id."""
    from alibabacloud_tea_openapi.exceptions import ClientException

    error = exc_info.value
    assert isinstance(error, ClientException), type(error)
    assert (error.status_code, error.code) == (status, code), (error.status_code, error.code, error.message)
    assert words in error.message, error.message
    last = fc_or_ar.calls[-1]
    assert error.request_id == last.request_id and last.error_code == code


def test_fc_rejects_a_wrong_secret_and_an_unknown_key(fc: FCStandIn) -> None:
    from alibabacloud_fc20230330.client import Client

    m = fc_models()
    with pytest.raises(Exception) as wrong:
        Client(sdk_config(fc.endpoint, secret="not-the-secret")).get_function_with_options(
            "agent-fn", m.GetFunctionRequest(), {}, runtime_options())
    assert_refused(wrong, fc, 403, "SignatureNotMatch", "signature we calculated does not match")
    with pytest.raises(Exception) as unknown:
        Client(sdk_config(fc.endpoint, key_id="LTAI-someone-else")).get_function_with_options(
            "agent-fn", m.GetFunctionRequest(), {}, runtime_options())
    assert_refused(unknown, fc, 403, "InvalidAccessKeyID", "LTAI-someone-else")
    assert fc.functions == {}


def test_fc_checks_the_payload_hash_before_anything_else(fc: FCStandIn) -> None:
    body = json.dumps(function_body()).encode()
    answer = http.post(f"http://{fc.endpoint}/2023-03-30/functions", content=body, headers={
        "x-acs-version": "2023-03-30", "x-acs-action": "CreateFunction", "content-type": "application/json",
        "x-acs-content-sha256": hashlib.sha256(b"something else").hexdigest()})
    assert answer.status_code == 400
    assert answer.json()["Code"] == "ContentSHA256Mismatch"
    assert answer.json()["RequestId"] == answer.headers["x-acs-request-id"]
    assert fc.functions == {}


FC_CREATE_RULES = [
    ({"functionName": "9starts-with-digit"}, "functionName must be 1-64"),
    ({"functionName": "x" * 65}, "functionName must be 1-64"),
    ({"runtime": "python2.7"}, "runtime 'python2.7' is not supported"),
    ({"handler": None}, "handler is required"),
    ({"code": None}, "code is required"),
    ({"code": {"zipFile": base64.b64encode(ZIP_V1).decode(), "ossBucketName": "b", "ossObjectName": "k"}},
     "exactly one source"),
    ({"code": {}}, "exactly one source"),
    ({"code": {"zipFile": "not base64 at all!"}}, "not valid base64"),
    ({"code": {"zipFile": base64.b64encode(b"plain text, no zip").decode()}}, "not a valid zip"),
    ({"code": {"zipFile": base64.b64encode(ZIP_V1).decode(), "checksum": "12345"}}, "does not match"),
    ({"code": {"ossBucketName": "bucket", "ossObjectName": "missing.zip"}}, "unable to access object"),
    ({"cpu": 0.33}, "multiple of 0.05"),
    ({"cpu": 17.0, "memorySize": 32768}, "between 0.05 and 16"),
    ({"cpu": 1.0, "memorySize": 8192}, "between 1:1 and 1:4"),
    ({"cpu": 4.0, "memorySize": 2048}, "between 1:1 and 1:4"),
    ({"memorySize": 1000}, "multiple of 64"),
    ({"diskSize": 1024}, "diskSize must be 512 or 10240"),
    ({"timeout": 0}, "timeout must be between 1 and 86400"),
    ({"timeout": 86401}, "timeout must be between 1 and 86400"),
    ({"instanceConcurrency": 201}, "instanceConcurrency must be between 1 and 200"),
    ({"environmentVariables": {"FC_FUNCTION_NAME": "mine"}}, "reserved FC_ prefix"),
    ({"environmentVariables": {"1ABC": "x"}}, "must start with a letter"),
    ({"environmentVariables": {"A-B": "x"}}, "must start with a letter"),
    ({"environmentVariables": {f"K{i}": "v" * 100 for i in range(41)}}, "the limit is 4096"),
    ({"role": "admin"}, "RAM role ARN"),
    ({"sessionAffinity": "STICKY"}, "sessionAffinity must be one of"),
    ({"sessionAffinityConfig": "{not json"}, "not valid JSON"),
    ({"sessionAffinityConfig": json.dumps({"affinityHeaderFieldName": "bad header!"})}, "HTTP header name"),
    ({"customRuntimeConfig": {"command": "/code/bootstrap", "port": 9000}}, "list of strings"),
    ({"customRuntimeConfig": {"command": ["/code/bootstrap"], "port": 70000}}, "between 1 and 65535"),
    ({"instanceIsolationMode": "PRIVATE"}, "instanceIsolationMode must be one of"),
]


@pytest.mark.parametrize("overrides, words", FC_CREATE_RULES, ids=[w for _, w in FC_CREATE_RULES])
def test_fc_create_function_enforces_the_published_rules(fc: FCStandIn, fc_client: Any, overrides: dict,
                                                         words: str) -> None:
    with pytest.raises(Exception) as refused:
        create_function(fc_client, function_body(**overrides))
    assert_refused(refused, fc, 400, "InvalidArgument", words)
    assert fc.functions == {}


def test_fc_inline_code_above_the_limit_is_entity_too_large(fc: FCStandIn, fc_client: Any) -> None:
    import os

    big = make_zip({"blob.txt": base64.b64encode(os.urandom(90 * 1024)).decode()})  # random text barely compresses
    assert len(big) > fc.max_inline_zip
    with pytest.raises(Exception) as refused:
        create_function(fc_client, function_body(code={"zipFile": base64.b64encode(big).decode()}))
    assert_refused(refused, fc, 400, "EntityTooLarge", "through OSS")


def test_fc_code_from_oss_is_read_from_the_bucket(fc: FCStandIn, fc_client: Any, hook: RecordingHook) -> None:
    fc.oss_objects[("artifacts", "agent.zip")] = ZIP_V2
    created = create_function(fc_client, function_body(code={"ossBucketName": "artifacts", "ossObjectName": "agent.zip"}))
    assert created.body.code_size == len(ZIP_V2)
    assert hook.calls[-1][1] == ZIP_V2


def test_fc_update_checks_the_merged_configuration(fc: FCStandIn, fc_client: Any) -> None:
    m = fc_models()
    create_function(fc_client, function_body())
    with pytest.raises(Exception) as refused:  # memory alone breaks the ratio with the stored cpu of 1.0
        fc_client.update_function_with_options("agent-fn", m.UpdateFunctionRequest(body=m.UpdateFunctionInput(
            memory_size=8192)), {}, runtime_options())
    assert_refused(refused, fc, 400, "InvalidArgument", "between 1:1 and 1:4")
    with pytest.raises(Exception) as missing:
        fc_client.update_function_with_options("no-such-fn", m.UpdateFunctionRequest(body=m.UpdateFunctionInput(
            timeout=5)), {}, runtime_options())
    assert_refused(missing, fc, 404, "FunctionNotFound", "no-such-fn")


TRIGGER_RULES = [
    ({"authType": "everyone", "methods": ["GET"]}, "authType must be one of"),
    ({"authType": "function", "methods": []}, "non-empty list"),
    ({"authType": "function", "methods": ["GET", "FETCH"]}, "unsupported HTTP method"),
    ("{broken", "not valid JSON"),
]


@pytest.mark.parametrize("config, words", TRIGGER_RULES, ids=[w for _, w in TRIGGER_RULES])
def test_fc_http_trigger_config_is_checked(fc: FCStandIn, fc_client: Any, config: Any, words: str) -> None:
    create_function(fc_client, function_body())
    with pytest.raises(Exception) as refused:
        http_trigger(fc_client, config=config)
    assert_refused(refused, fc, 400, "InvalidArgument", words)
    assert fc.functions["agent-fn"].triggers == {}


def test_fc_not_found_and_already_exists(fc: FCStandIn, fc_client: Any) -> None:
    m = fc_models()
    with pytest.raises(Exception) as no_function:
        fc_client.get_function_with_options("ghost", m.GetFunctionRequest(), {}, runtime_options())
    assert_refused(no_function, fc, 404, "FunctionNotFound", "ghost")
    create_function(fc_client, function_body())
    with pytest.raises(Exception) as duplicate:
        create_function(fc_client, function_body())
    assert_refused(duplicate, fc, 409, "FunctionAlreadyExists", "agent-fn")
    with pytest.raises(Exception) as no_trigger:
        fc_client.get_trigger_with_options("agent-fn", "ghost", {}, runtime_options())
    assert_refused(no_trigger, fc, 404, "TriggerNotFound", "ghost")
    http_trigger(fc_client)
    with pytest.raises(Exception) as duplicate_trigger:
        http_trigger(fc_client)
    assert_refused(duplicate_trigger, fc, 409, "TriggerAlreadyExists", "http")
    with pytest.raises(Exception) as busy:
        fc_client.delete_function_with_options("agent-fn", {}, runtime_options())
    assert_refused(busy, fc, 409, "FunctionNotEmpty", "triggers")
    with pytest.raises(Exception) as no_version:
        http_trigger(fc_client, trigger="other", qualifier="7")
    assert_refused(no_version, fc, 404, "VersionNotFound", "7")


def test_fc_injected_server_errors_and_throttling(fc: FCStandIn, fc_client: Any) -> None:
    from alibabacloud_tea_openapi.exceptions import ClientException, ServerException, ThrottlingException

    m = fc_models()
    create_function(fc_client, function_body())
    fc.fail_next("GetFunction", times=2)
    for _ in range(2):
        with pytest.raises(ServerException) as unavailable:
            fc_client.get_function_with_options("agent-fn", m.GetFunctionRequest(), {}, runtime_options())
        assert (unavailable.value.status_code, unavailable.value.code) == (503, "ServiceUnavailable")
    assert fc_client.get_function_with_options("agent-fn", m.GetFunctionRequest(), {}, runtime_options()).status_code == 200

    fc.throttle_next("GetFunction")
    with pytest.raises(ClientException) as throttled:
        fc_client.get_function_with_options("agent-fn", m.GetFunctionRequest(), {}, runtime_options())
    assert (throttled.value.status_code, throttled.value.code) == (429, "Throttling")
    fc.throttle_next("GetFunction", retry_after=1500)
    with pytest.raises(ThrottlingException) as slow_down:
        fc_client.get_function_with_options("agent-fn", m.GetFunctionRequest(), {}, runtime_options())
    assert slow_down.value.retry_after == 1500
    assert [c.status for c in fc.calls_of("GetFunction")] == [503, 503, 200, 429, 429]


# -- AgentRun ---------------------------------------------------------------------------------------


@pytest.fixture
def agentrun(hook: RecordingHook) -> Iterator[AgentRunStandIn]:
    with AgentRunStandIn(on_code=hook, ready_after_polls=2, max_inline_zip=64 * 1024) as stand_in:
        yield stand_in


@pytest.fixture
def ar_client(agentrun: AgentRunStandIn) -> Any:
    from alibabacloud_agentrun20250910.client import Client

    return Client(sdk_config(agentrun.endpoint))


def ar_models() -> Any:
    from alibabacloud_agentrun20250910 import models

    return models


def runtime_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "agentRuntimeName": "agent-rt",
        "artifactType": "Code",
        "codeConfiguration": {"zipFile": base64.b64encode(ZIP_V1).decode(), "checksum": str(crc64_xz(ZIP_V1)),
                              "language": "python3.12", "command": ["python3", "-m", "agentpack.adapters.agentrun"]},
        "cpu": 2.0,
        "memory": 4096,
        "port": 8090,
        "sessionConcurrencyLimitPerInstance": 50,
        "sessionIdleTimeoutSeconds": 600,
        "environmentVariables": {"AGENTPACK_TARGET": "agentrun"},
        "healthCheckConfiguration": {"httpGetUrl": "/readiness"},
        "executionRoleArn": "acs:ram::1234567890123456:role/agentpack",
    }
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not None}


def create_runtime(client: Any, body: dict[str, Any]) -> Any:
    m = ar_models()
    return client.create_agent_runtime_with_options(
        m.CreateAgentRuntimeRequest(body=m.CreateAgentRuntimeInput().from_map(body)), {}, runtime_options())


def poll_status(client: Any, runtime_id: str) -> str:
    m = ar_models()
    return client.get_agent_runtime_with_options(runtime_id, m.GetAgentRuntimeRequest(), {},
                                                 runtime_options()).body.data.status


def test_agentrun_full_lifecycle_with_the_real_sdk(agentrun: AgentRunStandIn, ar_client: Any, hook: RecordingHook) -> None:
    m = ar_models()
    created = create_runtime(ar_client, runtime_body()).body
    assert created.code == "SUCCESS" and created.request_id == agentrun.calls[-1].request_id
    runtime = created.data
    assert runtime.status == "CREATING" and runtime.agent_runtime_name == "agent-rt" and runtime.port == 8090
    assert runtime.code_configuration.zip_file is None  # the zip is not echoed back
    assert hook.calls[0][1] == ZIP_V1 and hook.calls[0][2]["port"] == 8090
    runtime_id = runtime.agent_runtime_id
    assert [poll_status(ar_client, runtime_id) for _ in range(3)] == ["CREATING", "CREATING", "READY"]

    version_1 = ar_client.publish_runtime_version_with_options(runtime_id, m.PublishRuntimeVersionRequest(
        body=m.PublishRuntimeVersionInput(description="first")), {}, runtime_options()).body.data.agent_runtime_version
    endpoint = ar_client.create_agent_runtime_endpoint_with_options(runtime_id, m.CreateAgentRuntimeEndpointRequest(
        body=m.CreateAgentRuntimeEndpointInput(agent_runtime_endpoint_name="default", target_version=version_1)), {},
        runtime_options()).body.data
    assert endpoint.status == "CREATING" and endpoint.endpoint_public_url == "http://127.0.0.1:1/agent-rt/upload-1"
    endpoint_id = endpoint.agent_runtime_endpoint_id
    statuses = [ar_client.get_agent_runtime_endpoint_with_options(runtime_id, endpoint_id, {}, runtime_options())
                .body.data.status for _ in range(3)]
    assert statuses == ["CREATING", "CREATING", "READY"]

    updated = ar_client.update_agent_runtime_with_options(runtime_id, m.UpdateAgentRuntimeRequest(
        body=m.UpdateAgentRuntimeInput().from_map(runtime_body(codeConfiguration={
            "zipFile": base64.b64encode(ZIP_V2).decode(), "language": "python3.12", "command": ["python3", "main.py"]}))),
        {}, runtime_options()).body.data
    assert updated.status == "UPDATING" and hook.calls[-1][1] == ZIP_V2
    assert [poll_status(ar_client, runtime_id) for _ in range(3)] == ["UPDATING", "UPDATING", "READY"]
    version_2 = ar_client.publish_runtime_version_with_options(runtime_id, m.PublishRuntimeVersionRequest(
        body=m.PublishRuntimeVersionInput()), {}, runtime_options()).body.data.agent_runtime_version
    assert (version_1, version_2) == ("1", "2")
    # The endpoint still serves version 1 until it is retargeted.
    assert ar_client.get_agent_runtime_endpoint_with_options(runtime_id, endpoint_id, {}, runtime_options()) \
        .body.data.endpoint_public_url.endswith("upload-1")
    retargeted = ar_client.update_agent_runtime_endpoint_with_options(runtime_id, endpoint_id,
        m.UpdateAgentRuntimeEndpointRequest(body=m.UpdateAgentRuntimeEndpointInput(target_version=version_2)), {},
        runtime_options()).body.data
    assert retargeted.target_version == "2" and retargeted.endpoint_public_url.endswith("upload-2")

    listed = ar_client.list_agent_runtimes_with_options(m.ListAgentRuntimesRequest(agent_runtime_name="agent-rt"), {},
                                                        runtime_options()).body.data
    assert listed.total == 1 and listed.items[0].agent_runtime_id == runtime_id
    versions = ar_client.list_agent_runtime_versions_with_options(runtime_id, m.ListAgentRuntimeVersionsRequest(), {},
                                                                  runtime_options()).body.data
    assert [v.agent_runtime_version for v in versions.items] == ["1", "2"]
    endpoints = ar_client.list_agent_runtime_endpoints_with_options(runtime_id, m.ListAgentRuntimeEndpointsRequest(
        endpoint_name="default"), {}, runtime_options()).body.data
    assert [e.agent_runtime_endpoint_name for e in endpoints.items] == ["default"]

    ar_client.delete_agent_runtime_endpoint_with_options(runtime_id, endpoint_id, {}, runtime_options())
    deleting = ar_client.delete_agent_runtime_with_options(runtime_id, {}, runtime_options()).body.data
    assert deleting.status == "DELETING"
    assert [poll_status(ar_client, runtime_id) for _ in range(2)] == ["DELETING", "DELETING"]
    with pytest.raises(Exception) as gone:
        poll_status(ar_client, runtime_id)
    assert (gone.value.status_code, gone.value.code) == (404, "ERR_NOT_FOUND")
    assert agentrun.by_name("agent-rt") is None


def test_agentrun_list_filters_by_name_fuzzy_unless_exact(agentrun: AgentRunStandIn, ar_client: Any) -> None:
    m = ar_models()
    create_runtime(ar_client, runtime_body(agentRuntimeName="agent"))
    create_runtime(ar_client, runtime_body(agentRuntimeName="agent-2"))
    fuzzy = ar_client.list_agent_runtimes_with_options(m.ListAgentRuntimesRequest(agent_runtime_name="agent"), {},
                                                       runtime_options()).body.data
    assert sorted(item.agent_runtime_name for item in fuzzy.items) == ["agent", "agent-2"]
    exact = ar_client.list_agent_runtimes_with_options(m.ListAgentRuntimesRequest(
        agent_runtime_name="agent", search_mode="exact"), {}, runtime_options()).body.data
    assert [item.agent_runtime_name for item in exact.items] == ["agent"]


def test_agentrun_rejects_a_wrong_secret_in_its_own_envelope(agentrun: AgentRunStandIn) -> None:
    from alibabacloud_agentrun20250910.client import Client

    m = ar_models()
    with pytest.raises(Exception) as wrong:
        Client(sdk_config(agentrun.endpoint, secret="nope")).list_agent_runtimes_with_options(
            m.ListAgentRuntimesRequest(), {}, runtime_options())
    assert_refused(wrong, agentrun, 403, "SignatureDoesNotMatch", "signature we calculated does not match")
    assert wrong.value.data["requestId"] == wrong.value.request_id


AGENTRUN_RULES = [
    ({"agentRuntimeName": "-leading-dash"}, "agentRuntimeName must start with a letter"),
    ({"artifactType": "Binary"}, "artifactType must be one of"),
    ({"codeConfiguration": None}, "needs codeConfiguration"),
    ({"codeConfiguration": {"zipFile": base64.b64encode(ZIP_V1).decode(), "ossBucketName": "b", "ossObjectName": "k",
                            "language": "python3.12", "command": ["python3"]}}, "exactly one source"),
    ({"codeConfiguration": {"zipFile": base64.b64encode(ZIP_V1).decode(), "language": "python2.7",
                            "command": ["python"]}}, "language must be one of"),
    ({"codeConfiguration": {"zipFile": base64.b64encode(ZIP_V1).decode(), "language": "python3.12", "command": []}},
     "command must be a non-empty list"),
    ({"codeConfiguration": {"zipFile": base64.b64encode(b"no zip").decode(), "language": "python3.12",
                            "command": ["python3"]}}, "not a valid zip"),
    ({"codeConfiguration": {"zipFile": base64.b64encode(ZIP_V1).decode(), "checksum": "1", "language": "python3.12",
                            "command": ["python3"]}}, "does not match"),
    ({"port": 0}, "port must be between 1 and 65535"),
    ({"memory": 64}, "memory must be 128-32768"),
    ({"cpu": None}, "cpu is required"),
    ({"sessionConcurrencyLimitPerInstance": 0}, "sessionConcurrencyLimitPerInstance must be 1-200"),
    ({"environmentVariables": {"BAD-KEY": "1"}}, "is not valid"),
    ({"executionRoleArn": "root"}, "RAM role ARN"),
    ({"healthCheckConfiguration": {"httpGetUrl": "readiness"}}, "starting with '/'"),
]


@pytest.mark.parametrize("overrides, words", AGENTRUN_RULES, ids=[w for _, w in AGENTRUN_RULES])
def test_agentrun_create_enforces_its_rules(agentrun: AgentRunStandIn, ar_client: Any, overrides: dict,
                                            words: str) -> None:
    with pytest.raises(Exception) as refused:
        create_runtime(ar_client, runtime_body(**overrides))
    assert_refused(refused, agentrun, 400, "ERR_VALIDATION_FAILED", words)
    assert agentrun.runtimes == {}


def test_agentrun_conflicts_and_unknown_ids(agentrun: AgentRunStandIn, ar_client: Any) -> None:
    m = ar_models()
    runtime_id = create_runtime(ar_client, runtime_body()).body.data.agent_runtime_id
    with pytest.raises(Exception) as duplicate:
        create_runtime(ar_client, runtime_body())
    assert_refused(duplicate, agentrun, 409, "ERR_CONFLICT", "already exists")
    with pytest.raises(Exception) as not_ready:
        ar_client.publish_runtime_version_with_options(runtime_id, m.PublishRuntimeVersionRequest(
            body=m.PublishRuntimeVersionInput()), {}, runtime_options())
    assert_refused(not_ready, agentrun, 409, "ERR_CONFLICT", "CREATING")
    with pytest.raises(Exception) as busy:
        ar_client.update_agent_runtime_with_options(runtime_id, m.UpdateAgentRuntimeRequest(
            body=m.UpdateAgentRuntimeInput(port=9000)), {}, runtime_options())
    assert_refused(busy, agentrun, 409, "ERR_CONFLICT", "wait until it is READY")
    with pytest.raises(Exception) as unknown:
        ar_client.get_agent_runtime_endpoint_with_options(runtime_id, "no-such-endpoint", {}, runtime_options())
    assert_refused(unknown, agentrun, 404, "ERR_NOT_FOUND", "no-such-endpoint")


def test_agentrun_scripted_failure_carries_the_reason(agentrun: AgentRunStandIn, ar_client: Any) -> None:
    agentrun.fail_next_deploy("health check on /readiness failed: connection refused on port 8090", name="agent-rt")
    runtime_id = create_runtime(ar_client, runtime_body()).body.data.agent_runtime_id
    assert [poll_status(ar_client, runtime_id) for _ in range(3)] == ["CREATING", "CREATING", "FAILED"]
    m = ar_models()
    data = ar_client.get_agent_runtime_with_options(runtime_id, m.GetAgentRuntimeRequest(), {}, runtime_options()).body.data
    assert data.status_reason == "health check on /readiness failed: connection refused on port 8090"
    # A failed runtime can be updated again; without a script the next attempt gets READY.
    ar_client.update_agent_runtime_with_options(runtime_id, m.UpdateAgentRuntimeRequest(
        body=m.UpdateAgentRuntimeInput(port=9000)), {}, runtime_options())
    assert [poll_status(ar_client, runtime_id) for _ in range(3)] == ["UPDATING", "UPDATING", "READY"]


def test_agentrun_slow_ready_waits_for_seconds_as_well_as_polls(hook: RecordingHook) -> None:
    from alibabacloud_agentrun20250910.client import Client

    with AgentRunStandIn(on_code=hook, ready_after_polls=0, ready_after_seconds=3600) as slow:
        client = Client(sdk_config(slow.endpoint))
        runtime_id = create_runtime(client, runtime_body()).body.data.agent_runtime_id
        assert {poll_status(client, runtime_id) for _ in range(5)} == {"CREATING"}
        slow.ready_after_seconds = 0
        assert poll_status(client, runtime_id) == "READY"


def test_agentrun_injected_server_errors_and_throttling(agentrun: AgentRunStandIn, ar_client: Any) -> None:
    from alibabacloud_tea_openapi.exceptions import ClientException, ServerException

    m = ar_models()
    agentrun.fail_next("ListAgentRuntimes", status=500, code="ERR_INTERNAL_SERVER_ERROR", message="boom")
    with pytest.raises(ServerException) as failed:
        ar_client.list_agent_runtimes_with_options(m.ListAgentRuntimesRequest(), {}, runtime_options())
    assert (failed.value.status_code, failed.value.code, failed.value.data["message"]) == (500, "ERR_INTERNAL_SERVER_ERROR", "boom")
    agentrun.throttle_next("ListAgentRuntimes")
    with pytest.raises(ClientException) as throttled:
        ar_client.list_agent_runtimes_with_options(m.ListAgentRuntimesRequest(), {}, runtime_options())
    assert (throttled.value.status_code, throttled.value.code) == (429, "Throttling")
    assert ar_client.list_agent_runtimes_with_options(m.ListAgentRuntimesRequest(), {}, runtime_options()).body.data.total == 0


def test_crc64_matches_the_reference_check_value_on_both_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.standins import acs

    assert crc64_xz(b"123456789") == 0x995DC9BBDF1939FA  # CRC-64/XZ check value
    monkeypatch.setattr(acs, "_FAST", [None])  # force the pure-Python table
    assert crc64_xz(b"123456789") == 0x995DC9BBDF1939FA
    assert crc64_xz(ZIP_V1) == crc64_xz(bytearray(ZIP_V1))


# -- Object Storage Service ------------------------------------------------------------------------


@pytest.fixture
def oss(tmp_path: Any) -> Iterator[Any]:
    from tests.standins import OSSStandIn

    with OSSStandIn(tmp_path / "oss", buckets=("artifacts",)) as stand_in:
        yield stand_in


def oss_client(stand_in: Any, secret: str = TEST_ACCESS_KEY_SECRET, region: str = "cn-hangzhou", key_id: str = TEST_ACCESS_KEY_ID) -> Any:
    import alibabacloud_oss_v2 as oss_sdk

    config = oss_sdk.config.load_default()
    config.credentials_provider = oss_sdk.credentials.StaticCredentialsProvider(key_id, secret)
    config.region = region
    config.endpoint = f"http://{stand_in.endpoint}"
    config.retry_max_attempts = 1
    return oss_sdk.Client(config)


def oss_refusal(exc_info: Any, stand_in: Any, status: int, code: str) -> Any:
    """The SDK raised its real ServiceError with the stand-in's code and request id."""
    from alibabacloud_oss_v2 import exceptions

    inner = exc_info.value.unwrap()
    assert isinstance(inner, exceptions.ServiceError), type(inner)
    assert (inner.status_code, inner.code) == (status, code), (inner.status_code, inner.code, inner.message)
    assert inner.request_id == stand_in.calls[-1].request_id and stand_in.calls[-1].error_code == code
    return inner


def test_oss_put_head_get_delete_round_trip_with_a_v4_signature(oss: Any) -> None:
    import alibabacloud_oss_v2 as oss_sdk

    client = oss_client(oss)
    put = client.put_object(oss_sdk.PutObjectRequest(bucket="artifacts", key="代理/agent.zip", body=ZIP_V1))
    assert put.hash_crc64 == str(crc64_xz(ZIP_V1)) and put.etag == f'"{hashlib.md5(ZIP_V1).hexdigest().upper()}"'
    head = client.head_object(oss_sdk.HeadObjectRequest(bucket="artifacts", key="代理/agent.zip"))
    assert (head.content_length, head.hash_crc64, head.object_type) == (len(ZIP_V1), str(crc64_xz(ZIP_V1)), "Normal")
    assert client.get_object(oss_sdk.GetObjectRequest(bucket="artifacts", key="代理/agent.zip")).body.read() == ZIP_V1
    client.delete_object(oss_sdk.DeleteObjectRequest(bucket="artifacts", key="代理/agent.zip"))
    client.delete_object(oss_sdk.DeleteObjectRequest(bucket="artifacts", key="代理/agent.zip"))  # gone: still 204
    assert oss.keys("artifacts") == [] and [c.status for c in oss.calls_of("DeleteObject")] == [204, 204]


def test_oss_refuses_a_wrong_secret_region_or_key(oss: Any) -> None:
    import alibabacloud_oss_v2 as oss_sdk

    request = oss_sdk.HeadObjectRequest(bucket="artifacts", key="x")
    for client, code in [(oss_client(oss, secret="wrong"), "SignatureDoesNotMatch"), (oss_client(oss, region="cn-beijing"), "SignatureDoesNotMatch"),
                         (oss_client(oss, key_id="LTAI-unknown"), "InvalidAccessKeyId")]:
        with pytest.raises(Exception) as refused:
            client.head_object(request)
        oss_refusal(refused, oss, 403, code)
    with pytest.raises(Exception) as refused:  # a body-carrying request is refused too, and the connection stays usable
        oss_client(oss, secret="wrong").put_object(oss_sdk.PutObjectRequest(bucket="artifacts", key="x", body=b"x" * 200_000))
    oss_refusal(refused, oss, 403, "SignatureDoesNotMatch")
    assert oss.keys("artifacts") == []


def test_oss_missing_bucket_and_key_are_its_xml_errors_also_for_head(oss: Any) -> None:
    import alibabacloud_oss_v2 as oss_sdk

    client = oss_client(oss)
    with pytest.raises(Exception) as no_key:
        client.head_object(oss_sdk.HeadObjectRequest(bucket="artifacts", key="missing.zip"))
    assert "The specified key does not exist" in oss_refusal(no_key, oss, 404, "NoSuchKey").message  # read from x-oss-err
    with pytest.raises(Exception) as no_bucket:
        client.put_object(oss_sdk.PutObjectRequest(bucket="no-such-bucket", key="a.zip", body=b"zip"))
    oss_refusal(no_bucket, oss, 404, "NoSuchBucket")
    assert "no-such-bucket" not in oss.buckets, "nothing creates a bucket"


def test_oss_multipart_rules_at_complete(oss: Any) -> None:
    import alibabacloud_oss_v2 as oss_sdk

    client = oss_client(oss)
    upload = client.initiate_multipart_upload(oss_sdk.InitiateMultipartUploadRequest(bucket="artifacts", key="big.zip")).upload_id
    parts = {n: client.upload_part(oss_sdk.UploadPartRequest(bucket="artifacts", key="big.zip", upload_id=upload, part_number=n,
                                                             body=bytes([n]) * size)).etag
             for n, size in [(1, 50_000), (2, 200_000), (3, 10)]}

    def complete(numbers: list[int]) -> Any:
        listed = [oss_sdk.UploadPart(part_number=n, etag=parts[n]) for n in numbers]
        return client.complete_multipart_upload(oss_sdk.CompleteMultipartUploadRequest(
            bucket="artifacts", key="big.zip", upload_id=upload, complete_multipart_upload=oss_sdk.CompleteMultipartUpload(parts=listed)))

    for numbers, code in [([2, 1], "InvalidPartOrder"), ([1, 2], "EntityTooSmall")]:
        with pytest.raises(Exception) as refused:
            complete(numbers)
        oss_refusal(refused, oss, 400, code)
    done = complete([2, 3])  # the last part may be small; part 1 is left out
    assert oss.object_bytes("artifacts", "big.zip") == bytes([2]) * 200_000 + bytes([3]) * 10
    assert done.hash_crc64 == str(crc64_xz(bytes([2]) * 200_000 + bytes([3]) * 10))
    with pytest.raises(Exception) as gone:
        client.abort_multipart_upload(oss_sdk.AbortMultipartUploadRequest(bucket="artifacts", key="big.zip", upload_id=upload))
    oss_refusal(gone, oss, 404, "NoSuchUpload")


def test_fc_fetches_code_from_the_oss_stand_in(oss: Any, hook: RecordingHook) -> None:
    from alibabacloud_fc20230330.client import Client

    with FCStandIn(on_code=hook, oss=oss) as fc:
        client = Client(sdk_config(fc.endpoint))
        with pytest.raises(Exception) as missing:
            create_function(client, function_body(code={"ossBucketName": "artifacts", "ossObjectName": "agent.zip"}))
        assert_refused(missing, fc, 400, "InvalidArgument", "unable to access object agent.zip in bucket artifacts")
        import alibabacloud_oss_v2 as oss_sdk

        oss_client(oss).put_object(oss_sdk.PutObjectRequest(bucket="artifacts", key="agent.zip", body=ZIP_V2))
        oss.function_compute_may_read = False
        with pytest.raises(Exception) as denied:
            create_function(client, function_body(code={"ossBucketName": "artifacts", "ossObjectName": "agent.zip"}))
        assert_refused(denied, fc, 400, "InvalidArgument", "oss:GetObject")
        oss.function_compute_may_read = True
        with pytest.raises(Exception) as corrupt:
            create_function(client, function_body(code={"ossBucketName": "artifacts", "ossObjectName": "agent.zip", "checksum": "1"}))
        assert_refused(corrupt, fc, 400, "InvalidArgument", "does not match the package's CRC-64")
        create_function(client, function_body(code={"ossBucketName": "artifacts", "ossObjectName": "agent.zip",
                                                    "checksum": str(crc64_xz(ZIP_V2))}))
        assert hook.calls[-1][1] == ZIP_V2
