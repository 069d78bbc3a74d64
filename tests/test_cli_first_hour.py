"""A new user's first hour with the command (issue 19, items 14, 16, 17, 18 and 20): what the
command says when something goes wrong or takes long, checked on real processes where the
process is the point (signals, a server that never answers) and through CliRunner otherwise."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentpack.cli.main import app
from tests.support import BackgroundStream, check_protocol, free_port, http, user_body, wait_until

# most of these run agentpack as a user does: real processes, servers, pip and emulators
pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
DEPLOYED_APP = ROOT / "tests" / "projects" / "deployed" / "app.py"
SHUTDOWN_LINE = "shutdown: an open stream was ended with its canceled event"


def _serving(command: list[str], port: int) -> subprocess.Popen[str]:
    env = {**os.environ, "AGENTPACK_GRACEFUL_SHUTDOWN": "0.5"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def ready() -> bool:
        assert process.poll() is None, process.communicate()[1]
        try:
            return http.get(f"http://127.0.0.1:{port}/readiness", timeout=1).status_code == 200
        except Exception:
            return False

    wait_until(ready, 30, "the server never became ready", interval=0.05)
    return process


@pytest.mark.parametrize(
    "how, sig",
    [("run", signal.SIGINT), ("run", signal.SIGTERM), ("serve --platform fc", signal.SIGTERM)],
)
def test_a_shutdown_with_a_stream_open_logs_one_info_line_and_no_traceback(how: str, sig: signal.Signals) -> None:
    """Item 14: Ctrl+C / SIGTERM (an FC scale-in) while a run streams, past the grace: the client
    gets its canceled event, and the server logs one INFO line for it, not a crash with two
    CancelledError tracebacks.  ``serve --platform fc`` is what an emulated or FC instance runs."""
    port = free_port()
    if how == "run":
        command = [sys.executable, "-m", "agentpack", "run", str(DEPLOYED_APP), "--port", str(port),
                   "--timeout-graceful-shutdown", "0.5"]  # fmt: skip
    else:
        command = [sys.executable, "-m", "agentpack.serve", "--app", str(DEPLOYED_APP), "--host", "127.0.0.1",
                   "--port", str(port), "--platform", "fc"]  # fmt: skip
    process = _serving(command, port)
    try:
        stream = BackgroundStream(f"http://127.0.0.1:{port}", user_body("count 600")).begin()
        if how != "run":  # an FC instance is ended after /pre-stop; the grace is the platform's
            assert http.get(f"http://127.0.0.1:{port}/pre-stop", timeout=30).status_code == 200
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    terminal = check_protocol(stream.result())
    assert terminal["status"] == "canceled" and stream.error is None, "the stream was cut instead of ended"
    assert "Traceback" not in stderr and "Exception in ASGI application" not in stderr, stderr
    assert "ERROR" not in stderr, stderr
    assert stderr.count(SHUTDOWN_LINE) == 1, stderr


# -- item 17: a version that does not exist -----------------------------------------------------------
def test_a_version_that_does_not_exist_is_named_with_the_versions_that_do(tmp_path: Path) -> None:
    """``tinypkg==99.0`` (as ``requests==99.0``): not "no wheel fits cp312-manylinux…" with advice to
    pin a version with a wheel, but that no such version exists and which do (from the index the
    requirement files name: a local --find-links folder here, so the test needs no network)."""
    from tests.test_build_dependencies import make_wheel

    project = tmp_path / "quickstart"
    shutil.copytree(ROOT / "examples" / "quickstart", project, ignore=shutil.ignore_patterns("dist", "__pycache__"))
    for version in ("1.0", "1.1"):
        make_wheel(project / "wheels", "tinypkg", version)
    (project / "requirements.txt").write_text("--find-links ./wheels\ntinypkg==99.0\n")
    done = CliRunner().invoke(app, ["build", str(project), "--target", "fc"])
    assert done.exit_code == 2, done.output
    assert "no version of tinypkg matches ==99.0" in done.output, done.output
    assert "versions that exist: 1.1, 1.0" in done.output, done.output
    assert "no wheel" not in done.output and "Traceback" not in done.output


# -- item 16: silent waits ------------------------------------------------------------------------------
@pytest.fixture
def silent_endpoint():
    """A loopback endpoint that accepts every connection and never answers."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    closing = threading.Event()

    def accept() -> None:
        while not closing.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    closing.set()
    listener.close()
    for connection in held:
        connection.close()


@pytest.mark.parametrize("target, call", [("fc", "GetFunction"), ("agentrun", "ListAgentRuntimes"), ("lambda", "GetFunction")])
def test_deploy_against_an_endpoint_that_never_answers_says_what_it_waits_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, silent_endpoint: str, target: str, call: str
) -> None:
    """Item 16: not two to six silent minutes and "could not reach the endpoint", but the build's
    steps, "waiting for the platform's answer to <call> (N s)" while it waits, and an error that
    says the endpoint took the connection and never answered, within AGENTPACK_API_TIMEOUT."""
    import time

    from agentpack.cli import waiting

    project = tmp_path / "deployed"
    shutil.copytree(ROOT / "tests" / "projects" / "deployed", project)
    monkeypatch.setattr(waiting, "NOTICE_AFTER", 0.3)
    env = {
        "DEPLOYED_SECRET": "s", "REDIS_URL": "redis://127.0.0.1:1/0", "AGENTPACK_API_TIMEOUT": "1",
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "id", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "secret",
        "AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret",
        "AGENTPACK_FC_ENDPOINT": silent_endpoint, "AGENTPACK_AGENTRUN_ENDPOINT": silent_endpoint,
        "AGENTPACK_LAMBDA_ENDPOINT": silent_endpoint,
    }  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    started = time.monotonic()
    done = CliRunner().invoke(app, ["deploy", str(project), "--target", target])
    assert done.exit_code == 1, done.output
    assert "laying out the artifact" in done.output, "the build's steps are shown, as agentpack build shows them"
    assert f"waiting for the platform's answer to {call} (" in done.output, done.output
    assert "accepted the connection but sent no answer within 1 s" in done.output, done.output
    assert "could not reach" not in done.output
    assert time.monotonic() - started < 60


# -- item 18: an error in the user's app -----------------------------------------------------------------
FAILING_APP = """from agentpack import AgentApp


def make():
    return helper()


def helper():
    raise RuntimeError("the model key is missing")


app = AgentApp(app_name="failing")
make()
"""


@pytest.mark.parametrize("how", ["run", "serve"])
def test_an_error_in_the_app_shows_its_own_frames_and_one_summary_line(tmp_path: Path, how: str) -> None:
    """Item 18: not 50 lines of typer/click/importlib internals, but the app's frames and one line
    saying what raised what, where.  ``serve`` is what an emulated or deployed instance runs."""
    (tmp_path / "app.py").write_text(FAILING_APP)
    command = (
        [sys.executable, "-m", "agentpack", "run", "app.py", "--port", str(free_port())]
        if how == "run"
        else [sys.executable, "-m", "agentpack.serve", "--app", "app.py", "--port", str(free_port())]
    )
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].endswith(
        "importing app.py raised RuntimeError: the model key is missing (app.py:9, in helper)"
    ), done.stderr
    assert 'app.py", line 13, in <module>' in done.stderr and 'line 5, in make' in done.stderr
    for internal in ("typer", "click", "importlib", "runpy", "agentpack/loader.py", "agentpack/cli"):
        assert internal not in done.stderr, done.stderr
    assert len(lines) <= 10, done.stderr


def test_emulate_shows_an_app_that_fails_to_start_once(tmp_path: Path) -> None:
    """Item 18 under emulate: the instance's output was shown as it came; the error does not repeat it."""
    (tmp_path / "app.py").write_text(FAILING_APP)
    (tmp_path / "agentpack.toml").write_text('app = "app.py:app"\nname = "failing"\npython = "3.12"\n')
    (tmp_path / "requirements.txt").write_text("")
    done = CliRunner().invoke(app, ["emulate", str(tmp_path), "--target", "fc", "--port", "0"])
    assert done.exit_code == 1, done.output
    assert done.output.count('raise RuntimeError("the model key is missing")') == 1, done.output
    assert "importing app.py raised RuntimeError: the model key is missing (app.py:9, in helper)" in done.output
    assert "the artifact did not start under the fc emulator" in done.output


# -- item 20: the smaller points ---------------------------------------------------------------------------
def test_help_keeps_the_toml_table_names() -> None:
    """``[targets.T]`` in a help text is a TOML table, not rich markup to swallow."""
    for command in ("init", "deploy"):
        done = CliRunner().invoke(app, [command, "--help"], terminal_width=200)
        assert done.exit_code == 0 and "[targets.T]" in done.output, done.output


def _recorded(project: Path, *deployments: object) -> None:
    from agentpack.deployers.state import DeploymentStore

    store = DeploymentStore(project)
    for deployment in deployments:
        store.put(deployment)  # type: ignore[arg-type]


def test_list_is_readable_at_80_columns(tmp_path: Path) -> None:
    from agentpack.deployers.state import Deployment

    url = "https://deployed-agent-fc-abcdefghij.cn-hangzhou.fcapp.run/with/a/long/path/to/the/agent/endpoint"
    _recorded(
        tmp_path,
        Deployment("fc", "deployed-agent", url=url, region="cn-hangzhou", version="12"),
        Deployment("local", "deployed-agent", url="http://127.0.0.1:8090", version="0123456789abcdef0123"),
    )
    done = CliRunner().invoke(app, ["list", "-C", str(tmp_path)], terminal_width=80, env={"COLUMNS": "80"})
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert any(line.endswith(url) for line in lines), "each URL whole, on one line"
    assert all(len(line) <= 80 for line in lines if url not in line), done.output
    assert len(lines) <= 8, done.output


def _with_history(project: Path, versions: list[str], serving: str) -> None:
    from agentpack.deployers.state import Deployment, Release

    _recorded(
        project,
        Deployment("local", "agent", url="http://127.0.0.1:1", version=serving, releases=[Release(v, v * 2) for v in versions]),
    )


@pytest.mark.parametrize(
    "versions, serving, to, says",
    [
        # a second rollback reached the oldest: it says so, and names the newer ones it can go back to
        (["a1b2c3d4e5f6", "f6e5d4c3b2a1"], "a1b2c3d4e5f6", None, "nothing older to roll back to: agent serves version a1b2c3d4e5f6, the oldest"),
        (["a1b2c3d4e5f6", "a1ffffffffff"], "a1ffffffffff", "a1", "--to a1 matches versions a1b2c3d4e5f6, a1ffffffffff of agent; give more"),
        (["a1b2c3d4e5f6"], "a1b2c3d4e5f6", "zz", "version zz of agent was not deployed from this project"),
    ],
)
def test_rollback_states_the_history_and_takes_a_unique_prefix(tmp_path: Path, versions: list[str], serving: str, to: str | None, says: str) -> None:
    _with_history(tmp_path, versions, serving)
    done = CliRunner().invoke(app, ["rollback", "agent", "-C", str(tmp_path), *(["--to", to] if to else [])], terminal_width=300)
    assert done.exit_code == 2, done.output
    assert says in " ".join(done.output.split()), done.output


def test_rollback_to_a_unique_prefix_finds_the_version(tmp_path: Path) -> None:
    """``--to a1b2`` names a1b2c3d4e5f6: it is already serving, which proves it was found."""
    _with_history(tmp_path, ["a1b2c3d4e5f6", "f6e5d4c3b2a1"], "a1b2c3d4e5f6")
    done = CliRunner().invoke(app, ["rollback", "agent", "-C", str(tmp_path), "--to", "a1b2"], terminal_width=300)
    assert done.exit_code == 2 and "agent already serves version a1b2c3d4e5f6" in done.output, done.output


def test_emulate_ask_shows_the_instance_logs_that_follow_the_reply(tmp_path: Path) -> None:
    """``emulate --ask`` holds the instances' lines back while the reply streams, and shows the
    ones that come after it (they used to be hidden until the command ended)."""
    import threading

    project = tmp_path / "emulated"
    shutil.copytree(ROOT / "tests" / "projects" / "emulated", project)
    (project / "agentpack.toml").write_text('app = "app.py:app"\nname = "emulated"\npython = "3.12"\n')
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "agentpack", "emulate", str(project), "--target", "fc", "--port", str(port), "--ask", "hi"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        def serving() -> bool:
            assert process.poll() is None, "".join(lines)
            return any("serving fc at" in line for line in lines)

        wait_until(serving, 90, lambda: "".join(lines))
        assert http.get(f"http://127.0.0.1:{port}/whoami", timeout=30).status_code == 200
        wait_until(lambda: any("GET /whoami" in line for line in lines), 20, lambda: "".join(lines))
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)


def test_invoke_on_a_stopped_local_deployment_says_it_is_stopped(tmp_path: Path) -> None:
    """Not "Connection refused" when ``status`` knows the deployment is stopped."""
    from agentpack.deployers.state import Deployment

    shutil.copytree(ROOT / "tests" / "projects" / "deployed", tmp_path, dirs_exist_ok=True)
    dead = {"pid": 2**22 + 7, "started": "1"}  # a process that is gone
    _recorded(tmp_path, Deployment("local", "agent", url=f"http://127.0.0.1:{free_port()}", version="v1", resource=dead))
    done = CliRunner().invoke(app, ["invoke", "agent", "hello", "-C", str(tmp_path)], terminal_width=300)
    assert done.exit_code == 1, done.output
    assert "local/agent is stopped: the process is not running" in done.output, done.output
    assert "`agentpack deploy --target local` starts it again" in done.output
    assert "Connection refused" not in done.output


def test_run_on_a_busy_port_is_one_line_with_the_fix() -> None:
    """As emulate and deploy do: not uvicorn's bind error after the app started, and exit 3."""
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        done = CliRunner().invoke(app, ["run", str(DEPLOYED_APP), "--port", str(port)], terminal_width=300)
    assert done.exit_code == 2, done.output
    assert done.output.strip() == f"error: --port {port} is in use on 127.0.0.1; pass another --port", done.output


def test_emulate_an_artifact_takes_its_target_from_the_zip(tmp_path: Path) -> None:
    """``emulate app.zip`` without --target: the zip's manifest records the target."""
    (tmp_path / "app.py").write_text(FAILING_APP)  # it need not start: the target is read before
    (tmp_path / "agentpack.toml").write_text('app = "app.py:app"\nname = "failing"\npython = "3.12"\n')
    (tmp_path / "requirements.txt").write_text("")
    built = CliRunner().invoke(app, ["build", str(tmp_path), "--target", "fc", "--json"])
    assert built.exit_code == 0, built.output
    import json

    artifact = json.loads(built.output.strip().splitlines()[-1])["artifact"]
    done = CliRunner().invoke(app, ["emulate", artifact, "--port", "0"], terminal_width=300)
    assert done.exit_code == 1 and "--target" not in done.output, done.output
    assert "the artifact did not start under the fc emulator" in done.output
    assert "importing app.py raised RuntimeError" in done.output, "it was started, under fc's emulator"
    project = CliRunner().invoke(app, ["emulate", str(tmp_path), "--port", "0"], terminal_width=300)
    assert project.exit_code == 2 and "is a project: say which target to build it for with --target" in project.output


def test_dash_n_means_a_name_wherever_it_is_taken() -> None:
    """``-n`` is a name (deploy --name, worker --hostname); emulate's instance count is ``-i``."""
    runner = CliRunner()
    assert "-n, --name" in runner.invoke(app, ["deploy", "--help"], terminal_width=200).output
    emulate_help = runner.invoke(app, ["emulate", "--help"], terminal_width=200).output
    assert "-i, --instances" in emulate_help and "-n" not in emulate_help, emulate_help
    refused = runner.invoke(app, ["emulate", ".", "--target", "fc", "-i", "0"])
    assert refused.exit_code == 2 and "--instances 0: give 1 or more" in refused.output


@pytest.mark.parametrize("status, line", [(200, b"HTTP/1.1 200 OK\r\n"), (404, b"HTTP/1.1 404 Not Found\r\n"), (599, b"HTTP/1.1 599 \r\n")])
def test_emulated_responses_carry_the_reason_phrase(status: int, line: bytes) -> None:
    """The emulators' HTTP front (every emulated platform answers through it) sends ``200 OK``, not ``200``."""
    import asyncio

    from agentpack.emulators.h11_server import Exchange, H11Server

    async def handler(exchange: Exchange) -> None:
        await exchange.respond(status, b"x")

    async def scenario() -> bytes:
        server = H11Server(handler)
        await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            head = await asyncio.wait_for(reader.readline(), 10)
            writer.close()
            return head
        finally:
            await server.close()

    assert asyncio.run(scenario()) == line


def test_emulate_piped_into_head_ends_and_leaves_no_temp_folder(tmp_path: Path) -> None:
    """``emulate … | head``: when nobody reads its output any more it ends as on Ctrl+C (it went on
    serving into a closed pipe, and its unpacked copy stayed behind)."""
    project = tmp_path / "emulated"
    shutil.copytree(ROOT / "tests" / "projects" / "emulated", project)
    (project / "agentpack.toml").write_text('app = "app.py:app"\nname = "emulated"\npython = "3.12"\n')
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "agentpack", "emulate", str(project), "--target", "fc", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, "TMPDIR": str(scratch)}, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        for line in process.stdout:  # as `head` does: read until the instance speaks, then go
            if line.startswith("[instance"):
                break
        assert list(scratch.glob("agentpack-emulate-*")), "the emulation unpacked its copy here"
        process.stdout.close()
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not list(scratch.glob("agentpack-emulate-*"))


def test_missing_modules_are_named_in_the_plural_when_there_are_several() -> None:
    from agentpack.deployers.errors import DeployConfigError, require_modules

    with pytest.raises(DeployConfigError, match=r"needs no_such_mod_a, no_such_mod_b, which are not installed; install them with"):
        require_modules(("no_such_mod_a", "no_such_mod_b"), "fc", "fc")
    with pytest.raises(DeployConfigError, match=r"needs no_such_mod_a, which is not installed; install it with"):
        require_modules(("no_such_mod_a",), "fc", "fc")


def test_emulate_reports_a_missing_target_python_before_building(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Python the artifact runs with is looked for first, not after seconds of building.
    (This machine has every Python: the lookup is made to find none.)"""
    from agentpack.builders import interpreters

    monkeypatch.setattr(interpreters, "find_interpreter", lambda version: None)
    (tmp_path / "app.py").write_text(FAILING_APP)
    (tmp_path / "agentpack.toml").write_text('app = "app.py:app"\nname = "failing"\npython = "3.12"\n')
    done = CliRunner().invoke(app, ["emulate", str(tmp_path), "--target", "fc", "--port", "0"], terminal_width=300)
    assert done.exit_code == 2, done.output
    assert "the target runs Python 3.12, which is not on this machine" in done.output
    assert "building" not in done.output and not (tmp_path / "dist").exists(), done.output


def test_emulate_shows_the_instances_lines_as_text_in_a_terminal_unless_told(monkeypatch):
    from agentpack.cli.emulate_view import instance_log_format

    monkeypatch.delenv("AGENTPACK_LOG_FORMAT", raising=False)
    assert instance_log_format({}, terminal=True) == {"AGENTPACK_LOG_FORMAT": "text"}
    assert instance_log_format({}, terminal=False) == {}, "piped on: JSON lines, as on the platform"
    assert instance_log_format({"AGENTPACK_LOG_FORMAT": "json"}, terminal=True) == {}, "--env wins"
    monkeypatch.setenv("AGENTPACK_LOG_FORMAT", "json")
    assert instance_log_format({}, terminal=True) == {"AGENTPACK_LOG_FORMAT": "json"}, "the shell's choice is passed on"
