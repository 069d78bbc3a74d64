"""`agentpack emulate` for Function Compute and AgentRun (Lambda's own emulator tests are in
test_lambda_emulator.py): the built artifact, unpacked read-only, started with the target's
Python from a bare environment, behind a front that behaves like the platform's trigger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from agentpack.emulators.http_function import EmulatorStartError, FunctionConfig, FunctionEmulator
from agentpack.builders.interpreters import bare_python
from agentpack.emulators.emulation import EmulationError, start
from tests.support import check_protocol, user_body, wait_until, http

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ROOT / "tests" / "projects" / "emulated"


def stream_with_times(url: str, body: dict, headers: dict | None = None) -> tuple[list[dict], list[float]]:
    """The events of a /process stream and when each arrived (seconds since the request)."""
    events, times = [], []
    started = time.perf_counter()
    with http.stream("POST", f"{url}/process", json=body, headers=headers, timeout=60) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                times.append(time.perf_counter() - started)
    return events, times


@pytest.fixture(scope="module", params=["fc", "agentrun"])
def emulated(request, tmp_path_factory):
    emulation = start(PROJECT, request.param, port=0, instances=2, out_dir=tmp_path_factory.mktemp("dist"), log=lambda line: None)
    yield emulation
    emulation.stop()


def test_health_and_a_custom_endpoint(emulated):
    assert http.get(f"{emulated.url}/health").json()["status"] == "healthy"
    assert http.post(f"{emulated.url}/echo?text=你好").json() == {"echo": "你好"}


def test_process_streams_incrementally(emulated):
    events, times = stream_with_times(emulated.url, user_body(chunks=10, pause=0.1))
    assert check_protocol(events)["status"] == "completed"
    first_delta = next(t for e, t in zip(events, times) if e["object"] == "content")
    assert first_delta < times[-1] / 2, f"the first delta came at {first_delta:.2f}s of {times[-1]:.2f}s: the stream was buffered"


def test_the_platform_contract_seen_from_inside(emulated):
    seen = http.get(f"{emulated.url}/whoami").json()
    assert seen["request_id"], "the platform's request id reaches the handler"
    answer = http.get(f"{emulated.url}/whoami")
    assert answer.headers["x-fc-request-id"] == answer.json()["request_id"], "the request id is echoed"
    if emulated.target == "fc":
        assert int(seen["env"]["FC_CUSTOM_LISTEN_PORT"]) > 0 and seen["env"]["FC_FUNCTION_NAME"]
    else:
        assert "FC_CUSTOM_LISTEN_PORT" not in seen["env"]
    assert seen["has_credentials"] is False  # no role, no temporary credentials


def test_lifespan_starts_once_per_instance_over_many_requests(emulated):
    answers = [http.get(f"{emulated.url}/whoami").json() for _ in range(20)]
    pids = {a["pid"] for a in answers}
    assert len(pids) == 2, "requests are spread over both instances"
    assert {a["starts"] for a in answers} == {1}


def test_a_body_over_the_payload_limit_gets_the_platform_answer_and_the_instance_serves_on(emulated):
    too_big = b"x" * (32 * 1024 * 1024 + 1)
    answer = http.post(f"{emulated.url}/echo", content=too_big, headers={"content-type": "application/octet-stream"}, timeout=60)
    if emulated.target == "fc":  # each platform's own answer (tests/test_emulator_faults.py has the details)
        assert answer.status_code == 400, answer.text
        assert answer.json()["errorCode"] == "EntityTooLarge" and "33554432 bytes" in answer.json()["errorMessage"]
        assert answer.headers["x-fc-error-type"] == "FcCommonError"
    else:
        assert answer.status_code == 413 and answer.json()["code"] == "PayloadTooLarge", answer.text
    assert http.get(f"{emulated.url}/health").status_code == 200


def test_the_code_is_read_only_and_the_host_packages_are_not_importable(emulated):
    python = emulated.python
    probe = subprocess.run(
        [bare_python(python), "-c", "import importlib.util as u; print(u.find_spec('yaml') is None, u.find_spec('httpx') is None)"],
        capture_output=True,
        text=True,
    )
    assert probe.stdout.split() == ["True", "True"], probe.stdout + probe.stderr
    # read-only as /code is (mode bits: root, which runs these tests, is not held back by them)
    modes = {oct(path.stat().st_mode & 0o222) for path in [emulated.code_dir, *emulated.code_dir.rglob("*")]}
    assert modes == {"0o0"}, modes


def test_a_missing_dependency_fails_at_start_with_the_import_error(tmp_path):
    with pytest.raises(EmulatorStartError) as failure:
        start(ROOT / "tests" / "projects" / "missing_dependency", "fc", port=0, out_dir=tmp_path, log=lambda line: None)
    assert "No module named 'yaml'" in str(failure.value)
    assert failure.value.exit_code not in (None, 0)


def _handmade_function(tmp_path: Path, server_code: str) -> Path:
    """A code directory whose bootstrap runs ``server_code`` (for contract violations)."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "server.py").write_text(textwrap.dedent(server_code))
    bootstrap = code / "bootstrap"
    bootstrap.write_text('#!/bin/sh\nexec "$AGENTPACK_PYTHON" "$(dirname "$0")/server.py"\n')
    bootstrap.chmod(0o755)
    return code


@pytest.mark.parametrize(
    "server_code, says",
    [
        (
            """
            import http.server, os
            http.server.HTTPServer(("127.0.0.1", int(os.environ["FC_CUSTOM_LISTEN_PORT"])), http.server.BaseHTTPRequestHandler).serve_forever()
            """,
            "listens on 127.0.0.1:",
        ),
        (
            """
            import http.server
            http.server.HTTPServer(("0.0.0.0", 0), http.server.BaseHTTPRequestHandler).serve_forever()
            """,
            "not on the port the platform gives it",
        ),
    ],
)
def test_a_server_the_platform_cannot_reach_fails_as_function_not_started(tmp_path, server_code, says):
    code = _handmade_function(tmp_path, server_code)
    config = FunctionConfig(code, bare_python("3.12"), platform="fc", start_timeout=3, initializer=False, pre_stop=False)
    with pytest.raises(EmulatorStartError) as failure:
        FunctionEmulator(config, log=lambda line: None).start()
    message = str(failure.value)
    assert message.startswith("FunctionNotStarted: Function instance health check failed on port"), message
    assert says in message


def test_a_process_group_ends_as_a_platform_ends_an_instance():
    """SIGTERM and the grace, then SIGKILL for whatever of the group is left: a leader that ignores
    SIGTERM and the process it started both end (agentpack.processes, shared by emulators and the local deployer)."""
    from agentpack.processes import child_env, end_process_group, process_environ, process_group, process_start

    script = (
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); print('up', flush=True); time.sleep(60)"
    )
    process = subprocess.Popen([sys.executable, "-c", script], env=child_env(sys.executable, MARK="1"), stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert process.stdout.readline() == b"up\n"
        wait_until(lambda: len(process_group(process.pid)) == 2, 10, "the child did not start")
        members = process_group(process.pid)
        environ = process_environ(process.pid)
        assert environ["MARK"] == "1" and environ["PYTHONNOUSERSITE"] == "1" and "PYTEST_CURRENT_TEST" not in environ  # nothing of the caller's
        started = time.monotonic()
        assert end_process_group(process.pid, lambda: process.poll() is None, grace=0.5)
        assert 0.5 <= time.monotonic() - started < 10  # SIGTERM was ignored: SIGKILL after the grace
        wait_until(lambda: all(process_start(pid) is None for pid in members), 10, "a process of the group is left")
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()
        process.wait()


def test_a_request_past_the_timeout_gets_the_platform_answer(tmp_path):
    emulation = start(PROJECT, "fc", port=0, out_dir=tmp_path, timeout=2, log=lambda line: None)
    try:
        # not the agent: a plain request that outlives the function's timeout
        slow = http.post(f"{emulation.url}/process", json=user_body(chunks=100, pause=0.5, stream=False), timeout=30)
        assert slow.status_code == 502
        assert slow.headers["x-fc-error-type"] == "UnhandledInvocationError"
        assert slow.json() == {"errorMessage": "Function time out after 2 seconds"}
        # a stream still going near the timeout is ended by agentpack with its terminal event
        events, _ = stream_with_times(emulation.url, user_body(chunks=100, pause=0.2))
        terminal = check_protocol(events)
        assert terminal["status"] == "canceled"
    finally:
        emulation.stop()


def test_a_stop_sent_to_instance_two_ends_a_run_on_instance_one_over_redis(tmp_path, redis_server):
    emulation = start(PROJECT, "fc", port=0, instances=2, env={"AGENTPACK_REDIS_URL": redis_server.url}, out_dir=tmp_path, log=lambda line: None)
    try:
        events: list[dict] = []
        first = threading.Event()

        def read() -> None:
            with http.stream("POST", f"{emulation.url}/process", json=user_body(session_id="跨实例", user_id="u", chunks=1000, pause=0.05), timeout=60) as response:
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        events.append(json.loads(line[6:]))
                        if events[-1]["object"] == "content":
                            first.set()

        reader = threading.Thread(target=read)
        reader.start()
        assert first.wait(30)
        stop = http.post(f"{emulation.url}/process/stop", json={"session_id": "跨实例", "user_id": "u"}, timeout=10)
        assert stop.json()["stopped"] is True
        reader.join(timeout=30)
        assert check_protocol(events)["status"] == "canceled"
        busy_instances = [i for i in emulation.server.instances if i.starts]
        assert len(busy_instances) == 2
        wait_until(lambda: not redis_server.client().keys("agentpack:*:lease"), 10, "the session was not released")
    finally:
        emulation.stop()


def test_a_port_in_use_is_a_clear_error(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(EmulationError, match=f"--port {port} is in use"):
            start(PROJECT, "fc", port=port, out_dir=tmp_path, log=lambda line: None)


def test_bad_input_is_an_emulation_error(tmp_path):
    with pytest.raises(EmulationError, match="no such project directory or artifact zip"):
        start(tmp_path / "nope", "fc")
    with pytest.raises(EmulationError, match="--target moon"):
        start(PROJECT, "moon")
    artifact = tmp_path / "fake.zip"
    artifact.write_bytes(b"not a zip")
    with pytest.raises(EmulationError, match="not an agentpack artifact"):
        start(artifact, "fc")


def test_the_cli_builds_emulates_and_streams_a_reply(tmp_path):
    env = {**os.environ, "AGENTPACK_CACHE_DIR": os.environ.get("AGENTPACK_CACHE_DIR", str(Path.home() / ".cache" / "agentpack"))}
    result = subprocess.run(
        [sys.executable, "-m", "agentpack", "emulate", "examples/quickstart", "--target", "agentrun", "--port", "0", "--ask", "hi", "--once"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cold start" in result.stdout and "You asked" in result.stdout
    for args, says in (
        (["--target", "moon"], "--target moon"),
        (["--target", "fc", "--env", "not-a-key"], "--env 'not-a-key'"),
        (["--target", "fc", "--env", "FC_REGION=x"], "reserved by the platform"),
        (["--target", "fc", "--instances", "0"], "--instances 0"),
    ):
        bad = subprocess.run([sys.executable, "-m", "agentpack", "emulate", "examples/quickstart", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert bad.returncode == 2, bad.stdout + bad.stderr
        assert says in bad.stderr and "Traceback" not in bad.stderr


def test_one_emulated_function_serves_a2a_responses_and_agui_and_its_card_names_the_emulators_url(tmp_path):
    """The artifact carries the extras (its requirements); the card says where the platform's front
    answers, not the instance's own port."""
    from tests.support import sse_events

    emulation = start(ROOT / "tests" / "projects" / "protocols", "fc", port=0, instances=1, out_dir=tmp_path, log=lambda line: None)
    try:
        url = emulation.url
        card = http.get(f"{url}/.well-known/agent-card.json", timeout=30).json()
        assert card["url"] == f"{url}/a2a" and card["supportedInterfaces"][0]["url"] == f"{url}/a2a"
        sent = http.post(
            f"{url}/a2a",
            json={"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "hi"}]}}},
            headers={"A2A-Version": "1.0"},
            timeout=30,
        ).json()["result"]["task"]
        assert sent["status"]["state"] == "TASK_STATE_COMPLETED"
        assert sent["artifacts"][0]["parts"][0]["text"] == "Hello from the emulator"
        responses = http.post(f"{url}/compatible-mode/v1/responses", json={"model": "m", "input": "hi"}, timeout=30).json()
        assert responses["output"][0]["content"][0]["text"] == "Hello from the emulator"
        agui = sse_events(http.post(f"{url}/ag-ui", json={"threadId": "t", "runId": "r", "messages": []}, timeout=30).text)
        assert [e["type"] for e in agui][0] == "RUN_STARTED" and agui[-1]["type"] == "RUN_FINISHED"
    finally:
        emulation.stop()
