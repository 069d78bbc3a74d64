"""``agentpack deploy --target fc`` with code above FC's 100 MB inline limit, through OSS.

The real FC and OSS SDKs talk to loopback stand-ins (tests/standins): the OSS stand-in checks
the V4 signature and serves the multipart upload the SDK's uploader makes; the FC stand-in
fetches a function's code from it by ``ossBucketName``/``ossObjectName`` and starts what it
got under ``agentpack emulate``, so the deployed URL answers from the uploaded bytes.  The big
artifact is a project with ~110 MB of random bytes (random, so it does not compress), made at
test time in the test's temporary directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import subprocess
import tracemalloc
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.support import CLI, Emulations, cli_env, copy_project, free_port, refused, set_version
from tests.standins import TEST_ACCESS_KEY_ID, TEST_ACCESS_KEY_SECRET, FCStandIn, OSSStandIn, crc64_xz

pytestmark = pytest.mark.integration

BUCKET = "agentpack-artifacts"
SECRET = "s3cret-value-不可外泄"
ALIBABA_KEYS = {"ALIBABA_CLOUD_ACCESS_KEY_ID": TEST_ACCESS_KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": TEST_ACCESS_KEY_SECRET}
MiB = 1024 * 1024
UPLOADS = ("PutObject", "InitiateMultipartUpload", "UploadPart", "CompleteMultipartUpload")


def write_random(path: Path, size: int) -> None:
    """``size`` random bytes, written a MiB at a time (never all in memory)."""
    with path.open("wb") as out:
        for _ in range(size // MiB):
            out.write(os.urandom(MiB))


def add_fc_settings(project: Path, lines: str) -> None:
    config = project / "agentpack.toml"
    config.write_text(config.read_text().replace("[targets.fc]\n", f"[targets.fc]\n{lines}", 1))


@dataclasses.dataclass
class Clouds:
    fc: FCStandIn
    oss: OSSStandIn
    emulations: Emulations
    env: dict[str, str]


@contextlib.contextmanager
def clouds(tmp: Path, redis_url: str = "redis://127.0.0.1:1/0", *, instances: int = 1, serve: bool = True) -> Iterator[Clouds]:
    emulations = Emulations("fc", tmp / "emulations", instances=instances)
    emulations.scratch.mkdir()
    oss = OSSStandIn(tmp / "oss", buckets=(BUCKET,)).start()
    fc = FCStandIn(on_code=emulations.hook if serve else None, oss=oss).start()
    env = cli_env(**ALIBABA_KEYS, AGENTPACK_FC_ENDPOINT=f"http://{fc.endpoint}", AGENTPACK_OSS_ENDPOINT=f"http://{oss.endpoint}",
                  REDIS_URL=redis_url, DEPLOYED_SECRET=SECRET, HOME=str(tmp))
    try:
        yield Clouds(fc, oss, emulations, env)
    finally:
        fc.stop()
        oss.stop()  # removes what the bucket held
        emulations.close()
        shutil.rmtree(emulations.scratch, ignore_errors=True)


def code_sent(fc: FCStandIn) -> list[dict[str, Any]]:
    """The ``code`` of every successful CreateFunction / UpdateFunction that carried one."""
    return [call.json["code"] for call in fc.calls if call.action in ("CreateFunction", "UpdateFunction")
            and call.status < 300 and "code" in (call.json or {})]


# -- the whole way, with an artifact over 100 MB ------------------------------------------------------------
def test_an_artifact_over_100_mb_deploys_through_oss_end_to_end(tmp_path, redis_server):
    with clouds(tmp_path, redis_server.url) as cloud:
        project = copy_project(tmp_path)
        try:
            deploy_a_big_project(cloud, project)
        finally:  # ~110 MB of data, two ~120 MB artifacts: not left in the temporary directory
            shutil.rmtree(project, ignore_errors=True)


def deploy_a_big_project(cloud: Clouds, project: Path) -> None:
    """The whole way for a project with ~110 MB of random data (see the test above)."""
    write_random(project / "weights.bin", 110 * MiB)
    cli = CLI(project, cloud.env)

    # over 100 MB without a bucket: one line naming what to set, before any call
    stderr = refused(cli.run("deploy", "--target", "fc"), 2, "over Function Compute's 100 MB inline limit", "oss_bucket")
    assert len([line for line in stderr.splitlines() if "error" in line.lower()]) == 1, stderr
    assert cloud.fc.calls == [] and cloud.oss.calls == []

    add_fc_settings(project, f'oss_bucket = "{BUCKET}"\n')
    done = cli.run("deploy", "--target", "fc", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    first = json.loads(done.stdout.splitlines()[-1])
    assert first["action"] == "created" and first["uploaded"] is True
    artifact = next((project / "dist").glob("deployed-fc-*.zip"))
    size = artifact.stat().st_size
    assert size > 100 * MiB

    # one content-addressed object, sent in parts, named to FC with its CRC-64
    key = f"agentpack/deployed/{first['sha256']}.zip"
    assert cloud.oss.keys(BUCKET) == [key]
    assert [c.action for c in cloud.oss.calls][:2] == ["HeadObject", "InitiateMultipartUpload"]
    assert len(cloud.oss.calls_of("UploadPart")) == -(-size // (8 * MiB)) and cloud.oss.bytes_uploaded() == size
    with artifact.open("rb") as zipped:
        assert cloud.oss.object_bytes(BUCKET, key) == zipped.read()
    assert code_sent(cloud.fc) == [{"ossBucketName": BUCKET, "ossObjectName": key, "checksum": str(crc64_xz(artifact.read_bytes()))}]
    seconds = float(re.search(r"MB in ([0-9.]+) s", done.stderr + done.stdout).group(1))
    print(f"\nfigure: {size / 1e6:.1f} MB uploaded to the OSS stand-in in {seconds:.2f} s")

    # the state names the object, never a URL to it or a secret
    state = (project / ".agentpack" / "deployments.json").read_text()
    record = json.loads(state)["deployments"]["fc/deployed"]
    assert record["resource"]["oss_objects"] == [
        {"bucket": BUCKET, "key": key, "region": "cn-hangzhou", "sha256": first["sha256"], "bytes": size}]
    for leak in ("x-oss-", "Signature", "Expires", cloud.oss.endpoint, SECRET, TEST_ACCESS_KEY_SECRET):
        assert leak not in state

    # the URL answers from the bytes that went through OSS
    answered = cli.run("invoke", "deployed", "hello")
    assert answered.returncode == 0 and "v1: hello" in answered.stdout, answered.stdout + answered.stderr

    # unchanged: not one request to OSS, nothing sent to FC
    calls = len(cloud.oss.calls)
    again = cli.json("deploy", "--target", "fc")
    assert again["action"] == "unchanged" and again["uploaded"] is False
    assert len(cloud.oss.calls) == calls and len(code_sent(cloud.fc)) == 1

    # a code change: one new object, uploaded once
    set_version(project, "v2")
    second = cli.json("deploy", "--target", "fc")
    assert second["action"] == "updated" and second["uploaded"] is True
    new_key = f"agentpack/deployed/{second['sha256']}.zip"
    assert cloud.oss.keys(BUCKET) == sorted([key, new_key])
    assert len(cloud.oss.calls_of("CompleteMultipartUpload")) == 2 and cloud.oss.bytes_uploaded() == size + artifact.stat().st_size
    assert "v2: hello" in cli.run("invoke", "deployed", "hello").stdout

    # rollback needs nothing from OSS: FC keeps each version's code
    calls = len(cloud.oss.calls)
    assert cli.json("rollback", "deployed")["version"] == first["version"]
    assert "v1: hello" in cli.run("invoke", "deployed", "hello").stdout
    assert len(cloud.oss.calls) == calls

    # destroy: the function and both objects
    gone = cli.json("destroy", "deployed", "--yes")
    assert gone["destroyed"] is True and "deployed" not in cloud.fc.functions
    assert cloud.oss.keys(BUCKET) == []
    assert sorted(c.key for c in cloud.oss.calls_of("DeleteObject")) == sorted([key, new_key])


def test_the_upload_streams_from_the_file_and_memory_stays_flat(tmp_path):
    from agentpack.deployers.clients.alibaba import Credentials
    from agentpack.deployers.clients.oss import PARALLEL_PARTS, PART_SIZE, OSSApi, crc64_of

    path = tmp_path / "big.zip"
    write_random(path, 110 * MiB)
    with OSSStandIn(tmp_path / "oss", buckets=(BUCKET,)) as oss, contextlib.ExitStack() as cleanup:
        cleanup.callback(path.unlink)
        api = OSSApi(region="cn-hangzhou", credentials=Credentials(TEST_ACCESS_KEY_ID, TEST_ACCESS_KEY_SECRET),
                     endpoint=f"http://{oss.endpoint}", environ={})
        crc = crc64_of(path)
        tracemalloc.start()
        try:
            stored = api.upload_file(BUCKET, "agentpack/big/x.zip", path, crc)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert stored.crc64 == crc and oss.bytes_uploaded() == path.stat().st_size
        # at most the parts in flight are in memory, never the file
        assert peak < (PARALLEL_PARTS + 1) * PART_SIZE < path.stat().st_size / 2, peak
        print(f"\nfigure: uploading {path.stat().st_size / 1e6:.0f} MB peaked at {peak / 1e6:.1f} MB of Python allocations")
        assert api.head(BUCKET, "agentpack/big/x.zip").crc64 == crc
        assert api.head(BUCKET, "agentpack/big/missing.zip") is None


# -- smaller artifacts, forced through OSS -------------------------------------------------------------------
def one_part_project(tmp_path: Path) -> Path:
    """The deployed project without redis (1.6 MB, brought by redis_url and requirements.txt), which
    a deployment these tests never serve does not need: its artifact is one OSS part (below
    oss.PART_SIZE, 8 MiB) with room for agentpack itself to grow."""
    project = copy_project(tmp_path)
    (project / "requirements.txt").write_text("")
    config = project / "agentpack.toml"
    config.write_text(config.read_text().replace('redis_url = "${REDIS_URL}"\n', ""))
    return project


@pytest.fixture
def forced(tmp_path):
    with clouds(tmp_path, serve=False) as cloud:
        project = one_part_project(tmp_path)
        add_fc_settings(project, f'code_upload = "oss"\noss_bucket = "{BUCKET}"\noss_prefix = "builds/agents"\n')
        yield cloud, CLI(project, cloud.env), project


def test_code_upload_oss_sends_a_small_artifact_through_oss_under_the_prefix(forced):
    cloud, cli, project = forced
    result = cli.json("deploy", "--target", "fc")
    assert cloud.oss.bytes_uploaded() < 8 * MiB, f"the test's artifact outgrew one part: {cloud.oss.bytes_uploaded()} bytes"
    key = f"builds/agents/deployed/{result['sha256']}.zip"
    assert cloud.oss.keys(BUCKET) == [key]
    assert [c.action for c in cloud.oss.calls] == ["HeadObject", "PutObject"]  # one part: a plain PutObject
    assert code_sent(cloud.fc)[0]["ossObjectName"] == key
    # --force sends the code again, but the bucket already holds these bytes: no second upload
    forced_again = cli.json("deploy", "--target", "fc", "--force")
    assert forced_again["uploaded"] is True and [c.action for c in cloud.oss.calls] == ["HeadObject", "PutObject", "HeadObject"]
    assert len(code_sent(cloud.fc)) == 2


def test_a_missing_bucket_is_named_and_nothing_is_created(forced):
    cloud, cli, project = forced
    config = project / "agentpack.toml"
    config.write_text(config.read_text().replace(f'oss_bucket = "{BUCKET}"', 'oss_bucket = "no-such-bucket"'))
    refused(cli.run("deploy", "--target", "fc"), 2, "the bucket 'no-such-bucket' does not exist", "NoSuchBucket", "never creates buckets")
    assert set(cloud.oss.buckets) == {BUCKET}
    assert [c.action for c in cloud.fc.calls] == ["GetFunction"] and not (project / ".agentpack" / "deployments.json").exists()


def test_fc_unable_to_read_the_object_fails_the_deploy_and_removes_the_upload(forced):
    cloud, cli, project = forced
    cloud.oss.function_compute_may_read = False  # as when the caller lacks oss:GetObject
    refused(cli.run("deploy", "--target", "fc"), 1, "CreateFunction failed", "unable to access object", "oss:GetObject")
    assert cloud.oss.keys(BUCKET) == [], "the object nothing records was deleted again"
    assert not (project / ".agentpack" / "deployments.json").exists()


def test_oss_errors_show_code_message_and_request_id(forced):
    cloud, cli, _ = forced
    cloud.oss.fail_next("PutObject", times=1, status=403, code="AccessDenied", message="You have no right to access this object.")
    stderr = refused(cli.run("deploy", "--target", "fc"), 1, "PutObject failed: AccessDenied", "oss:PutObject")
    assert cloud.oss.calls_of("PutObject")[-1].request_id in stderr
    cloud.oss.fail_next("PutObject", times=1, status=503)  # a 5xx once is retried by the SDK
    assert cli.json("deploy", "--target", "fc")["action"] == "created"
    assert [c.status for c in cloud.oss.calls_of("PutObject")] == [403, 503, 200]


# -- the limits ---------------------------------------------------------------------------------------------------
def test_the_build_refuses_only_what_fc_cannot_take_from_oss(tmp_path, monkeypatch):
    from agentpack import targets
    from agentpack.builders.build import build
    from agentpack.builders.errors import BuildError

    assert targets.TARGETS["fc"].zip_limit == 500 * MiB and targets.TARGETS["agentrun"].zip_limit == 500 * MiB
    tiny = dataclasses.replace(targets.TARGETS["fc"], zip_limit=MiB)  # stands for 500 MB: same rule, same words
    monkeypatch.setitem(targets.TARGETS, "fc", tiny)
    with pytest.raises(BuildError, match=r"over the fc limit of 1 MB \(Function Compute's limit for code from OSS; over 100 MB the "
                                         r"deploy needs \[targets.fc\] oss_bucket\)"):
        build(copy_project(tmp_path), "fc")


def test_the_inline_choice_is_refused_above_100_mb_and_oss_needs_a_bucket(tmp_path):
    from agentpack.deployers.errors import DeployConfigError
    from agentpack.deployers.platforms.fc import FCDeployer
    from agentpack.deployers.request import DeployRequest
    from agentpack.target_settings import FCSettings

    def request(**settings: Any) -> DeployRequest:
        made = DeployRequest(tmp_path, "fc", "agent", FCSettings(**settings), {})
        made.size_bytes = 101 * MiB
        return made

    from types import SimpleNamespace

    deployer = FCDeployer(FCSettings(region="cn-hangzhou"), api=SimpleNamespace(region="cn-hangzhou"), environ={})
    with pytest.raises(DeployConfigError, match=r'set \[targets.fc\] oss_bucket = "<an existing bucket in cn-hangzhou>"'):
        deployer.through_oss(request())
    with pytest.raises(DeployConfigError, match='code_upload = "inline": the artifact is 101.0 MB zipped'):
        deployer.through_oss(request(code_upload="inline"))
    assert deployer.through_oss(request(oss_bucket="b-1"))
    small = request(oss_bucket="b-1")
    small.size_bytes = 100 * MiB
    assert not deployer.through_oss(small)
    small.settings = FCSettings(code_upload="oss", oss_bucket="b-1")
    assert deployer.through_oss(small)


def test_an_unreachable_oss_endpoint_is_a_platform_error_naming_it():
    from agentpack.deployers.clients.alibaba import Credentials, RetryPolicy
    from agentpack.deployers.errors import PlatformError
    from agentpack.deployers.clients.oss import OSSApi

    port = free_port()
    api = OSSApi(region="cn-hangzhou", credentials=Credentials(TEST_ACCESS_KEY_ID, TEST_ACCESS_KEY_SECRET),
                 endpoint=f"http://127.0.0.1:{port}", environ={}, retry=RetryPolicy(max_attempts=1))
    with pytest.raises(PlatformError, match=rf"HeadObject failed: ConnectionError: could not reach http://127.0.0.1:{port}: .*refused"):
        api.head(BUCKET, "agentpack/x.zip")


def test_a_missing_oss_sdk_is_named_before_any_call(tmp_path, monkeypatch):
    import sys

    from agentpack.deployers.errors import DeployConfigError
    from agentpack.deployers.platforms.fc import FCDeployer
    from agentpack.deployers.request import DeployRequest
    from agentpack.target_settings import FCSettings

    class NoCalls:
        region = "cn-hangzhou"

        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"{name} was called although the OSS SDK is missing")

    request = DeployRequest(tmp_path, "fc", "agent", FCSettings(code_upload="oss", oss_bucket="b-1"), {})
    request.size_bytes = MiB
    monkeypatch.setitem(sys.modules, "alibabacloud_oss_v2", None)  # as if not installed
    deployer = FCDeployer(FCSettings(region="cn-hangzhou"), api=NoCalls(), environ={})
    with pytest.raises(DeployConfigError, match=r"needs alibabacloud_oss_v2, which is not installed; install it with: pip install 'agentpack\[fc\]'"):
        deployer.deploy(request, None)
