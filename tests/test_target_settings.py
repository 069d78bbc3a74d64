"""Per-target settings models: good values, bad values with errors that name the key and the fix — in-process."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agentpack.builders.config import load_config, target_settings
from agentpack.builders.errors import ProjectError
from agentpack.builders.scaffold import scaffold, target_section
from agentpack.target_settings import (
    AgentRunSettings,
    FCSettings,
    LambdaSettings,
    LocalSettings,
    ModelStudioSettings,
    TargetSettings,
)
from agentpack.targets import TARGETS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def project(tmp_path: Path, toml: str) -> Path:
    (tmp_path / "agentpack.toml").write_text('app = "app.py:app"\n' + toml, encoding="utf-8")
    return tmp_path


def error(tmp_path: Path, toml: str) -> str:
    with pytest.raises(ProjectError) as caught:
        load_config(project(tmp_path, toml))
    message = str(caught.value)
    assert "\n" not in message
    return message.split("agentpack.toml: ", 1)[1]


def test_every_row_has_its_own_model_and_the_config_hands_it_out(tmp_path):
    assert {name: row.settings for name, row in TARGETS.items()} == {
        "local": LocalSettings, "fc": FCSettings, "agentrun": AgentRunSettings, "lambda": LambdaSettings,
        "modelstudio": ModelStudioSettings,
    }  # fmt: skip
    config, _ = load_config(
        project(
            tmp_path,
            """
[targets.fc]
region = "cn-hangzhou"
function_name = "my-agent"
memory = 2048
cpu = 1.0
timeout = 600
port = 9100
instance_concurrency = 20
role = "acs:ram::1234567890123456:role/agent-role"
env = { LOG_LEVEL = "info", "中文" = "no" }
secrets = ["OPENAI_API_KEY"]
redis_url = "${REDIS_URL}"
allow_anonymous = true

[targets.lambda]
region = "ap-southeast-1"
memory = 1769
timeout = 900
arch = "arm64"
streaming = true
role = "arn:aws:iam::123456789012:role/service-role/agent"
env = { TZ = "Asia/Shanghai", AWS_LAMBDA_EXEC_WRAPPER_NOT = "1" }
python = "3.13"
""".replace(', "中文" = "no"', ""),
        )
    )
    fc = config.targets["fc"]
    assert isinstance(fc, FCSettings) and fc is target_settings(config, "fc")
    assert (fc.memory, fc.cpu, fc.timeout, fc.port, fc.instance_concurrency, fc.allow_anonymous) == (2048, 1.0, 600, 9100, 20, True)
    assert fc.env == {"LOG_LEVEL": "info"} and fc.redis_url_secret == "REDIS_URL"
    assert fc.secret_names() == ["OPENAI_API_KEY", "REDIS_URL"]
    lam = config.targets["lambda"]
    assert isinstance(lam, LambdaSettings) and (lam.arch, lam.streaming, lam.python) == ("arm64", True, "3.13")
    # targets without a table get their defaults, and say so
    assert "agentrun" not in config.targets and "fc" in config.targets
    assert config.targets.get("agentrun") is None and config.targets.get("fc") is fc
    assert config.targets["agentrun"].port == 9000 and config.targets["local"].port == 8090
    assert config.targets["agentrun"].memory is None, "unset means the platform's default"
    assert config.source.endswith("agentpack.toml")


@pytest.mark.parametrize(
    "toml, message",
    [
        ("[targets.fc]\nmemory = 100", "[targets.fc] memory = 100: must be a multiple of 64 MB between 128 and 32768 MB (Function Compute's limit)"),
        ("[targets.fc]\ncpu = 0.33", "[targets.fc] cpu = 0.33: must be a multiple of 0.05 vCPU between 0.05 and 16 vCPU"),
        ("[targets.fc]\ncpu = 4\nmemory = 1024", "[targets.fc]: cpu = 4 with memory = 1024: Function Compute needs 1 to 4 GB of memory per vCPU; use memory between 4096 and 16384"),
        ("[targets.fc]\ntimeout = 90000", "[targets.fc] timeout = 90000: must be between 1 and 86400 seconds"),
        ("[targets.fc]\ninstance_concurrency = 500", "[targets.fc] instance_concurrency = 500: must be between 1 and 200 sessions"),
        ("[targets.fc]\nport = 0", "[targets.fc] port = 0: must be between 1 and 65535 (a TCP port)"),
        ("[targets.fc]\nfunction_name = \"-x\"", "[targets.fc] function_name = \"-x\": must be 1-64 letters, digits, '_' or '-', not starting with a digit or '-'"),
        ("[targets.fc]\nregion = \"Hangzhou\"", "[targets.fc] region = \"Hangzhou\": must be an Alibaba Cloud region id such as \"cn-hangzhou\""),
        ("[targets.fc]\nrole = \"arn:aws:iam::123456789012:role/x\"", "[targets.fc] role = \"arn:aws:iam::123456789012:role/x\": must be a RAM role ARN"),
        ("[targets.fc]\nenv = { FC_REGION = \"x\" }", "[targets.fc] env: key 'FC_REGION': names starting with FC_ are reserved by the platform; rename it"),
        ("[targets.fc]\nenv = { 1ABC = \"x\" }", "[targets.fc] env: key '1ABC' is not a valid variable name on fc: use letters, digits and '_', starting with a letter"),
        ("[targets.fc]\nenv = { DEBUG = 1 }", "[targets.fc] env.DEBUG = 1: must be a string; quote it"),
        (f"[targets.fc]\nenv = {{ BIG = \"{'x' * 4100}\" }}", "[targets.fc] env: holds 4103 bytes, over the platform's 4 KB"),
        ("[targets.fc]\nsecrets = [\"KEY\", \"KEY\"]", "[targets.fc] secrets: lists KEY more than once"),
        ("[targets.fc]\nsecrets = [\"KEY\"]\nenv = { KEY = \"v\" }", "[targets.fc]: KEY is in both env and secrets; keep it in secrets only"),
        ("[targets.fc]\nredis_url = \"redis://:hunter2@r-bp1.redis.rds.aliyuncs.com:6379\"", "holds a password, which would be committed with agentpack.toml; put the URL in .env as REDIS_URL"),
        ("[targets.fc]\nredis_url = \"memcached://x\"", "[targets.fc] redis_url = \"memcached://x\": must be a redis://, rediss:// or unix:// URL"),
        ("[targets.fc]\nredis_url = \"${REDIS_URL}\"\nenv = { AGENTPACK_REDIS_URL = \"redis://x\" }", "env sets AGENTPACK_REDIS_URL and redis_url is set too"),
        ("[targets.fc]\narch = \"arm64\"", "[targets.fc] does not take arch; it takes allow_anonymous, api_key, code_upload, cpu, endpoint, env, function_name"),
        ("[targets.fc]\npython = \"3.13\"", "[targets.fc] python = \"3.13\": fc offers Python 3.10, 3.11, 3.12; choose one of those"),
        ("[targets.agentrun]\npython = \"3.11\"", "[targets.agentrun] python = \"3.11\": agentrun offers Python 3.10, 3.12"),
        ("[targets.agentrun]\nsession_concurrency = 0", "[targets.agentrun] session_concurrency = 0: must be between 1 and 200 sessions (AgentRun's limit)"),
        ("[targets.agentrun]\nidle_timeout = 100000", "[targets.agentrun] idle_timeout = 100000: must be between 1 and 86400 seconds"),
        ("[targets.agentrun]\nruntime_name = \"_x\"", "[targets.agentrun] runtime_name = \"_x\": must be 1-128 letters, digits, '_' or '-', starting with a letter"),
        ("[targets.agentrun]\ninstance_concurrency = 5", "[targets.agentrun] does not take instance_concurrency"),
        ("[targets.lambda]\nmemory = 20000", "[targets.lambda] memory = 20000: must be between 128 and 10240 MB (Lambda's limit)"),
        ("[targets.lambda]\ntimeout = 901", "[targets.lambda] timeout = 901: must be between 1 and 900 seconds (Lambda's limit)"),
        ("[targets.lambda]\narch = \"aarch64\"", "[targets.lambda] arch = \"aarch64\": Lambda runs on x86_64 or arm64; choose one of those"),
        ("[targets.lambda]\nstreaming = \"yes please\"", "[targets.lambda] streaming = \"yes please\": must be true or false"),
        ("[targets.lambda]\nregion = \"cn-hangzhou\"", "[targets.lambda] region = \"cn-hangzhou\": must be an AWS region such as \"us-east-1\""),
        ("[targets.lambda]\nenv = { AWS_REGION = \"us-east-1\" }", "[targets.lambda] env: key 'AWS_REGION' is reserved by the platform, which sets it itself; rename it"),
        ("[targets.lambda]\nenv = { X = \"1\" }", "key 'X' is not a valid variable name on lambda: use two or more letters"),
        ("[targets.lambda]\nstreaming = true\nenv = { AWS_LAMBDA_EXEC_WRAPPER = \"/opt/x\" }", "env sets AWS_LAMBDA_EXEC_WRAPPER, which agentpack sets itself when streaming = true"),
        ("[targets.lambda]\nport = 8080", "[targets.lambda] does not take port"),
        ("[targets.lambda]\ntimeout = 1.5", "[targets.lambda] timeout = 1.5: must be a whole number"),
        ("[targets.local]\nregion = \"us-east-1\"", "[targets.local] does not take region; it takes env, port, python, redis_url, secrets"),
        ("[targets.gcp]\nregion = \"x\"", "[targets.gcp]: unknown target 'gcp'; targets are local, fc, agentrun, lambda"),
        ("[targets]\nfc = 3", "[targets.fc] = 3: must be a table"),
        ("bytecode = \"maybe\"", "bytecode = \"maybe\": must be true or false"),
        ("python = 3.12", "python = 3.12: must be a string; quote it"),
    ],
)
def test_bad_settings_name_the_key_and_the_fix(tmp_path, toml, message):
    assert message in error(tmp_path, toml)


def test_every_example_in_the_scaffold_is_valid(tmp_path):
    """``agentpack init`` documents each key with an example; uncommented, they all validate."""
    for name in TARGETS:
        table = tomllib.loads(re.sub(r"^# (\w+ = .*?)\s+# .*$", r"\1", target_section(name), flags=re.M))["targets"][name]
        settings = TARGETS[name].parse_settings(table)
        assert set(table) == set(TARGETS[name].settings.model_fields), name
        assert isinstance(settings, TargetSettings)


def test_init_writes_the_chosen_targets_tables(tmp_path):
    scaffold(tmp_path / "agent", targets=["agentrun", "local"])
    config, _ = load_config(tmp_path / "agent")
    text = (tmp_path / "agent" / "agentpack.toml").read_text()
    assert "[targets.agentrun]" in text and "[targets.local]" in text and "[targets.fc]" not in text
    assert "# session_concurrency = 20" in text
    assert isinstance(config.targets["agentrun"], AgentRunSettings)
    with pytest.raises(ProjectError, match="--target gcp: unknown target; choose from local, fc, agentrun, lambda or modelstudio"):
        scaffold(tmp_path / "other", targets=["gcp"])


def test_default_ports_come_from_the_models():
    assert {name: row.default_port for name, row in TARGETS.items()} == {"local": 8090, "fc": 9000, "agentrun": 9000, "lambda": None, "modelstudio": 8080}


def test_the_platform_environment_joins_env_secrets_and_redis():
    fc = FCSettings(env={"LOG_LEVEL": "info"}, secrets=["OPENAI_API_KEY"], redis_url="${REDIS_URL}")
    values = fc.platform_environment({"OPENAI_API_KEY": "sk-1", "REDIS_URL": "redis://:pw@r.example:6379/0", "UNRELATED": "x"})
    assert values == {"LOG_LEVEL": "info", "OPENAI_API_KEY": "sk-1", "AGENTPACK_REDIS_URL": "redis://:pw@r.example:6379/0"}
    with pytest.raises(ValueError, match=r"\[targets.fc\] secrets: REDIS_URL has no value; set it in the shell or in .env"):
        fc.platform_environment({"OPENAI_API_KEY": "sk-1"})
    with pytest.raises(ValueError, match="env and secrets hold 4960 bytes, over the platform's 4 KB"):
        fc.platform_environment({"OPENAI_API_KEY": "k" * 4900, "REDIS_URL": "redis://r:6379"})
    local = LocalSettings(redis_url="redis://127.0.0.1:6379/0")
    assert local.platform_environment({}) == {"AGENTPACK_REDIS_URL": "redis://127.0.0.1:6379/0"}


def test_only_platform_targets_listen_on_every_interface():
    from agentpack.targets import EntryContext

    def host_of(target: str) -> str:
        text = TARGETS[target].entry_files(EntryContext("app.py:app", "3.12", TARGETS[target].default_port, "python"))[0].text
        return text.split("--host ", 1)[1].split(" ", 1)[0]

    assert host_of("fc") == host_of("agentrun") == "0.0.0.0"  # the platform reaches the instance from outside
    assert host_of("local") == '"${HOST:-127.0.0.1}"'  # this machine: loopback unless HOST says otherwise


@pytest.mark.parametrize("command", ["build", "emulate", "deploy"])
def test_the_commands_name_every_target_of_the_table(command):
    """The ``--target`` help is read from the targets table, so a new row shows up in it."""
    from typer.testing import CliRunner

    from agentpack.cli.main import app

    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "240", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    help_text = " ".join(result.output.split())
    assert f"{', '.join(list(TARGETS)[:-1])} or {list(TARGETS)[-1]}" in help_text, help_text


def test_the_table_names_its_models_and_never_imports_them():
    """targets.py <- target_settings.py, one way: reading the table loads no settings model and no pydantic."""
    probe = "import sys, agentpack.targets as t; t.TARGETS['fc'].entry_files; print(sorted(m for m in sys.modules if m.startswith(('agentpack.target_settings', 'pydantic'))))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]", loaded
    assert all(row.settings_model.startswith("agentpack.target_settings:") for row in TARGETS.values())


def test_each_row_names_an_emulator_profile_that_configures_what_the_deployer_sends(tmp_path):
    """The emulator reads the platform's facts from the row and the settings model, never from a branch on the name."""
    from agentpack.emulators.background import EmulatorProfile

    emulators = {}
    for name, row in TARGETS.items():
        profile = row.load("emulator")(row)
        assert isinstance(profile, EmulatorProfile) and profile.row is row
        emulators[name] = profile.emulator(tmp_path, sys.executable, row.parse_settings(), {}, log=lambda line: None)
    fc, agentrun, local, lam = emulators["fc"].config, emulators["agentrun"].config, emulators["local"].config, emulators["lambda"]
    # the sizing `agentpack deploy` sends when the settings leave it unset is what the emulator runs with
    assert (fc.timeout, fc.instance_concurrency) == (FCSettings.sizing_defaults["timeout"], FCSettings.sizing_defaults["instance_concurrency"])
    assert (lam.timeout, lam.memory) == (LambdaSettings.sizing_defaults["timeout"], LambdaSettings.sizing_defaults["memory"])
    assert agentrun.memory_mb == AgentRunSettings.sizing_defaults["memory"]
    # how the platform drives an instance comes from the row
    assert fc.affinity_header == TARGETS["fc"].affinity_header and agentrun.affinity_header == TARGETS["agentrun"].affinity_header
    assert agentrun.health_check_path == TARGETS["agentrun"].health_path == "/readiness" and fc.health_check_path is None
    assert emulators["fc"].config.initializer and not local.initializer and not local.pre_stop  # the local target has no hooks
    # the platform's variables: the port in the row's variable, the handler string from the settings model
    env = emulators["fc"].profile.instance_env(fc, "c-1", 9123)
    assert env["FC_CUSTOM_LISTEN_PORT"] == "9123" and env["FC_FUNCTION_HANDLER"] == FCSettings.handler and env["AGENTPACK_PLATFORM"] == "fc"
    assert emulators["agentrun"].profile.instance_env(agentrun, "c-1", 9123) == {"AGENTPACK_PLATFORM": "agentrun", "AGENTPACK_REQUEST_TIMEOUT": "600", "PORT": "9123"}
    assert emulators["local"].profile.instance_env(local, "c-1", 9123) == {"PORT": "9123"}
    assert emulators["fc"].profile.request_headers(fc, "r-1")["x-fc-function-handler"] == FCSettings.handler
    assert emulators["local"].profile.request_headers(local, "r-1") == {}


def test_the_lambda_emulator_refuses_exactly_the_names_the_settings_reserve(tmp_path):
    from agentpack.emulators.aws_lambda import LambdaEmulator

    for name in LambdaSettings.reserved_env_names:
        with pytest.raises(ValueError, match=f"{name} is reserved by Lambda"):
            LambdaEmulator(tmp_path, sys.executable, {name: "x"})
    LambdaEmulator(tmp_path, sys.executable, {"MY_SETTING": "x"})


def test_a_flag_override_is_checked_by_the_model_and_names_the_flag():
    from agentpack.builders.config import with_overrides

    settings = FCSettings(env={"A": "1"})
    assert with_overrides(settings, {"env": {"A": "1", "B": "2"}}, "--env").env == {"A": "1", "B": "2"}
    assert with_overrides(settings, {}, "--env") is settings
    with pytest.raises(ProjectError, match=r"^--env: key 'FC_REGION': names starting with FC_ are reserved by the platform; rename it$"):
        with_overrides(settings, {"env": {"FC_REGION": "x"}}, "--env")
    with pytest.raises(ProjectError, match=r"^\[targets.fc\]: memory: must be a multiple of 64 MB"):
        with_overrides(settings, {"memory": 100}, "[targets.fc]")


def test_every_build_and_emulate_flag_travels_in_one_options_object(monkeypatch):
    """A new build or emulate option is a field of BuildOptions / EmulationOptions and its flag: nothing in between."""
    from typer.testing import CliRunner

    from agentpack.builders.build import BuildOptions
    from agentpack.cli.main import app
    from agentpack.emulators.emulation import EmulationOptions

    seen = {}
    monkeypatch.setattr("agentpack.cli.build_view.run_build", lambda project, target, options, as_json: seen.update(build=options) or 0)
    monkeypatch.setattr("agentpack.cli.emulate_view.run_emulate", lambda source, target, options, env, *rest: seen.update(emulate=options) or 0)
    flags = ["--out", "out", "--arch", "x86_64", "--python", "3.12", "--slim", "--no-bytecode", "--no-ui"]
    assert CliRunner().invoke(app, ["build", "project", "--target", "fc", *flags]).exit_code == 0
    assert seen["build"] == BuildOptions(out_dir=Path("out"), arch="x86_64", python="3.12", slim=True, bytecode_enabled=False, ui=False)
    assert {f.name for f in dataclasses.fields(BuildOptions)} == {"out_dir", "arch", "python", "slim", "bytecode_enabled", "ui"}
    assert CliRunner().invoke(app, ["emulate", "project", "--target", "fc", "--port", "0", "-i", "2", "--timeout", "9", "--ui"]).exit_code == 0
    assert seen["emulate"] == EmulationOptions(port=0, instances=2, timeout=9.0, ui=True)
    with pytest.raises(TypeError):
        dataclasses.replace(BuildOptions(), no_such_option=True)  # what build(project, target, no_such_option=...) meets
