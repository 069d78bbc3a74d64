"""The OSS existence check before an upload, when OSS answers a HEAD 404 without ``x-oss-err``.

A HEAD answer has no body, so OSS puts its error document in the ``x-oss-err`` header; when that
header is missing the real SDK (alibabacloud-oss-v2) raises ``ServiceError`` with the code
``BadErrorResponse``, and its own ``Client.is_object_exist`` reads ``(404, BadErrorResponse)`` as
"no such object".  agentpack must read it the same way, or the first upload of every artifact fails
(issue 19, item 3).  The OSS stand-in plays that answer with ``head_error_header = False``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.standins import TEST_ACCESS_KEY_ID, TEST_ACCESS_KEY_SECRET, OSSStandIn
from tests.support import CLI
from tests.test_deploy_oss import BUCKET, add_fc_settings, clouds, one_part_project

pytestmark = pytest.mark.integration


def oss_api(standin: OSSStandIn):  # type: ignore[no-untyped-def]
    from agentpack.deployers.clients.alibaba import Credentials, RetryPolicy
    from agentpack.deployers.clients.oss import OSSApi

    return OSSApi(region="cn-hangzhou", credentials=Credentials(TEST_ACCESS_KEY_ID, TEST_ACCESS_KEY_SECRET),
                  endpoint=f"http://{standin.endpoint}", environ={}, retry=RetryPolicy(max_attempts=1))


def test_a_head_404_without_an_error_header_means_absent_as_the_sdk_reads_it(tmp_path: Path) -> None:
    from agentpack.deployers.errors import PlatformError

    standin = OSSStandIn(tmp_path / "oss", buckets=(BUCKET,)).start()
    try:
        standin.head_error_header = False
        api = oss_api(standin)
        # the SDK's own check, on the same answer: absent
        assert api.client.is_object_exist(BUCKET, "agentpack/x.zip") is False
        assert api.head(BUCKET, "agentpack/x.zip") is None
        assert [(c.action, c.status, c.error_code) for c in standin.calls_of("HeadObject")] == [("HeadObject", 404, "NoSuchKey")] * 2
        # another status without the header is not "absent": it is reported
        standin.fail_next("HeadObject", status=403, code="AccessDenied", message="no right")
        with pytest.raises(PlatformError, match="HeadObject failed: BadErrorResponse") as raised:
            api.head(BUCKET, "agentpack/x.zip")
        assert raised.value.status == 403
        # with the header (what OSS normally sends), NoSuchKey is absent as before
        standin.head_error_header = True
        assert api.head(BUCKET, "agentpack/x.zip") is None
    finally:
        standin.stop()


def test_the_first_upload_through_oss_succeeds_when_head_404_carries_no_error_header(tmp_path: Path) -> None:
    with clouds(tmp_path, serve=False) as cloud:
        cloud.oss.head_error_header = False
        project = one_part_project(tmp_path)
        add_fc_settings(project, f'code_upload = "oss"\noss_bucket = "{BUCKET}"\n')
        result = CLI(project, cloud.env).json("deploy", "--target", "fc")
        assert result["action"] == "created" and result["uploaded"] is True
        key = f"deployed/{result['sha256']}.zip"
        assert [k.rsplit("/", 2)[-2:] for k in cloud.oss.keys(BUCKET)] == [key.split("/")]
        assert [(c.action, c.status) for c in cloud.oss.calls] == [("HeadObject", 404), ("PutObject", 200)]
