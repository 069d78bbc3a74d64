"""The `agentpack` command and the shipped examples, run as a user would run them.

What the command refuses is checked in process (typer's CliRunner); serving, asking and the
version are checked on the real command, as processes (integration tests)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from agentpack.loader import load_app
from agentpack.deployers.local import LocalDeployManager
from tests.support import BackgroundStream, check_protocol, read_events, text_of, user_body, http

ROOT = Path(__file__).resolve().parents[1]
AGENTPACK = [sys.executable, "-m", "agentpack"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else "server exited"
        try:
            if http.get(f"{url}/readiness", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} not ready within {timeout}s")


@pytest.fixture
def cli_server():
    processes: list[subprocess.Popen] = []

    def start(*args: str) -> str:
        port = free_port()
        process = subprocess.Popen(
            [*AGENTPACK, "run", *args, "--port", str(port), "--log-level", "warning"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, process)
        return url

    yield start
    for process in processes:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)


def test_run_serves_the_quickstart_example(cli_server):
    url = cli_server("examples/quickstart/app.py")
    events = read_events(f"{url}/process", user_body("What is agentpack?"))
    assert check_protocol(events)["status"] == "completed"
    assert text_of(events).startswith('You asked: "What is agentpack?"')
    assert len([e for e in events if e["object"] == "content" and e.get("delta")]) > 10
    assert http.post(f"{url}/echo", params={"text": "hi"}).json() == {"echo": "hi"}


def test_run_with_module_spec(cli_server):
    url = cli_server("examples.quickstart.app:app")
    assert http.get(f"{url}/").json()["name"] == "Friday"


@pytest.mark.integration
def test_run_ask_once_prints_the_streamed_reply():
    result = subprocess.run(
        [*AGENTPACK, "run", "examples/quickstart/app.py", "--port", "0", "--ask", "Hi", "--once", "--log-level", "warning"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert 'You asked: "Hi"' in result.stdout and "flushed the moment" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "missing.py"], "missing.py: no such file"),
        (["run", "examples/quickstart/app.py:nothing"], "has no attribute 'nothing'"),
        (["run", "examples/quickstart/app.py:ANSWER"], "not an ASGI app"),
        (["run", "no_such_module:app"], "cannot import 'no_such_module'"),
        (["run", "examples/quickstart/app.py", "--once"], "--once needs --ask"),
        (["run", "examples/quickstart/app.py", "--port", "70000"], "--port 70000"),
    ],
)
def test_cli_user_errors_are_one_line_exit_2(args, message, monkeypatch):
    from typer.testing import CliRunner

    from agentpack.cli import app

    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # refused, not raised
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.integration
def test_version():
    result = subprocess.run([*AGENTPACK, "--version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout.startswith("agentpack ")


@pytest.mark.integration
def test_agentscope_style_example_streams_and_stops_via_its_own_route():
    """The example is served as written (its module-level ``agent_app.run()`` must not block the import)."""
    app, spec = load_app(str(ROOT / "examples/agentscope_style/app.py"))
    example = sys.modules[spec.module]
    manager = LocalDeployManager(port=0)
    url = manager.start(app)["url"]
    try:
        events = read_events(f"{url}/process", user_body("Tell me a story", session_id="s1", user_id="u1"))
        terminal = check_protocol(events)
        assert terminal["status"] == "completed"
        assert [m["type"] for m in terminal["output"]] == ["reasoning", "message"]
        assert "robot named Friday" in text_of(events)

        # a slow run, stopped through the app's hand-written /stop route
        example.WORD_DELAY = 30
        body = user_body("A very long story", session_id="ss-123", user_id="uu-123")
        stream = BackgroundStream(url, body).begin()
        stopped = http.post(f"{url}/stop", json={"input": [], "session_id": "ss-123", "user_id": "uu-123"}).json()
        collected = stream.result()
        assert stopped["status"] == "success"
        terminal = check_protocol(collected)
        assert terminal["status"] == "canceled"
        assert [(m["type"], m["status"]) for m in terminal["output"]] == [("reasoning", "completed")]  # what was streamed
        # the handler's CancelledError branch and finally block ran: state was saved
        assert app.state.session.saved[("uu-123", "ss-123")][0] == "A very long story"
    finally:
        manager.shutdown()
