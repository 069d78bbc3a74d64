"""What the tests share: real servers and clients, waiting with deadlines, the checks every
event stream must pass, and for the deploy tests the ``agentpack`` command as a real process
and the stand-ins' code hook.  Imported by the tests (``from tests.support import ...``); the
pytest fixtures built on it are in conftest.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Optional

import httpx
import pytest

from agentpack.builders.cache import cache_root
from agentpack.protocol.event_models import ContentEvent, MessageEvent, ResponseEvent


#: The tests' client for plain requests: ``http.get(url)`` where ``httpx.get(url)`` would build
#: a new client -- and load the certificate store into a new SSL context, ~25 ms of CPU -- on
#: every call (a polling loop spent most of its time there).  No connection is kept alive, so
#: each request opens its own as ``httpx.get`` does: a server restarted on a port never gets a
#: stale one.  Same default timeout (5 s) as ``httpx.get``; thread-safe.
http = httpx.Client(timeout=5.0, limits=httpx.Limits(max_connections=None, max_keepalive_connections=0))


class RedisServer:
    """A private redis-server on a free loopback port, which tests may kill and restart."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: Any = None

    def start(self) -> "RedisServer":
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed; install it (Debian: apt-get install redis-server) to run these tests")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
        )
        wait_until(self.answers, 10, f"redis-server on port {self.port} did not answer")
        return self

    def answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.2).ping())
        except redis.exceptions.ConnectionError:
            return False

    def client(self) -> Any:
        import redis

        return redis.Redis(port=self.port, decode_responses=True)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


def wait_until(condition: Callable[[], Any], timeout: float, message: Any, interval: float = 0.01) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``message`` at the deadline.

    ``message`` may be a callable, called at the deadline to describe what was seen.
    """
    import time

    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{message() if callable(message) else message} (waited {timeout}s)")
        time.sleep(interval)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

_MODELS = {"response": ResponseEvent, "message": MessageEvent, "content": ContentEvent}
TERMINAL = {"completed", "failed", "canceled"}


def check_protocol(events: list[dict]) -> dict:
    """Validate numbering, shapes and ordering; return the terminal response event."""
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    for event in events:
        _MODELS[event["object"]].model_validate(event)
    assert events[0]["object"] == "response" and events[0]["status"] == "created"
    assert events[1]["object"] == "response" and events[1]["status"] == "in_progress"
    terminal = [e for e in events if e["object"] == "response" and e["status"] in TERMINAL]
    assert len(terminal) == 1 and terminal[0] is events[-1], "exactly one terminal event, and it is last"
    opened: dict[str, dict] = {}
    for event in events[2:-1]:
        if event["object"] == "message":
            if event["status"] == "in_progress":
                assert event["content"] is None
                opened[event["id"]] = event
            else:
                assert event["id"] in opened, "a message is announced before it completes"
        elif event["object"] == "content":
            assert event["msg_id"] in opened, "content belongs to an announced message"
    assert all(e["id"] == events[0]["id"] for e in events if e["object"] == "response")
    return events[-1]


def user_body(text: str = "hello", **extra: Any) -> dict:
    return {"input": [{"role": "user", "content": [{"type": "text", "text": text}]}], **extra}


def read_events(url: str, body: dict, timeout: float = 30.0) -> list[dict]:
    """POST ``body`` and return every event of the SSE stream, in order."""
    events = []
    with http.stream("POST", url, json=body, timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
            else:
                assert line == "" or line.startswith(":"), f"unexpected SSE line {line!r}"
    return events


def text_of(events: list[dict]) -> str:
    return "".join(e["text"] for e in events if e["object"] == "content" and e.get("delta") and e["type"] == "text")


class BackgroundStream(threading.Thread):
    """Reads one ``/process`` stream in a thread; ``started`` is set at the first content event."""

    def __init__(self, url: str, body: dict, path: str = "/process") -> None:
        super().__init__(daemon=True)
        self.url, self.body, self.path = url, body, path
        self.events: list[dict] = []
        self.status_code: Optional[int] = None
        self.started = threading.Event()
        self.error: Optional[Exception] = None

    def run(self) -> None:
        try:
            with http.stream("POST", f"{self.url}{self.path}", json=self.body, timeout=60) as response:
                self.status_code = response.status_code
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        self.events.append(json.loads(line[6:]))
                        if self.events[-1]["object"] == "content":
                            self.started.set()
        except httpx.TransportError as exc:  # e.g. the server died under the stream
            self.error = exc

    def begin(self, timeout: float = 20) -> "BackgroundStream":
        """Start reading and wait until the run has streamed something."""
        self.start()
        assert self.started.wait(timeout), "the run never streamed"
        return self

    def result(self, timeout: float = 60) -> list[dict]:
        self.join(timeout=timeout)
        assert not self.is_alive(), "the stream did not end"
        return self.events


@contextlib.asynccontextmanager
async def in_process(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client wired straight into ``app`` (no sockets), with the app's lifespan running."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://agent.test", timeout=30) as client:
            yield client


def sse_events(body: str) -> list[dict]:
    """The ``data:`` events of a whole SSE body."""
    return [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]


# -- deploys ----------------------------------------------------------------------------------
# The control planes are loopback stand-ins (tests/standins) or moto's server; what they are
# given to run -- the zip the real SDK uploaded -- is started with the emulator exactly as
# ``agentpack emulate ARTIFACT.zip`` would, so a deployed URL streams from the deployed bytes.

ROOT = Path(__file__).resolve().parents[1]
DEPLOYED = ROOT / "tests" / "projects" / "deployed"
#: Variables the emulator sets itself for each instance it runs (a port per instance, its own
#: path to the exec wrapper); the platform does the same with the values the deployer sent.
EMULATOR_OWNS = {"PORT", "AWS_LAMBDA_EXEC_WRAPPER"}


def copy_project(tmp: Path, name: str = "deployed") -> Path:
    project = tmp / name
    shutil.copytree(DEPLOYED, project)
    return project


def set_version(project: Path, version: str) -> None:
    app = project / "app.py"
    text = app.read_text()
    start = text.index('VERSION = "') + len('VERSION = "')
    end = text.index('"', start)
    app.write_text(text[:start] + version + text[end:])


def cli_env(**extra: Optional[str]) -> dict[str, str]:
    """A clean environment for the CLI: no cloud credentials from the machine, the build cache kept."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALIBABA_CLOUD_", "AWS_", "AGENTPACK_"))}
    env["AGENTPACK_CACHE_DIR"] = str(cache_root())
    env["PYTHONUNBUFFERED"] = "1"
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env



def refused(done: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """Check a command was refused as a user or platform error: exit ``code``, no traceback, and
    each of ``needles`` in what it printed to stderr."""
    assert done.returncode == code, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in done.stderr, done.stderr
    return done.stderr

class CLI:
    """``agentpack ...`` as a subprocess in ``cwd`` with ``env``."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.env = env

    def run(self, *args: str, timeout: float = 300, env: Optional[dict[str, str]] = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "agentpack", *args], cwd=self.cwd, env=env or self.env, capture_output=True,
                              text=True, timeout=timeout)

    def json(self, *args: str, expect: int = 0, timeout: float = 300) -> dict[str, Any]:
        """Run with ``--json`` and return the JSON object on the last line of stdout."""
        done = self.run(*args, "--json", timeout=timeout)
        assert done.returncode == expect, f"agentpack {' '.join(args)} exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        assert lines, f"no output\nstderr:\n{done.stderr}"
        return json.loads(lines[-1])

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "agentpack", *args], cwd=self.cwd, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, bufsize=1)


class Emulations:
    """The stand-ins' ``on_code`` hook: runs the code a create/update received under the target's
    emulator and returns its URL.  One emulation per distinct code and environment, kept until
    :meth:`close` (a rollback routes back to an older one); started with ``instances``."""

    def __init__(self, target: str, scratch: Path, instances: int = 2) -> None:
        self.target = target
        self.scratch = scratch
        self.instances = instances
        self.running: dict[str, Any] = {}
        self.started: list[str] = []  # sha256 of each code started, in order
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def hook(self, name: str, zip_bytes: bytes, config: dict) -> str:
        env = config.get("environmentVariables") or {}
        timeout = config.get("timeout")
        return self.serve(zip_bytes, env, float(timeout) if timeout else None)

    def serve(self, zip_bytes: bytes, env: dict[str, str], timeout: Optional[float] = None) -> str:
        from agentpack.emulators.emulation import start

        digest = hashlib.sha256(zip_bytes).hexdigest()
        env = {k: v for k, v in env.items() if k not in EMULATOR_OWNS}
        key = digest + json.dumps(env, sort_keys=True)
        with self._lock:
            if key not in self.running:
                path = self.scratch / f"{digest}.zip"
                path.write_bytes(zip_bytes)
                self.running[key] = start(path, self.target, port=0, instances=self.instances, env=env, timeout=timeout, log=self.lines.append)
                self.started.append(digest)
            return self.running[key].url

    def close(self) -> None:
        with self._lock:
            for emulation in self.running.values():
                emulation.stop()
            self.running.clear()
