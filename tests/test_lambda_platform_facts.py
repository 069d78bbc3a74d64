"""The Lambda deployer against what Lambda really does (issue 19, items 2 and 10).

boto3 drives moto's server through :class:`tests.standins.aws_lambda.LambdaControlPlane`, which
records every request and checks what moto does not model (tests/standins/README.md §10):

* a public function URL serves anonymous callers only when the alias's resource policy grants both
  ``lambda:InvokeFunctionUrl`` and ``lambda:InvokeFunction`` with ``InvokedViaFunctionUrl``
  (AWS, "Control access to Lambda function URLs");
* Lambda leaves ``Environment`` out of its answer for a function without variables, and a
  redeploy of such a function must still be ``unchanged``.

The deployer is driven directly with a small hand-made zip (moto runs no code), so no build runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.standins import make_zip
from tests.standins.aws_lambda import LambdaControlPlane

pytestmark = pytest.mark.integration

INVOKE_STATEMENT = "agentpack-public-function-url-invoke"


@pytest.fixture
def plane() -> Iterator[LambdaControlPlane]:
    from tests.support import http

    control = LambdaControlPlane()
    http.post(f"{control.url}/moto-api/reset", timeout=30).raise_for_status()  # moto's backends live in this process
    try:
        yield control
    finally:
        control.stop()


class Deploys:
    """Deploys of one function, each from the deployment the last one recorded."""

    def __init__(self, plane: LambdaControlPlane, tmp: Path, name: str = "fn") -> None:
        self.plane, self.tmp, self.name = plane, tmp, name
        self.role = plane.create_role()
        self.previous: Any = None

    def __call__(self, code: str = "v1", environment: dict[str, str] | None = None, allow_anonymous: bool = False,
                 **settings: Any) -> Any:
        from agentpack.deployers.clients.aws import LambdaApi
        from agentpack.deployers.platforms.aws_lambda import LambdaDeployer
        from agentpack.deployers.request import DeployRequest
        from agentpack.target_settings import LambdaSettings

        model = LambdaSettings(role=self.role, region="us-east-1", **settings)
        artifact = self.tmp / f"{code}.zip"
        if not artifact.exists():  # the same code is the same bytes (a zip records times)
            artifact.write_bytes(make_zip({"agentpack_lambda.py": f"handler = None  # {code}\n"}))
        variables = dict(model.env) if environment is None else environment  # as prepare() resolves them
        request = DeployRequest(self.tmp, "lambda", self.name, model, variables, allow_anonymous=allow_anonymous)
        request.artifact, request.python, request.arch = artifact, "3.12", "x86_64"
        request.sha256 = hashlib.sha256(artifact.read_bytes()).hexdigest()
        request.size_bytes = artifact.stat().st_size
        api = LambdaApi(session=self.plane.session(), endpoint=self.plane.url, environ={})
        outcome = LambdaDeployer(model, api=api, environ={}).deploy(request, self.previous)
        self.previous = outcome.deployment
        return outcome


# -- item 2: who may call a public function URL ----------------------------------------------------------------
def test_a_public_url_grants_both_permissions_aws_requires_and_heals_a_url_granted_one(plane, tmp_path):
    deploy = Deploys(plane, tmp_path)
    first = deploy(allow_anonymous=True, streaming=False)
    assert first.action == "created" and first.deployment.auth == "NONE"
    assert plane.public_url_refusal("fn", "live") == [], "an anonymous caller would get 403"
    sent = {r.body["StatementId"]: r.body for r in plane.of("POST", "/policy")}
    assert sent[INVOKE_STATEMENT] == {"StatementId": INVOKE_STATEMENT, "Principal": "*", "Action": "lambda:InvokeFunction",
                                      "InvokedViaFunctionUrl": True}
    assert all(r.query.get("Qualifier") == "live" for r in plane.of("POST", "/policy")), "the URL is the alias's"

    writes = plane.writes("fn")
    assert deploy(allow_anonymous=True, streaming=False).action == "unchanged" and plane.writes("fn") == writes

    # a URL an earlier agentpack opened with InvokeFunctionUrl alone answers 403: the next deploy adds what is missing
    plane.client().remove_permission(FunctionName="fn", Qualifier="live", StatementId=INVOKE_STATEMENT)
    assert plane.public_url_refusal("fn", "live") == ['lambda:InvokeFunction to * with InvokedViaFunctionUrl = true']
    healed = deploy(allow_anonymous=True, streaming=False)
    assert healed.action == "republished" and plane.public_url_refusal("fn", "live") == []
    conflict, added = plane.of("POST", "/policy")[-2:]
    assert (conflict.status, added.status < 300) == (409, True), "the statement still there is a conflict, tolerated"
    assert added.body["StatementId"] == INVOKE_STATEMENT

    # signed again: both statements go
    closed = deploy(allow_anonymous=False, streaming=False)
    assert closed.deployment.auth == "AWS_IAM" and len(plane.public_url_refusal("fn", "live")) == 2
    assert plane.policies[("fn", "live")] == {}


# -- item 10: "unchanged" when Lambda leaves Environment out ------------------------------------------------------
def test_a_function_without_variables_redeploys_unchanged(plane, tmp_path):
    deploy = Deploys(plane, tmp_path)
    assert deploy(streaming=False).action == "created"
    reported = plane.client().get_function(FunctionName="fn")["Configuration"]
    assert "Environment" not in reported, "as Lambda does, the stand-in leaves out an empty Environment"
    writes = plane.writes("fn")
    again = deploy(streaming=False)
    assert again.action == "unchanged" and again.uploaded is False and plane.writes("fn") == writes
    # a variable added is still a change, and removing it again is one too
    assert deploy(streaming=False, env={"MODE": "a"}).action == "configured"
    assert deploy(streaming=False).action == "configured"
    assert "Environment" not in plane.client().get_function(FunctionName="fn")["Configuration"]
    assert deploy(streaming=False).action == "unchanged"


def test_the_description_holds_a_digest_of_what_agentpack_wrote_but_no_secret(plane, tmp_path):
    deploy = Deploys(plane, tmp_path)
    deploy(streaming=False, env={"MODE": "a"}, secrets=["TOKEN"], environment={"MODE": "a", "TOKEN": "one"})
    described = plane.client().get_function(FunctionName="fn")["Configuration"]["Description"]
    assert described.startswith("deployed by agentpack (config ") and "one" not in described
    # a new secret value: Lambda reports the variables, so the change is seen; the digest does not move
    rotated = deploy(streaming=False, env={"MODE": "a"}, secrets=["TOKEN"], environment={"MODE": "a", "TOKEN": "two"})
    assert rotated.action == "configured"
    assert plane.client().get_function(FunctionName="fn")["Configuration"]["Description"] == described
    # a plain value is in the digest
    deploy(streaming=False, env={"MODE": "b"}, secrets=["TOKEN"], environment={"MODE": "b", "TOKEN": "two"})
    assert plane.client().get_function(FunctionName="fn")["Configuration"]["Description"] != described


def test_variables_lambda_does_not_report_are_judged_by_the_digest_agentpack_wrote():
    from agentpack.deployers.pipeline import same
    from agentpack.deployers.platforms.aws_lambda import comparable

    desired = {"MemorySize": 1024, "Environment": {"Variables": {"A": "1"}}, "Description": "deployed by agentpack (config 1)"}
    hidden = {"MemorySize": 1024, "Environment": {"Error": {"ErrorCode": "AccessDeniedException"}}}
    assert same(desired, comparable({**hidden, "Description": desired["Description"]}, desired), frozenset({"Variables"}))
    assert not same(desired, comparable({**hidden, "Description": "deployed by agentpack (config 2)"}, desired), frozenset({"Variables"}))
    assert not same(desired, comparable({"MemorySize": 1024, "Description": desired["Description"]}, desired), frozenset({"Variables"}))


# -- item 13: Lambda streams by default -----------------------------------------------------------------------------
def test_streaming_is_the_default_and_buffered_the_opt_out(plane, tmp_path):
    from agentpack.target_settings import LambdaSettings

    assert LambdaSettings().streaming is True and LambdaSettings(streaming=False).streaming is False
    deploy = Deploys(plane, tmp_path)
    streamed = deploy()  # nothing said about streaming
    assert streamed.deployment.resource["invoke_mode"] == "RESPONSE_STREAM"
    lam = plane.client()
    assert lam.get_function_url_config(FunctionName="fn", Qualifier="live")["InvokeMode"] == "RESPONSE_STREAM"
    variables = lam.get_function(FunctionName="fn")["Configuration"]["Environment"]["Variables"]
    assert variables == {"AWS_LAMBDA_EXEC_WRAPPER": "/var/task/agentpack-lambda-stream"}
    # the opt-out, for API Gateway: the buffered handler and a BUFFERED URL
    buffered = deploy(streaming=False)
    assert buffered.action == "configured" and buffered.deployment.resource["invoke_mode"] == "BUFFERED"
    assert lam.get_function_url_config(FunctionName="fn", Qualifier="live")["InvokeMode"] == "BUFFERED"


def test_init_writes_the_opt_out_and_a_new_project_streams(tmp_path):
    from agentpack.builders.config import project_settings
    from agentpack.builders.scaffold import scaffold

    scaffold(tmp_path / "agent", targets=["lambda"])
    text = (tmp_path / "agent" / "agentpack.toml").read_text()
    line = next(line for line in text.splitlines() if line.startswith("# streaming = "))
    assert line.startswith("# streaming = false") and "API Gateway" in line, line
    assert project_settings(tmp_path / "agent", "lambda").streaming is True


def test_the_emulator_runs_an_artifact_as_it_was_built_whatever_the_default(tmp_path):
    """``emulate app.zip`` of a buffered build must not look for the wrapper the default would add."""
    from agentpack.targets import LAMBDA_STREAM_WRAPPER, TARGETS

    row = TARGETS["lambda"]
    profile = row.load("emulator")(row)
    buffered = profile.emulator(tmp_path, "python3", row.parse_settings(), {}, log=lambda line: None)
    assert buffered.streaming is False and buffered.invoke_mode == "BUFFERED"
    (tmp_path / LAMBDA_STREAM_WRAPPER).write_text("#!/bin/sh\n")
    streamed = profile.emulator(tmp_path, "python3", row.parse_settings({"streaming": False}), {}, log=lambda line: None)
    assert streamed.streaming is True and streamed.invoke_mode == "RESPONSE_STREAM"
