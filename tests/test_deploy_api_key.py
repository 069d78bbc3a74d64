"""The API key ``agentpack deploy`` gives a public deployment (docs/deploy.md#api-keys).

A URL no platform checks (``--allow-anonymous`` on FC, AgentRun and Lambda) gets a generated key in
``AGENTPACK_API_KEYS`` — in the platform's environment only — printed once; a redeploy sends the
same key back (read from the platform), ``--rotate-api-key`` replaces it, ``--no-api-key`` /
``api_key = false`` leave it out, and a key of the user's own is sent as given.

The first tier is in process and builds nothing: the decision table, the digests, the refusals
of flags that cannot apply.  The integration tier deploys the test project with the command line
(typer's CliRunner, in process) through the real SDKs to the loopback stand-ins, serves what
FC receives under ``agentpack emulate`` and calls it with ``agentpack invoke``; Lambda's deployer is
driven directly against moto with a hand-made zip, as tests/test_lambda_platform_facts.py does.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.standins import TEST_ACCESS_KEY_ID, TEST_ACCESS_KEY_SECRET, AgentRunStandIn, FCStandIn, make_zip
from tests.support import Emulations, cli_env, copy_project, http, set_version

ALIBABA_KEYS = {
    "ALIBABA_CLOUD_ACCESS_KEY_ID": TEST_ACCESS_KEY_ID,
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": TEST_ACCESS_KEY_SECRET,
}
SECRETS = {"DEPLOYED_SECRET": "s3cret", "REDIS_URL": "redis://127.0.0.1:1/0"}
KEY_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


class Cli:
    """``agentpack`` in process (typer's CliRunner) in a project, with an environment."""

    def __init__(self, project: Path, env: dict[str, str]) -> None:
        self.project, self.env = project, env

    def run(self, *args: str, **extra: str) -> Any:
        from agentpack.cli.main import app

        env = {**self.env, **extra}
        result = CliRunner().invoke(app, [*args], env=env, catch_exceptions=False)
        result.all_output = result.output  # stdout and stderr, as a terminal shows them
        return result

    def json(self, *args: str, expect: int = 0, **extra: str) -> dict[str, Any]:
        result = self.run(*args, "--json", **extra)
        assert result.exit_code == expect, result.all_output
        return dict(json.loads([line for line in result.stdout.splitlines() if line.strip()][-1]))


def in_project(monkeypatch: pytest.MonkeyPatch, project: Path) -> None:
    """CliRunner runs in this process: the commands' project is the current directory."""
    monkeypatch.chdir(project)


# == in process: the decision, the digests, the refusals ============================================
def test_the_variables_are_the_ones_the_app_and_the_clients_read() -> None:
    from agentpack.app.auth import KEYS_ENV
    from agentpack.cli.main import _API_KEY_OPTION
    from agentpack.deployers.api_key import CLIENT_VARIABLE, VARIABLE, new_key

    assert VARIABLE == KEYS_ENV and _API_KEY_OPTION.envvar == CLIENT_VARIABLE
    made = {new_key() for _ in range(50)}
    assert len(made) == 50 and all(KEY_SHAPE.fullmatch(key) for key in made), "43 URL-safe characters, no comma"


def request(anonymous: bool, environment: dict[str, str] | None = None, rotate: bool = False, **settings: Any) -> Any:
    from agentpack.deployers.request import DeployOptions, DeployRequest
    from agentpack.target_settings import FCSettings

    model = FCSettings(allow_anonymous=anonymous, **settings)
    return DeployRequest(
        Path("."), "fc", "fn", model, dict(environment or {}), anonymous, DeployOptions(rotate_api_key=rotate)
    )


@pytest.mark.parametrize(
    "case, anonymous, held, settings, environment, rotate, shell, source, sent",
    [
        ("a first public deploy", True, None, {}, {}, False, {}, "generated", "new"),
        ("public, the platform has none yet", True, {"A": "1"}, {}, {}, False, {}, "generated", "new"),
        ("public, the platform shows one", True, {"AGENTPACK_API_KEYS": "old"}, {}, {}, False, {}, "kept", "old"),
        ("rotated on request", True, {"AGENTPACK_API_KEYS": "old"}, {}, {}, True, {}, "rotated", "new"),
        (
            "masked: the shell's AGENTPACK_API_KEY",
            True,
            {"AGENTPACK_API_KEYS": "******"},
            {},
            {},
            False,
            {"AGENTPACK_API_KEY": "mine"},
            "given",
            "mine",
        ),
        ("masked and nothing given", True, {"AGENTPACK_API_KEYS": "******"}, {}, {}, False, {}, "kept", "unreadable"),
        (
            "the user's own key",
            True,
            {"AGENTPACK_API_KEYS": "old"},
            {},
            {"AGENTPACK_API_KEYS": "theirs"},
            False,
            {},
            "yours",
            None,
        ),
        ("api_key = false", True, None, {"api_key": False}, {}, False, {}, "none", None),
        (
            "api_key = false removes one made before",
            True,
            {"AGENTPACK_API_KEYS": "old"},
            {"api_key": False},
            {},
            False,
            {},
            "removed",
            None,
        ),
        ("signed requests: no key", False, None, {}, {}, False, {}, "none", None),
        ("signed, api_key = true", False, None, {"api_key": True}, {}, False, {}, "generated", "new"),
        (
            "signed again: the key made for the public URL goes",
            False,
            {"AGENTPACK_API_KEYS": "old"},
            {},
            {},
            False,
            {},
            "removed",
            None,
        ),
    ],
)
def test_what_a_deploy_does_with_the_key(
    case, anonymous, held, settings, environment, rotate, shell, source, sent
) -> None:
    from agentpack.deployers.api_key import DIGEST_MARK, settle

    plan = settle(request(anonymous, environment, rotate, **settings), held, shell)
    assert plan.source == source, case
    variables = plan.variables()
    if sent == "new":
        assert (
            plan.new
            and KEY_SHAPE.fullmatch(variables["AGENTPACK_API_KEYS"])
            and variables["AGENTPACK_API_KEYS"] != "old"
        )
    elif sent == "unreadable":
        assert plan.unreadable and variables == {"AGENTPACK_API_KEYS": DIGEST_MARK} and not plan.new
    elif sent is None:
        assert variables == {} and not plan.new
    else:
        assert variables == {"AGENTPACK_API_KEYS": sent} and not plan.new
    assert "old" not in repr(plan) and (plan.value is None or plan.value not in repr(plan)), "a key is never in a repr"


def test_the_descriptions_agentpack_writes_hold_no_key() -> None:
    """The digests that tell a redeploy what changed say whether a key is there, never which."""
    from agentpack.deployers.clients.fc import FunctionSpec
    from agentpack.deployers.platforms.agentrun import environment_digest
    from agentpack.deployers.platforms.fc import written

    def fc(environment: dict[str, str]) -> str:
        return written("0" * 64, FunctionSpec(name="fn", runtime="custom.debian11", environment=environment))

    one, two = {"A": "1", "AGENTPACK_API_KEYS": "k" * 43}, {"A": "1", "AGENTPACK_API_KEYS": "z" * 43}
    assert fc(one) == fc(two) != fc({"A": "1"})
    assert environment_digest(one) == environment_digest(two) != environment_digest({"A": "1"})
    assert "k" * 43 not in fc(one)


def test_lambda_variables_it_does_not_show_count_as_a_key_it_cannot_read() -> None:
    from agentpack.deployers.api_key import settle
    from agentpack.deployers.platforms.aws_lambda import variables_of

    assert variables_of(None) is None and variables_of({}) == {}
    assert variables_of({"Environment": {"Variables": {"A": "1"}}}) == {"A": "1"}
    hidden = variables_of({"Environment": {"Error": {"ErrorCode": "AccessDeniedException"}}})
    assert hidden == {"AGENTPACK_API_KEYS": None}
    assert settle(request(True), hidden, {}).unreadable
    assert settle(request(False), hidden, {}).source == "none", "an unknown environment is not a key to remove"


@pytest.mark.parametrize(
    "target, args, says",
    [
        ("local", ("--no-api-key",), "--no-api-key: agentpack generates no API key for local deployments"),
        ("local", ("--rotate-api-key",), "--rotate-api-key: agentpack generates no API key for local deployments"),
        (
            "fc",
            ("--rotate-api-key",),
            "this fc deployment gets no generated API key (its URL takes only signed requests)",
        ),
        (
            "fc",
            ("--allow-anonymous", "--rotate-api-key", "--no-api-key"),
            "--rotate-api-key with --no-api-key: choose one",
        ),
        ("fc", ("--allow-anonymous", "--rotate-api-key", "--env", "AGENTPACK_API_KEYS=mine"), "the key is yours"),
    ],
)
def test_flags_that_cannot_apply_are_refused_before_anything(target, args, says, tmp_path, monkeypatch) -> None:
    project = copy_project(tmp_path)
    in_project(monkeypatch, project)
    result = Cli(project, cli_env(**SECRETS, **ALIBABA_KEYS, AGENTPACK_FC_ENDPOINT="http://127.0.0.1:9")).run(
        "deploy", "--target", target, *args
    )
    assert result.exit_code == 2 and says in result.all_output, result.all_output
    assert "Traceback" not in result.all_output
    assert not (project / "dist").exists() and not (project / ".agentpack" / "deployments.json").exists()


def test_api_key_is_a_setting_of_the_targets_with_a_public_url_only() -> None:
    from agentpack.target_settings import AgentRunSettings, FCSettings, LambdaSettings, LocalSettings

    for model in (FCSettings, AgentRunSettings, LambdaSettings):
        assert model().api_key is None and model(api_key=False).api_key is False
    assert "api_key" not in LocalSettings.model_fields


# == integration: real deploys against the stand-ins ===================================================
@pytest.fixture
def fc_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_server: Any
) -> Iterator[tuple[FCStandIn, Cli, Path, Emulations]]:
    """An FC stand-in whose functions are served by ``agentpack emulate`` (one instance, on a real
    Redis), and a CLI in a copy of the test project."""
    emulations = Emulations("fc", tmp_path / "emulations", instances=1)
    emulations.scratch.mkdir()
    standin = FCStandIn(on_code=emulations.hook).start()
    project = copy_project(tmp_path)
    in_project(monkeypatch, project)
    env = cli_env(
        **ALIBABA_KEYS,
        **{**SECRETS, "REDIS_URL": redis_server.url},
        AGENTPACK_FC_ENDPOINT=f"http://{standin.endpoint}",
        HOME=str(tmp_path),
    )
    try:
        yield standin, Cli(project, env), project, emulations
    finally:
        standin.stop()
        emulations.close()


def held(standin: FCStandIn) -> str | None:
    return standin.functions["deployed"].config.get("environmentVariables", {}).get("AGENTPACK_API_KEYS")


def fc_writes(standin: FCStandIn) -> list[str]:
    return [c.action for c in standin.calls if c.status < 300 and not c.action.startswith(("Get", "List"))]


@pytest.mark.integration
def test_a_public_fc_deployment_gets_a_key_printed_once_kept_rotated_and_removed(fc_served) -> None:
    standin, cli, project, emulations = fc_served
    state = project / ".agentpack" / "deployments.json"

    # a first public deploy: a key, in the function's environment only, printed once
    done = cli.run("deploy", "--target", "fc", "--allow-anonymous")
    assert done.exit_code == 0, done.all_output
    key = held(standin)
    assert key and KEY_SHAPE.fullmatch(key)
    assert done.all_output.count(key) == 1, "shown once"
    assert f"export AGENTPACK_API_KEY={key}" in done.stdout
    assert "Authorization: Bearer $AGENTPACK_API_KEY" in done.stdout, "the curl line sends it"
    assert "AGENTPACK_API_KEYS=***" in done.stdout
    function = standin.functions["deployed"].config
    assert (
        key not in state.read_text()
        and "AGENTPACK_API_KEYS" in json.loads(state.read_text())["deployments"]["fc/deployed"]["env_keys"]
    )
    assert key not in function["description"]
    assert not any(key in line for line in emulations.lines), "the served app logs no key"
    url = cli.json("status", "deployed")["deployment"]["url"]

    # the app asks for it; invoke reads it from the platform; a wrong key is refused
    assert http.post(f"{url}/process", json={"input": []}, timeout=30).status_code == 401
    assert http.get(f"{url}/health", timeout=30).status_code == 200
    answered = cli.run("invoke", "deployed", "hello there")
    assert answered.exit_code == 0 and "v1: hello there" in answered.stdout, answered.all_output
    assert key not in answered.all_output
    wrong = cli.run("invoke", "deployed", "hello", "--api-key", "not-the-key")
    assert wrong.exit_code == 1 and "401" in wrong.all_output
    assert cli.run("invoke", "deployed", "hi", AGENTPACK_API_KEY=key).exit_code == 0
    assert cli.json("status", "deployed", "--show-api-key")["api_key"] == key

    # a redeploy keeps it: unchanged, nothing written, nothing printed
    before = fc_writes(standin)
    again = cli.json("deploy", "--target", "fc", "--allow-anonymous")
    assert again["action"] == "unchanged" and again["api_key_source"] == "kept" and "api_key" not in again
    assert fc_writes(standin) == before
    # ... also with new code and a changed setting
    set_version(project, "v2")
    updated = cli.json("deploy", "--target", "fc", "--allow-anonymous", "--env", "EXTRA=1")
    assert updated["action"] == "updated" and updated["api_key_source"] == "kept" and held(standin) == key
    assert "v2: hi" in cli.run("invoke", "deployed", "hi", "--api-key", key).stdout

    # rotated on request: a new key, shown once; the old one stops working
    rotated = cli.run("deploy", "--target", "fc", "--allow-anonymous", "--env", "EXTRA=1", "--rotate-api-key")
    assert rotated.exit_code == 0, rotated.all_output
    new = held(standin)
    assert new and new != key and rotated.all_output.count(new) == 1 and key not in rotated.all_output
    assert "replaced" in rotated.stdout
    assert cli.run("invoke", "deployed", "hi", "--api-key", key).exit_code == 1
    assert cli.run("invoke", "deployed", "hi").exit_code == 0, "invoke reads the new key from the platform"
    assert new not in state.read_text()

    # the opt-out: the key goes, and the deploy warns that anyone may call the URL
    opened = cli.run("deploy", "--target", "fc", "--allow-anonymous", "--env", "EXTRA=1", "--no-api-key")
    assert opened.exit_code == 0, opened.all_output
    assert held(standin) is None and "removed AGENTPACK_API_KEYS" in opened.stdout
    assert "is public and has no API key (--no-api-key): anyone with its URL may call it" in opened.all_output
    status_url = cli.json("status", "deployed")["deployment"]["url"]
    assert (
        http.post(
            f"{status_url}/process",
            json={"input": [{"role": "user", "content": [{"type": "text", "text": "x"}]}], "stream": False},
            timeout=30,
        ).status_code
        == 200
    )


@pytest.mark.integration
def test_a_key_of_the_users_own_is_sent_as_given_and_private_deployments_get_none(fc_served) -> None:
    standin, cli, project, _ = fc_served
    private = cli.json("deploy", "--target", "fc")
    assert private["api_key_source"] == "none" and "api_key" not in private and held(standin) is None

    mine = "my-own-key-for-this-agent"
    config = project / "agentpack.toml"
    config.write_text(
        config.read_text().replace(
            'secrets = ["DEPLOYED_SECRET"]\nredis_url',
            'secrets = ["DEPLOYED_SECRET", "AGENTPACK_API_KEYS"]\nredis_url',
            1,
        )
    )
    done = cli.run("deploy", "--target", "fc", "--allow-anonymous", "--json", AGENTPACK_API_KEYS=mine)
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["api_key_source"] == "yours" and "api_key" not in result and held(standin) == mine
    assert mine not in done.all_output and mine not in (project / ".agentpack" / "deployments.json").read_text()
    # a new value of the user's key is a change, though no digest holds it
    changed = cli.json("deploy", "--target", "fc", "--allow-anonymous", AGENTPACK_API_KEYS=mine + "-2")
    assert changed["action"] == "configured" and held(standin) == mine + "-2"
    assert (
        cli.json("deploy", "--target", "fc", "--allow-anonymous", AGENTPACK_API_KEYS=mine + "-2")["action"]
        == "unchanged"
    )

    # api_key = true keeps a key on a signed deployment: the one its clients hold, until rotated
    config.write_text(
        config.read_text()
        .replace('"AGENTPACK_API_KEYS"]', "]", 1)
        .replace("[targets.fc]\n", "[targets.fc]\napi_key = true\n", 1)
    )
    signed = cli.json("deploy", "--target", "fc")
    assert signed["auth"] == "function" and signed["api_key_source"] == "kept" and held(standin) == mine + "-2"
    assert "sends its API key" in signed["curl"]
    rotated = cli.json("deploy", "--target", "fc", "--rotate-api-key")
    assert rotated["api_key_source"] == "rotated" and held(standin) == rotated["api_key"] != mine + "-2"


@pytest.mark.integration
def test_agentrun_masking_the_key_keeps_it_or_refuses_never_replaces_it(tmp_path, monkeypatch) -> None:
    """If GetAgentRuntime masked variable values (undocumented either way), the key cannot be read
    back: a deploy that writes nothing needs it not; one that writes takes AGENTPACK_API_KEY from the
    shell or stops with exit 2, leaving the runtime as it was."""
    with AgentRunStandIn(ready_after_polls=1) as standin:
        project = copy_project(tmp_path)
        in_project(monkeypatch, project)
        cli = Cli(
            project,
            cli_env(
                **ALIBABA_KEYS, **SECRETS, AGENTPACK_AGENTRUN_ENDPOINT=f"http://{standin.endpoint}", HOME=str(tmp_path)
            ),
        )
        first = cli.json("deploy", "--target", "agentrun", "--allow-anonymous")
        key = first["api_key"]
        runtime = lambda: standin.by_name("deployed")  # noqa: E731
        assert runtime()["environmentVariables"]["AGENTPACK_API_KEYS"] == key and key not in runtime()["description"]
        assert any("the app's API key (AGENTPACK_API_KEYS) is what keeps strangers out" in w for w in first["warnings"])

        standin.get_masks_env = True
        again = cli.json("deploy", "--target", "agentrun", "--allow-anonymous")
        assert again["action"] == "unchanged" and again["api_key_source"] == "kept"

        set_version(project, "v2")
        updates = len(standin.calls_of("UpdateAgentRuntime"))
        refused = cli.run("deploy", "--target", "agentrun", "--allow-anonymous")
        assert refused.exit_code == 2, refused.all_output
        assert "shows only masked" in refused.all_output and "AGENTPACK_API_KEY" in refused.all_output
        assert "--rotate-api-key" in refused.all_output and "--no-api-key" in refused.all_output
        assert len(standin.calls_of("UpdateAgentRuntime")) == updates, "nothing written"
        kept = cli.json("deploy", "--target", "agentrun", "--allow-anonymous", AGENTPACK_API_KEY=key)
        assert kept["action"] == "updated" and kept["api_key_source"] == "given" and "api_key" not in kept
        assert runtime()["environmentVariables"]["AGENTPACK_API_KEYS"] == key


@pytest.mark.integration
def test_lambda_public_url_gets_a_key_kept_by_the_next_deploy(tmp_path) -> None:
    from agentpack.deployers.clients.aws import LambdaApi
    from agentpack.deployers.platforms.aws_lambda import LambdaDeployer
    from agentpack.deployers.request import DeployOptions, DeployRequest
    from agentpack.target_settings import LambdaSettings
    from tests.standins.aws_lambda import LambdaControlPlane

    plane = LambdaControlPlane()
    http.post(f"{plane.url}/moto-api/reset", timeout=30).raise_for_status()
    try:
        role = plane.create_role()
        artifact = tmp_path / "v1.zip"
        artifact.write_bytes(make_zip({"agentpack_lambda.py": "handler = None\n"}))
        previous: Any = None

        def deploy(anonymous: bool = True, rotate: bool = False) -> Any:
            nonlocal previous
            model = LambdaSettings(role=role, region="us-east-1", streaming=False, allow_anonymous=anonymous)
            request = DeployRequest(
                tmp_path, "lambda", "fn", model, {}, anonymous, DeployOptions(rotate_api_key=rotate)
            )
            request.artifact, request.python, request.arch = artifact, "3.12", "x86_64"
            request.sha256, request.size_bytes = (
                hashlib.sha256(artifact.read_bytes()).hexdigest(),
                artifact.stat().st_size,
            )
            api = LambdaApi(session=plane.session(), endpoint=plane.url, environ={})
            outcome = LambdaDeployer(model, api=api, environ={}).deploy(request, previous)
            previous = outcome.deployment
            return outcome

        def variables() -> dict[str, str]:
            return dict(
                plane.client()
                .get_function(FunctionName="fn")["Configuration"]
                .get("Environment", {})
                .get("Variables", {})
            )

        first = deploy()
        key = first.api_key.value
        assert first.api_key.source == "generated" and variables() == {"AGENTPACK_API_KEYS": key}
        assert key not in plane.client().get_function(FunctionName="fn")["Configuration"]["Description"]
        writes = plane.writes("fn")
        again = deploy()
        assert again.action == "unchanged" and again.api_key.source == "kept" and plane.writes("fn") == writes
        rotated = deploy(rotate=True)
        assert rotated.action == "configured" and variables()["AGENTPACK_API_KEYS"] == rotated.api_key.value != key
        closed = deploy(anonymous=False)
        assert closed.api_key.source == "removed" and variables() == {}
    finally:
        plane.stop()


def test_the_key_counts_toward_the_size_limit_before_any_call() -> None:
    """A public deploy whose variables fit only without the key is refused before the platform is asked."""
    from agentpack.deployers.errors import DeployConfigError
    from agentpack.deployers.platforms.fc import FCDeployer

    class Unreachable:
        def __getattr__(self, name: str) -> Any:  # any call (GetFunction…) fails the test with this name
            raise AttributeError(f"the platform was called ({name}) before the size check")

    fits_alone = request(True)
    deployer = FCDeployer(fits_alone.settings, api=Unreachable(), environ={})
    fits_alone.python, fits_alone.size_bytes = "3.12", 1000
    used = sum(len(k) + len(v) for k, v in deployer.own_variables(fits_alone).items()) + len("BIG")
    fits_alone.environment["BIG"] = "v" * (4096 - used - 30)  # 30 bytes left: the key needs 61
    with pytest.raises(DeployConfigError, match="AGENTPACK_API_KEYS"):
        deployer.deploy(fits_alone, None)
