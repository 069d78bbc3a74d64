"""Built Lambda artifacts under the emulator: real awslambdaric, real processes, HTTP through the function URL."""

from __future__ import annotations

import json
import os
import shutil
import textwrap
import time
import zipfile
from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest

from agentpack.builders.interpreters import find_interpreter
from agentpack.builders.build import build
from agentpack.emulators.aws_lambda import EmulatorStartError, LambdaEmulator
from agentpack.emulators.aws_lambda.function_url import ERROR_HEADER
from tests.support import check_protocol, user_body, wait_until, http

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("agentpack_cache")]

ROOT = Path(__file__).resolve().parents[1]
PYTHON = "3.12"

PROBE_APP = textwrap.dedent(
    '''
    """A probe for the emulator: counts lifespan start-ups, sleeps past timeouts, streams on cue."""
    import asyncio
    import os
    import time
    from contextlib import asynccontextmanager
    from pathlib import Path

    from fastapi import Response
    from fastapi.responses import StreamingResponse

    from agentpack import AgentApp

    STARTS = []

    @asynccontextmanager
    async def lifespan(app):
        STARTS.append(time.time())
        yield
        # the environment is ending (SIGTERM): leave a mark the test can find
        (Path(os.environ["GATE_DIR"]) / f"shutdown-{os.getpid()}").touch()

    app = AgentApp(app_name="probe", lifespan=lifespan)

    @app.query(framework="text")
    async def answer(self, msgs, request, **kwargs):
        text = msgs[-1].text() if msgs else ""
        if text == "gate":
            # The second word waits for the client to have read the first: only a live stream finishes.
            yield "first "
            gate = Path(os.environ["GATE_DIR"]) / request.session_id
            for _ in range(400):
                if gate.exists():
                    yield "second"
                    return
                await asyncio.sleep(0.05)
            yield "the gate never opened"
            return
        while True:  # "slow": runs until stopped
            yield "tick "
            await asyncio.sleep(0.05)

    @app.get("/starts")
    async def starts():
        return {"starts": len(STARTS), "pid": os.getpid(), "name": os.environ.get("AWS_LAMBDA_FUNCTION_NAME")}

    @app.get("/die")
    async def die():
        import signal

        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would

    @app.get("/sleep")
    async def sleep(seconds: float = 30):
        await asyncio.sleep(seconds)
        return {"slept": seconds}

    @app.get("/breaks")
    async def breaks():
        async def parts():
            yield b"data: one\\n\\n"
            await asyncio.sleep(0.05)
            raise RuntimeError("the stream failed halfway")

        return StreamingResponse(parts(), media_type="text/event-stream")

    @app.get("/big")
    async def big(megabytes: int = 7):
        return Response(b"x" * (megabytes * 1024 * 1024), media_type="application/octet-stream")

    @app.post("/size")
    async def size(payload: dict):
        return {"chars": len(payload.get("text", ""))}
    '''
)


@pytest.fixture(scope="module")
def python() -> str:
    interpreter = find_interpreter(PYTHON)
    if interpreter is None:
        pytest.fail(f"python{PYTHON} is not installed; the emulator runs artifacts with the target's Python (pyenv install {PYTHON})")
    return interpreter


def unpack(artifact: str, into: Path) -> Path:
    """Unzip keeping the POSIX modes (the exec wrapper must stay executable)."""
    with zipfile.ZipFile(artifact) as archive:
        for info in archive.infolist():
            archive.extract(info, into)
            mode = info.external_attr >> 16
            if mode:
                os.chmod(into / info.filename, mode)
    return into


def project(tmp: Path, app_text: str, streaming: bool) -> Path:
    directory = tmp / "project"
    directory.mkdir(parents=True)
    (directory / "app.py").write_text(app_text)
    (directory / "requirements.txt").write_text("agentpack\n")
    settings = "" if streaming else "streaming = false\n"  # streaming is the default
    (directory / "agentpack.toml").write_text(f'app = "app.py:app"\nname = "probe"\npython = "{PYTHON}"\n\n[targets.lambda]\n{settings}')
    return directory


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Callable[[str, bool], Path]:
    """Unpacked artifacts, built once per (app, mode) for the module."""
    made: dict[tuple[str, bool], Path] = {}

    def get(app: str, streaming: bool) -> Path:
        if (app, streaming) not in made:
            tmp = tmp_path_factory.mktemp(f"{app}-{'stream' if streaming else 'buffered'}")
            if app == "quickstart":
                source = tmp / "project"
                shutil.copytree(ROOT / "examples" / "quickstart", source, ignore=shutil.ignore_patterns("dist", "__pycache__"))
                if not streaming:  # the example streams by default
                    config = source / "agentpack.toml"
                    config.write_text(config.read_text().replace("[targets.lambda]\n", "[targets.lambda]\nstreaming = false\n"))
            else:
                source = project(tmp, PROBE_APP, streaming)
            result = build(source, "lambda")
            made[(app, streaming)] = unpack(result.artifact, tmp / "code")
        return made[(app, streaming)]

    return get


@pytest.fixture
def emulate(python, tmp_path) -> Iterator[Callable[..., LambdaEmulator]]:
    started: list[LambdaEmulator] = []

    def start(code: Path, streaming: bool, **options) -> LambdaEmulator:
        lines: list[str] = []
        env = {"GATE_DIR": str(tmp_path)}
        emulator = LambdaEmulator(code, python, env, streaming=streaming, log=lines.append, **{"timeout": 30, **options})
        emulator.lines = lines  # type: ignore[attr-defined]
        started.append(emulator)
        return emulator.start()

    yield start
    for emulator in started:
        emulator.stop()


def events_with_arrival(url: str, body: dict, on_event: Callable[[dict], None] = lambda e: None) -> tuple[list[dict], list[float], httpx.Headers]:
    events, arrivals = [], []
    started = time.monotonic()
    with http.stream("POST", url, json=body, timeout=60) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                arrivals.append(time.monotonic() - started)
                on_event(events[-1])
        return events, arrivals, response.headers


@pytest.mark.parametrize("streaming", [False, True], ids=["buffered", "streaming"])
def test_quickstart_under_the_emulator(artifacts, emulate, streaming):
    emulator = emulate(artifacts("quickstart", streaming), streaming)
    health = http.get(f"{emulator.url}/health", timeout=30)
    assert health.status_code == 200 and health.json()["status"] == "healthy"
    assert health.headers["x-amzn-requestid"]
    echo = http.post(f"{emulator.url}/echo", params={"text": "你好 lambda"}, timeout=30)
    assert echo.status_code == 200 and echo.json() == {"echo": "你好 lambda"}
    events, arrivals, headers = events_with_arrival(f"{emulator.url}/process", user_body("What is agentpack?"))
    terminal = check_protocol(events)
    assert terminal["status"] == "completed"
    assert "You asked" in terminal["output"][0]["content"][0]["text"]
    if streaming:
        assert headers.get("transfer-encoding") == "chunked"
        assert arrivals[0] < arrivals[-1], "events arrive one by one while the handler runs"
    else:
        assert int(headers["content-length"]) > 0, "the managed runtime's answer comes whole"
    assert any("START RequestId:" in line for line in emulator.lines)  # type: ignore[attr-defined]


def test_a_stream_arrives_while_the_handler_is_still_running(artifacts, emulate, tmp_path):
    emulator = emulate(artifacts("probe", True), True)
    body = user_body("gate", session_id="gate-session")

    def open_gate(event: dict) -> None:
        if event.get("object") == "content" and event.get("delta"):
            (tmp_path / "gate-session").touch()

    events, arrivals, _ = events_with_arrival(f"{emulator.url}/process", body, open_gate)
    text = check_protocol(events)["output"][0]["content"][0]["text"]
    assert text == "first second", "the second word needed the client to have read the first"
    assert arrivals[0] < arrivals[-1]


def test_a_streamed_response_to_a_buffered_url_is_buffered(artifacts, emulate, tmp_path):
    emulator = emulate(artifacts("quickstart", True), True, invoke_mode="BUFFERED")
    events, _, headers = events_with_arrival(f"{emulator.url}/process", user_body("hi"))
    assert check_protocol(events)["status"] == "completed"
    assert "content-length" in headers and "transfer-encoding" not in headers


@pytest.mark.parametrize("streaming", [False, True], ids=["buffered", "streaming"])
def test_lifespan_starts_once_over_many_invocations(artifacts, emulate, streaming):
    emulator = emulate(artifacts("probe", streaming), streaming)
    seen = [http.get(f"{emulator.url}/starts", timeout=30).json() for _ in range(20)]
    assert {answer["starts"] for answer in seen} == {1}
    assert len({answer["pid"] for answer in seen}) == 1
    assert seen[0]["name"] == "agentpack-function"


@pytest.mark.parametrize("streaming", [False, True], ids=["buffered", "streaming"])
def test_past_the_timeout_the_platform_answers_and_resets_the_environment(artifacts, emulate, tmp_path, streaming):
    emulator = emulate(artifacts("probe", streaming), streaming, timeout=2)
    before = http.get(f"{emulator.url}/starts", timeout=30).json()
    late = http.get(f"{emulator.url}/sleep", params={"seconds": 30}, timeout=30)
    assert late.status_code == 502 and late.headers[ERROR_HEADER] == "Sandbox.Timedout"
    assert any("Task timed out after 2.00 seconds" in line for line in emulator.lines)  # type: ignore[attr-defined]
    after = http.get(f"{emulator.url}/starts", timeout=30).json()
    assert after["pid"] != before["pid"] and after["starts"] == 1, "a fresh environment, initialised again"
    assert emulator.describe()["environments"][0]["starts"] == 2
    assert (tmp_path / f"shutdown-{before['pid']}").exists(), "SIGTERM mid-invocation still ran the app's shutdown"


def test_a_runtime_killed_by_a_signal_is_reported_as_lambda_reports_it(artifacts, emulate):
    emulator = emulate(artifacts("probe", False), False)
    before = http.get(f"{emulator.url}/starts", timeout=30).json()
    died = http.get(f"{emulator.url}/die", timeout=30)
    assert died.status_code == 502 and died.headers[ERROR_HEADER] == "Runtime.ExitError"
    # Lambda's words for a runtime killed by a signal (an out-of-memory kill): "signal: killed", not an exit status
    assert any(line.endswith("Runtime exited with error: signal: killed") for line in emulator.lines), emulator.lines  # type: ignore[attr-defined]
    after = http.get(f"{emulator.url}/starts", timeout=30).json()
    assert after["pid"] != before["pid"], "a fresh environment serves the next invocation"


def test_a_run_reaching_the_timeout_ends_with_its_terminal_event(artifacts, emulate):
    emulator = emulate(artifacts("probe", True), True, timeout=2)
    events, _, _ = events_with_arrival(f"{emulator.url}/process", user_body("slow"))
    assert check_protocol(events)["status"] == "canceled"
    assert http.get(f"{emulator.url}/starts", timeout=30).json()["starts"] == 1, "no reset: the run ended in time"


def test_an_error_mid_stream_breaks_the_body_off(artifacts, emulate):
    emulator = emulate(artifacts("probe", True), True)
    received = b""
    with pytest.raises(httpx.RemoteProtocolError):
        with http.stream("GET", f"{emulator.url}/breaks", timeout=30) as response:
            assert response.status_code == 200
            for chunk in response.iter_raw():
                received += chunk
    assert received == b"data: one\n\n"
    wait_until(lambda: any("the response stream failed: RuntimeError" in line for line in emulator.lines), 10, "the trailer error is logged")  # type: ignore[attr-defined]
    assert http.get(f"{emulator.url}/starts", timeout=30).status_code == 200, "the environment keeps serving"


@pytest.mark.parametrize("streaming", [False, True], ids=["buffered", "streaming"])
def test_payload_limits(artifacts, emulate, streaming):
    emulator = emulate(artifacts("probe", streaming), streaming)
    too_big = http.post(f"{emulator.url}/size", json={"text": "x" * (6 * 1024 * 1024)}, timeout=60)
    assert too_big.status_code == 413 and "too large" in too_big.json()["Message"]
    assert http.post(f"{emulator.url}/size", json={"text": "x" * 1000}, timeout=30).json() == {"chars": 1000}
    big = http.get(f"{emulator.url}/big", params={"megabytes": 7}, timeout=60)
    if streaming:  # RESPONSE_STREAM allows up to 200 MB
        assert big.status_code == 200 and len(big.content) == 7 * 1024 * 1024
    else:
        assert big.status_code == 502 and big.headers[ERROR_HEADER] == "Function.ResponseSizeTooLarge"


BROKEN_APP = textwrap.dedent(
    """
    import sys
    print("about to import a package the requirements forgot", file=sys.stderr)
    import package_the_requirements_forgot
    from agentpack import AgentApp
    app = AgentApp()
    """
)


@pytest.mark.parametrize("streaming", [False, True], ids=["buffered", "streaming"])
def test_an_init_failure_shows_the_environments_output(python, tmp_path, streaming):
    result = build(project(tmp_path, BROKEN_APP, streaming), "lambda")
    code = unpack(result.artifact, tmp_path / "code")
    emulator = LambdaEmulator(code, python, streaming=streaming, log=lambda line: None)
    with pytest.raises(EmulatorStartError) as failure:
        emulator.start()
    error = failure.value
    assert error.exit_code == 1
    assert error.init_error is not None and error.init_error["errorType"] == "Runtime.ImportModuleError"
    assert "package_the_requirements_forgot" in error.init_error["errorMessage"]
    assert "about to import a package the requirements forgot" in error.output
    assert "the process exited with code 1" in str(error) and "package_the_requirements_forgot" in str(error)


@pytest.mark.parametrize("streaming", [False, True], ids=["buffered", "streaming"])
def test_the_end_of_an_environment_runs_the_apps_shutdown(artifacts, emulate, tmp_path, streaming):
    emulator = emulate(artifacts("probe", streaming), streaming)
    pid = http.get(f"{emulator.url}/starts", timeout=30).json()["pid"]
    emulator.stop()  # SIGTERM, as Lambda ends an environment (python3.12: awslambdaric waits in a thread)
    assert (tmp_path / f"shutdown-{pid}").exists()


REDIS_APP = textwrap.dedent(
    """
    import asyncio
    import os
    from agentpack import AgentApp

    app = AgentApp(app_name="stoppable", interrupt_redis_url=os.environ["REDIS_URL"])

    @app.query(framework="text")
    async def answer(self, msgs, request, **kwargs):
        while True:
            yield f"{os.getpid()} "
            await asyncio.sleep(0.05)
    """
)


def test_a_stop_sent_to_another_environment_ends_the_run_over_redis(python, tmp_path, redis_server):
    source = project(tmp_path, REDIS_APP, True)
    (source / "requirements.txt").write_text("agentpack\nredis>=5\n")
    code = unpack(build(source, "lambda").artifact, tmp_path / "code")
    emulator = LambdaEmulator(code, python, {"REDIS_URL": redis_server.url}, streaming=True, timeout=60, instances=2, log=lambda line: None)
    emulator.start()
    try:
        assert len({env["pid"] for env in emulator.describe()["environments"]}) == 2
        stopped: list[dict] = []

        def stop_once_running(event: dict) -> None:
            if event.get("object") == "content" and event.get("delta") and not stopped:
                # environment 1 is busy with this stream: the stop can only be served by environment 2
                answer = http.post(f"{emulator.url}/process/stop", json={"session_id": "s-1", "user_id": "u-1"}, timeout=30)
                stopped.append(answer.json())

        events, _, _ = events_with_arrival(f"{emulator.url}/process", user_body("go", session_id="s-1", user_id="u-1"), stop_once_running)
        assert stopped == [{"stopped": True, "user_id": "u-1", "session_id": "s-1"}]
        assert check_protocol(events)["status"] == "canceled"
    finally:
        emulator.stop()
