"""The FC / AgentRun / local emulator under faults, done to real processes and real sockets
(issue 19, item 23; the no-/proc path of item 21): an instance that dies is reported with its exit
status or signal and replaced at once, the front answers malformed and half-sent requests, and
each platform applies its own body limit and error answers."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
import textwrap
from pathlib import Path

import pytest

from agentpack import processes
from agentpack.builders.interpreters import bare_python
from agentpack.emulators.http_function import FunctionConfig, FunctionEmulator, front
from tests.support import http, wait_until

pytestmark = pytest.mark.integration

SERVER = """
import http.server, os

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self._answer(str(os.getpid()).encode())

    def do_POST(self):
        if self.path == "/crash":
            os._exit(3)  # dies in the middle of a request
        data = self.rfile.read(int(self.headers.get("content-length") or 0))
        self._answer(str(len(data)).encode())

    def _answer(self, body):
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

port = int(os.environ.get("FC_CUSTOM_LISTEN_PORT") or os.environ["PORT"])
http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
"""


def function_code(tmp_path: Path) -> Path:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "server.py").write_text(textwrap.dedent(SERVER))
    bootstrap = code / "bootstrap"
    bootstrap.write_text('#!/bin/sh\nexec "$AGENTPACK_PYTHON" "$(dirname "$0")/server.py"\n')
    bootstrap.chmod(0o755)
    return code


def agent_code(tmp_path: Path, source: str) -> Path:
    """An FC code directory: ``source`` as app.py, served by agentpack's own entry behind FC's adapter."""
    code = tmp_path / "agent"
    code.mkdir()
    (code / "app.py").write_text(source)
    bootstrap = code / "bootstrap"
    bootstrap.write_text('#!/bin/sh\ncd "$(dirname "$0")"\n'
                         'exec "$AGENTPACK_PYTHON" -m agentpack.serve --app app.py:app --host 0.0.0.0 '
                         '--port "$FC_CUSTOM_LISTEN_PORT" --platform fc\n')
    bootstrap.chmod(0o755)
    return code


@pytest.fixture
def emulate(tmp_path):
    """Start an emulator of the hand-made function for ``platform``; its log lines are collected."""
    started: list[FunctionEmulator] = []

    def make(platform: str = "fc", **options) -> tuple[FunctionEmulator, list[str]]:
        lines: list[str] = []
        config = FunctionConfig(function_code(tmp_path), bare_python("3.12"), platform=platform, initializer=False,
                                pre_stop=False, start_timeout=30, **options)
        emulator = FunctionEmulator(config, log=lines.append).start()
        started.append(emulator)
        return emulator, lines

    yield make
    for emulator in started:
        emulator.stop()


def raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def test_an_instance_that_dies_is_reported_and_replaced_at_once(emulate):
    emulator, lines = emulate("fc")
    first = int(http.get(f"{emulator.url}/").text)

    crashed = http.post(f"{emulator.url}/crash")  # dies in the middle of this request (a POST: FC does not retry it)
    assert crashed.status_code == 502
    assert crashed.headers["x-fc-error-type"] == "UnhandledInvocationError"
    assert crashed.json()["errorMessage"].startswith("Process exited unexpectedly before completing request (duration: ")
    wait_until(lambda: any(f"(pid {first}) exited with code 3; starting a new one" in line for line in lines), 10,
               lambda: "\n".join(lines))
    wait_until(lambda: emulator.describe()["instances"][0]["starts"] == 2, 30, "no new instance was started before a request came")

    second = int(http.get(f"{emulator.url}/").text)
    os.kill(second, signal.SIGKILL)  # killed between requests: ten requests at once right after (FC resends
    # idempotent requests that meet a dead connection; the ones that come later go to the new instance)
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: http.get(f"{emulator.url}/", timeout=60), range(10)))
    assert [a.status_code for a in answers] == [200] * 10, [a.text for a in answers]
    wait_until(lambda: any(f"(pid {second}) was killed by signal SIGKILL" in line for line in lines), 10,
               lambda: "\n".join(lines))
    assert {int(a.text) for a in answers} != {second}


def test_a_malformed_request_is_answered_400(emulate):
    emulator, _ = emulate("fc")
    port = int(emulator.url.rsplit(":", 1)[1])
    assert raw(port, b"NOT AN HTTP REQUEST\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw(port, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert http.get(f"{emulator.url}/").status_code == 200  # and it serves on


def test_half_sent_requests_are_timed_out(emulate, monkeypatch):
    monkeypatch.setattr(front, "HEADER_TIMEOUT", 1.0)
    monkeypatch.setattr(front, "BODY_TIMEOUT", 1.0)
    emulator, _ = emulate("fc")
    port = int(emulator.url.rsplit(":", 1)[1])
    head = raw(port, b"POST / HTTP/1.1\r\nHost: x\r\n")  # the head never ends
    assert head.startswith(b"HTTP/1.1 408 "), head
    body = raw(port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")  # nor does the body
    assert body.startswith(b"HTTP/1.1 408 "), body
    idle = socket.create_connection(("127.0.0.1", port))  # a connection that sends nothing is no request
    try:
        idle.settimeout(2.5)
        with pytest.raises(socket.timeout):
            idle.recv(1)
    finally:
        idle.close()


def test_each_platform_applies_its_own_body_limit_and_answer(emulate):
    too_big = b"x" * (32 * 1024 * 1024 + 1)
    fc, _ = emulate("fc")
    answer = http.post(f"{fc.url}/", content=too_big, timeout=60)
    assert answer.status_code == 400 and answer.headers["x-fc-error-type"] == "FcCommonError"
    assert answer.json() == {"errorCode": "EntityTooLarge", "errorMessage": "payload size exceeds maximum allowed size (33554432 bytes)"}

    agentrun, _ = emulate("agentrun")
    answer = http.post(f"{agentrun.url}/", content=too_big, timeout=60)
    assert answer.status_code == 413 and "x-fc-error-type" not in answer.headers
    assert answer.json()["code"] == "PayloadTooLarge"

    local, _ = emulate("local")  # no platform in front: no limit of its own
    assert http.post(f"{local.url}/", content=too_big, timeout=60).text == str(len(too_big))


def test_without_proc_an_instance_is_started_by_the_portable_check_and_says_so(emulate, monkeypatch, tmp_path):
    monkeypatch.setattr(processes, "PROC", tmp_path / "no-proc")
    emulator, lines = emulate("fc")
    assert http.get(f"{emulator.url}/").status_code == 200
    notes = [line for line in lines if "no /proc" in line]
    assert len(notes) == 1 and "checked on Linux only" in notes[0]


AGENT = """
import asyncio
from agentpack import AgentApp

app = AgentApp(app_name="slow")


@app.query(framework="text")
async def answer(self, msgs, request, **kwargs):
    for i in range(1000):
        yield f"{i} "
        await asyncio.sleep(0.1)
"""


def test_a_run_ended_by_the_function_timeout_says_so(tmp_path):
    """FC's adapter stops a /process run just before the function timeout: its terminal event names
    the timeout, not a stop_chat nobody sent."""
    import sys

    from tests.support import check_protocol, read_events, user_body

    code = agent_code(tmp_path, AGENT)
    # the interpreter running these tests has agentpack and its dependencies (no build needed)
    config = FunctionConfig(code, sys.executable, platform="fc", timeout=3, start_timeout=60)
    emulator = FunctionEmulator(config, log=lambda line: None).start()
    try:
        events = read_events(f"{emulator.url}/process", user_body(session_id="s", user_id="u"))
    finally:
        emulator.stop()
    terminal = check_protocol(events)
    assert terminal["status"] == "canceled"
    assert "function timeout (3 s)" in terminal["error"]["message"], terminal["error"]
    assert "stop_chat" not in terminal["error"]["message"]


ORPHAN_APP = """
import os
from agentpack import AgentApp

app = AgentApp(app_name="orphan")


@app.get("/pid")
def pid():
    return {"pid": os.getpid()}
"""

EMULATOR_PROCESS = """
import sys, time
from pathlib import Path
from agentpack.emulators.http_function import FunctionConfig, FunctionEmulator

config = FunctionConfig(Path(sys.argv[1]), sys.executable, platform="fc", initializer=False, pre_stop=False, start_timeout=60)
emulator = FunctionEmulator(config, log=lambda line: None).start()
print(emulator.url, flush=True)
time.sleep(3600)
"""


def test_an_emulator_killed_outright_leaves_no_instance_serving(tmp_path):
    """SIGKILL gives the emulator no chance to stop its instances: each ends itself once its
    parent is gone, instead of serving on a port nobody knows about."""
    import subprocess
    import sys

    code = agent_code(tmp_path, ORPHAN_APP)
    emulator = subprocess.Popen([sys.executable, "-c", EMULATOR_PROCESS, str(code)], stdout=subprocess.PIPE, text=True,
                                cwd=Path(__file__).resolve().parents[1])
    try:
        url = emulator.stdout.readline().strip()
        assert url, "the emulator did not start"
        instance = http.get(f"{url}/pid", timeout=30).json()["pid"]
    finally:
        emulator.kill()
        emulator.wait(timeout=10)
    try:
        wait_until(lambda: processes.process_start(instance) is None, 15, "the instance served on after its emulator was killed")
    finally:
        if processes.process_start(instance) is not None:
            os.kill(instance, signal.SIGKILL)


def test_one_emulated_instance_does_not_warn_about_stops_crossing_instances(tmp_path):
    """With one instance there is nothing for a stop to cross; with two the warning stays."""
    import sys

    code = agent_code(tmp_path, ORPHAN_APP)
    for instances, warned in ((1, False), (2, True)):
        lines: list[str] = []
        config = FunctionConfig(code, sys.executable, platform="fc", instances=instances, start_timeout=60)
        emulator = FunctionEmulator(config, log=lines.append).start()
        try:
            for _ in range(instances):
                http.get(f"{emulator.url}/pid", timeout=30)
        finally:
            emulator.stop()
        assert any("will not cross instances" in line for line in lines) is warned, (instances, lines)


def test_an_instance_that_exits_at_start_is_described_by_its_exit_and_the_platforms_port(tmp_path):
    """The user's app was told the port in FC_CUSTOM_LISTEN_PORT: the message names that, and how it ended."""
    from agentpack.emulators.background import EmulatorStartError

    code = tmp_path / "code"
    code.mkdir()
    bootstrap = code / "bootstrap"
    bootstrap.write_text("#!/bin/sh\necho 'no such module: app' >&2\nexit 3\n")
    bootstrap.chmod(0o755)
    config = FunctionConfig(code, bare_python("3.12"), platform="fc", initializer=False, pre_stop=False, start_timeout=30)
    with pytest.raises(EmulatorStartError) as refused:
        FunctionEmulator(config, log=lambda line: None).start()
    message = str(refused.value)
    assert "exited with code 3 before it listened on the port in $FC_CUSTOM_LISTEN_PORT" in message, message
