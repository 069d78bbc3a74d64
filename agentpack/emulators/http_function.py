"""Run an unpacked Function Compute (custom runtime) or AgentRun (code) artifact the way the
platform would, behind an HTTP trigger on ``http://127.0.0.1:<port>``.

::

    emulator = FunctionEmulator(FunctionConfig(code_dir, python, platform="fc", timeout=60)).start()
    ... HTTP to emulator.url ...
    emulator.stop()

Each instance is a process started as the platform starts one: the artifact's start command
(``bootstrap``) with the code directory as working directory (read-only, as ``/code`` is),
only the platform's variables and the function's own in its environment, and the listen
port in ``FC_CUSTOM_LISTEN_PORT`` (FC) or ``PORT`` (AgentRun).  An instance counts as started
once a socket of its process listens on ``0.0.0.0`` (or ``::``) at that port — an app that
binds 127.0.0.1 or another port fails the way the platform fails, ``FunctionNotStarted``,
with the reason — and, when an initializer is configured, ``POST /initialize`` succeeded.

The front forwards each request as the HTTP trigger would: with the ``x-fc-*`` request
headers (and the role's temporary credentials when a role is set), the platform's request
size limit, the function's timeout (past it the caller gets the platform's error; a stream
already under way is cut), and at most ``instance_concurrency`` requests per instance —
others wait for one to free, since the emulator does not scale out.  With an
``affinity_header``, requests carrying the same value go to the same instance.  Responses
stream through chunk by chunk.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from agentpack.emulators.background import BackgroundEmulator, EmulatorStartError
from agentpack.headers import SESSION_HEADER
from agentpack.emulators.h11_server import BodyTooLarge, Exchange, H11Server

logger = logging.getLogger("agentpack.emulate")

Log = Callable[[str], None]
MB = 1024 * 1024
#: How long a session stays pinned to its instance after its last request (FC's session TTL).
AFFINITY_TTL = 600.0
#: Headers that describe one hop of a connection, never forwarded.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length"}


@dataclass
class FunctionConfig:
    """The function as the deployer configures it (and as the platform runs it)."""

    code_dir: Path
    python: str  #: the interpreter standing in for the platform's (its version is the target's)
    platform: str = "fc"  #: "fc", "agentrun", or "local" (no platform in front of the app)
    command: list[str] = field(default_factory=lambda: ["./bootstrap"])
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 60.0
    memory_mb: int = 1024
    instances: int = 1
    instance_concurrency: int = 20
    function_name: str = "agentpack-function"
    region: str = "cn-hangzhou"
    account_id: str = "1234567890123456"
    role: Optional[str] = None  #: with a role, requests carry temporary credentials
    initializer: bool = True  #: call ``POST /initialize`` once per instance
    pre_stop: bool = True  #: call ``GET /pre-stop`` before an instance is stopped
    affinity_header: Optional[str] = None
    #: a health check the platform runs once the port listens (AgentRun: the one the deployer configures)
    health_check_path: Optional[str] = None
    request_limit: int = 32 * MB
    start_timeout: float = 120.0
    port: int = 0  #: the front's port (0: any free one)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(pids: set[int]) -> list[tuple[str, int]]:
    """``(address, port)`` of every TCP socket in LISTEN state owned by ``pids`` (Linux /proc)."""
    inodes: set[str] = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            found.append((_address(address, v6), int(port, 16)))
    return found


def _address(hexed: str, v6: bool) -> str:
    if not v6:
        return ".".join(str(b) for b in reversed(bytes.fromhex(hexed)))
    if set(hexed) == {"0"}:
        return "::"
    return "::1" if hexed == "00000000000000000000000001000000" else hexed


def _process_group(pid: int) -> set[int]:
    """``pid`` and every process in its process group (the start command may fork)."""
    members = {pid}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[2]) == pid:  # field 5: pgrp
                members.add(int(entry))
    return members


class Instance:
    """One running copy of the function."""

    def __init__(self, emulator: "FunctionEmulator", index: int) -> None:
        self.emulator = emulator
        self.index = index
        self.id = f"c-{uuid.uuid4().hex[:12]}"
        self.port = 0
        self.process: Optional[subprocess.Popen] = None
        self.output: deque[str] = deque(maxlen=200)
        self.relaunching = asyncio.Lock()  # two requests finding it dead start one new process
        self.in_flight = 0
        self.starts = 0
        self.start_seconds: Optional[float] = None
        self._reader: Optional[threading.Thread] = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def env(self) -> dict[str, str]:
        config = self.emulator.config
        python_bin = str(Path(config.python).parent)
        env = {
            "PATH": f"{python_bin}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": "/tmp",
            "PYTHONNOUSERSITE": "1",
            "AGENTPACK_PYTHON": config.python,  # the interpreter standing in for the platform's
            # what the app tells clients (an A2A card) is the front's URL, as on the platform
            "AGENTPACK_PUBLIC_URL": self.emulator.url,
        }
        if config.platform != "local":
            env.update(AGENTPACK_PLATFORM=config.platform, AGENTPACK_REQUEST_TIMEOUT=f"{config.timeout:g}")
        if config.platform == "fc":
            env.update(
                FC_FUNC_CODE_PATH=str(config.code_dir),
                FC_CUSTOM_LISTEN_PORT=str(self.port),
                FC_FUNCTION_NAME=config.function_name,
                FC_FUNCTION_HANDLER="index.handler",
                FC_FUNCTION_MEMORY_SIZE=str(config.memory_mb),
                FC_REGION=config.region,
                FC_ACCOUNT_ID=config.account_id,
                FC_INSTANCE_ID=self.id,
                FC_FUNCTION_VERSION="LATEST",
            )
        else:
            env["PORT"] = str(self.port)
        return {**env, **config.env}

    def log(self, line: str) -> None:
        self.output.append(line)
        self.emulator.log(f"[instance {self.index}] {line}")

    def _read(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            self.log(raw.decode("utf-8", "replace").rstrip("\n"))

    async def launch(self) -> None:
        """Start the process and wait until it listens as the platform requires."""
        config = self.emulator.config
        self.port = _free_port()
        self.output.clear()
        self.starts += 1
        started = time.perf_counter()
        command = [str(config.code_dir / part[2:]) if part.startswith("./") else part for part in config.command]
        try:
            self.process = subprocess.Popen(
                command,
                cwd=config.code_dir,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise EmulatorStartError(f"the start command {command[0]} cannot run: {exc}", code="CAExited") from None
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True)
        self._reader.start()
        await self._await_listening(started)
        if config.health_check_path:
            await self._await_healthy(started)
        if config.initializer:
            await self._initialize()
        self.start_seconds = time.perf_counter() - started

    async def _await_listening(self, started: float) -> None:
        config = self.emulator.config
        assert self.process is not None
        deadline = started + config.start_timeout
        while True:
            if self.process.poll() is not None:
                await asyncio.sleep(0.05)  # let the reader catch the last lines
                raise EmulatorStartError(
                    f"the instance exited before listening on port {self.port}",
                    code="FunctionNotStarted",
                    exit_code=self.process.returncode,
                    output="\n".join(self.output),
                )
            sockets = _listening(_process_group(self.process.pid))
            on_port = [address for address, port in sockets if port == self.port]
            reachable = ("0.0.0.0", "::", "127.0.0.1", "::1") if config.platform == "local" else ("0.0.0.0", "::")
            if any(address in reachable for address in on_port):
                return
            if time.perf_counter() > deadline:
                await self._kill()
                if on_port:
                    reason = f"it listens on {on_port[0]}:{self.port}, which the platform cannot reach; listen on 0.0.0.0:{self.port}"
                elif sockets:
                    shown = ", ".join(f"{a}:{p}" for a, p in sockets)
                    reason = f"it listens on {shown}, not on the port the platform gives it ({self.port}); listen on 0.0.0.0:{self.port}"
                else:
                    reason = "it opened no listening socket"
                raise EmulatorStartError(
                    f"Function instance health check failed on port {self.port} in {config.start_timeout:g} seconds: {reason}",
                    code="FunctionNotStarted",
                    output="\n".join(self.output),
                )
            await asyncio.sleep(0.02)

    async def _await_healthy(self, started: float) -> None:
        config = self.emulator.config
        deadline = started + config.start_timeout
        last = "no answer"
        while time.perf_counter() < deadline:
            if not self.alive:
                break
            try:
                response = await self.emulator.client.get(f"http://127.0.0.1:{self.port}{config.health_check_path}", timeout=5)
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[:200]}"
            except Exception as exc:
                last = str(exc) or type(exc).__name__
            await asyncio.sleep(0.1)
        await self._kill()
        raise EmulatorStartError(
            f"the health check GET {config.health_check_path} did not answer 200 within {config.start_timeout:g} seconds (last: {last})",
            code="HealthCheckFailed",
            exit_code=self.process.returncode if self.process else None,
            output="\n".join(self.output),
        )

    async def _initialize(self) -> None:
        request_id = uuid.uuid4().hex
        try:
            response = await self.emulator.client.post(
                f"http://127.0.0.1:{self.port}/initialize",
                headers={**self.emulator.platform_headers(request_id), "x-fc-control-path": "/initialize"},
                timeout=self.emulator.config.start_timeout,
            )
        except Exception as exc:
            raise EmulatorStartError(f"the initializer failed: {exc}", code="InitializationError", output="\n".join(self.output)) from None
        if not 200 <= response.status_code < 300:
            raise EmulatorStartError(
                f"the initializer answered {response.status_code}: {response.text[:500]}", code="InitializationError", output="\n".join(self.output)
            )

    async def stop(self) -> None:
        """``/pre-stop`` (which starts the app's graceful shutdown), then SIGTERM, then SIGKILL."""
        if not self.alive:
            return
        config = self.emulator.config
        steps: list[tuple[Optional[int], float]] = [(signal.SIGTERM, 10.0)]
        if config.pre_stop:
            try:
                answer = await self.emulator.client.get(
                    f"http://127.0.0.1:{self.port}/pre-stop", headers={**self.emulator.platform_headers(uuid.uuid4().hex), "x-fc-control-path": "/pre-stop"}, timeout=5
                )
                if answer.status_code < 300:  # the graceful shutdown has begun: give it its time
                    steps.insert(0, (None, 20.0))
            except Exception as exc:
                self.log(f"pre-stop failed: {exc}")
        for sig, wait in steps:
            if sig is not None and self.alive:
                assert self.process is not None
                os.killpg(self.process.pid, sig)
            deadline = time.monotonic() + wait
            while self.alive and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if not self.alive:
                return
        await self._kill()

    async def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await asyncio.get_running_loop().run_in_executor(None, self.process.wait)


class FunctionEmulator(BackgroundEmulator):
    """Instances of one function behind an emulated HTTP trigger; see the module doc."""

    thread_name = "agentpack-function-emulator"

    def __init__(self, config: FunctionConfig, log: Optional[Log] = None) -> None:
        if config.platform not in ("fc", "agentrun", "local"):
            raise ValueError(f"platform {config.platform!r}: use fc, agentrun or local")
        if config.platform == "local":  # no platform adapter in front of the app: no hooks to call
            config = dataclasses.replace(config, initializer=False, pre_stop=False)
        if config.timeout <= 0 or config.instances < 1 or config.instance_concurrency < 1:
            raise ValueError("timeout must be positive, instances and instance_concurrency at least 1")
        super().__init__()
        self.config = config
        self._log = log
        self.instances: list[Instance] = []
        self.client: Any = None
        self._front: Optional[H11Server] = None
        self._turn = itertools.count()
        #: session header value -> (instance, last use); entries expire like FC's session TTL
        self._affinity: dict[str, tuple[Instance, float]] = {}
        self._freed: Optional[asyncio.Condition] = None

    def log(self, line: str) -> None:
        if self._log is not None:
            self._log(line)
        else:
            print(line, file=sys.stderr, flush=True)

    @property
    def url(self) -> str:
        if self._front is None:
            raise RuntimeError("start() the emulator first")
        return f"http://127.0.0.1:{self._front.port}"

    def platform_headers(self, request_id: str) -> dict[str, str]:
        """What the platform adds to every request it forwards."""
        config = self.config
        headers = {
            "x-fc-request-id": request_id,
            "x-fc-function-name": config.function_name,
            "x-fc-function-memory": str(config.memory_mb),
            "x-fc-function-handler": "index.handler",
            "x-fc-region": config.region,
            "x-fc-account-id": config.account_id,
            "x-fc-qualifier": "LATEST",
            "x-fc-version-id": "LATEST",
            "x-fc-control-path": "/http-invoke",
        }
        if config.role:  # temporary credentials of the role, made up locally
            headers.update(
                {
                    "x-fc-access-key-id": f"STS.emulated{request_id[:8]}",
                    "x-fc-access-key-secret": uuid.uuid4().hex,
                    "x-fc-security-token": uuid.uuid4().hex,
                }
            )
        return headers

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> "FunctionEmulator":
        """Start every instance and open the front; raises :class:`EmulatorStartError`."""
        if not any((self.config.code_dir / part[2:]).exists() for part in self.config.command if part.startswith("./")):
            raise EmulatorStartError(f"{self.config.code_dir} has no {self.config.command[0]}: is it an unpacked {self.config.platform} artifact?", code="CAExited")
        self._run_start()
        return self

    async def _start(self) -> None:
        import httpx

        self.client = httpx.AsyncClient(timeout=None, limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100))
        self._freed = asyncio.Condition()
        self._front = H11Server(self.handle, port=self.config.port)
        await self._front.start()  # a port already taken fails before any cold start
        self.instances = [Instance(self, index) for index in range(1, self.config.instances + 1)]
        outcomes = await asyncio.gather(*(instance.launch() for instance in self.instances), return_exceptions=True)
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if failures:
            raise failures[0]

    async def _stop(self) -> None:
        """Stop every instance (``/pre-stop``, SIGTERM, SIGKILL) and close the front."""
        await asyncio.gather(*(instance.stop() for instance in self.instances), return_exceptions=True)
        if self._front is not None:
            await self._front.close()
        if self.client is not None:
            await self.client.aclose()

    def __enter__(self) -> "FunctionEmulator":
        return self.start()

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary: URL and each instance's pid, port, starts and start time."""
        return {
            "url": self.url if self._front else None,
            "platform": self.config.platform,
            "timeout": self.config.timeout,
            "instances": [
                {"index": i.index, "id": i.id, "pid": i.process.pid if i.process else None, "port": i.port, "starts": i.starts, "start_seconds": i.start_seconds}
                for i in self.instances
            ],
        }

    # -- requests ----------------------------------------------------------------------------------
    async def _instance_for(self, affinity: Optional[str]) -> Instance:
        """An instance with a free slot: the session's own with affinity, else the least busy."""
        assert self._freed is not None
        async with self._freed:
            while True:
                now = time.monotonic()
                if len(self._affinity) > 1000:
                    self._affinity = {k: v for k, v in self._affinity.items() if now - v[1] < AFFINITY_TTL}
                pinned = self._affinity.get(affinity) if affinity is not None else None
                if pinned is not None and now - pinned[1] < AFFINITY_TTL:
                    candidates = [pinned[0]]
                else:
                    start = next(self._turn) % len(self.instances)
                    rotated = self.instances[start:] + self.instances[:start]
                    candidates = sorted(rotated, key=lambda i: i.in_flight)
                for instance in candidates:
                    if instance.in_flight < self.config.instance_concurrency:
                        instance.in_flight += 1
                        if affinity is not None:
                            self._affinity[affinity] = (instance, now)
                        return instance
                await self._freed.wait()

    async def _release(self, instance: Instance) -> None:
        assert self._freed is not None
        async with self._freed:
            instance.in_flight -= 1
            self._freed.notify_all()

    async def handle(self, exchange: Exchange) -> None:
        config = self.config
        request_id = uuid.uuid4().hex
        try:
            body = await exchange.body(limit=config.request_limit)
        except BodyTooLarge as exc:
            message = f"the request body ({exc.args[0]} bytes so far) is over the {config.request_limit // MB} MB limit of synchronous invocations"
            await self._error(exchange, 400, "FcCommonError", {"ErrorCode": "EntityTooLarge", "ErrorMessage": message}, request_id)
            return
        affinity = exchange.headers.get(config.affinity_header.lower()) if config.affinity_header else None
        instance = await self._instance_for(affinity)
        try:
            if not instance.alive and not self.stopping:  # it crashed between requests: a cold start
                async with instance.relaunching:
                    if not instance.alive:
                        instance.log("the instance is gone; starting a new one")
                        try:
                            await instance.launch()
                        except EmulatorStartError as exc:
                            await self._error(exchange, 502, "FunctionNotStarted", {"ErrorCode": exc.code, "ErrorMessage": str(exc)}, request_id)
                            return
            await self._forward(exchange, instance, body, request_id)
        finally:
            await self._release(instance)

    async def _forward(self, exchange: Exchange, instance: Instance, body: bytes, request_id: str) -> None:
        import httpx

        config = self.config
        headers = [(k, v) for k, v in exchange.header_list if k not in HOP_BY_HOP and not k.startswith("x-fc-")]
        headers += list(self.platform_headers(request_id).items())
        request = self.client.build_request(exchange.method, f"http://127.0.0.1:{instance.port}{exchange.target}", headers=headers, content=body)
        deadline = time.monotonic() + config.timeout

        async def relay() -> None:
            response = await self.client.send(request, stream=True)
            try:
                out = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in HOP_BY_HOP]
                if "content-length" in response.headers and "transfer-encoding" not in response.headers:
                    out.append(("content-length", response.headers["content-length"]))
                await exchange.start(response.status_code, out)
                async for chunk in response.aiter_raw():
                    await exchange.write(chunk)
                await exchange.end()
            finally:
                await response.aclose()

        task = asyncio.ensure_future(relay())
        try:
            done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - time.monotonic()))
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not done:
            task.cancel()
            await asyncio.wait({task})
            self.log(f"request {request_id} timed out after {config.timeout:g}s")
            if exchange.started:
                exchange.abort()  # the platform ends the invocation: the stream is cut
            else:
                await self._error(exchange, 502, "UnhandledInvocationError", {"errorMessage": f"Function time out after {config.timeout:g} seconds"}, request_id)
            return
        error = task.exception()
        if error is None:
            return
        if isinstance(error, (httpx.TransportError, ConnectionError)):
            if exchange.started:
                exchange.abort()
                return
            await asyncio.sleep(0.05)
            if not instance.alive:
                message = "Process exited unexpectedly before completing request"
            else:
                message = f"the instance did not answer: {error}"
            await self._error(exchange, 502, "UnhandledInvocationError", {"errorMessage": message}, request_id)
            return
        raise error

    async def _error(self, exchange: Exchange, status: int, error_type: str, body: dict[str, Any], request_id: str) -> None:
        if exchange.started:
            exchange.abort()
            return
        await exchange.respond(
            status,
            json.dumps(body).encode(),
            [("content-type", "application/json"), ("x-fc-error-type", error_type), ("x-fc-request-id", request_id)],
        )


def for_target(
    target: str, code_dir: Path, python: str, settings: Any, env: dict[str, str], *, port: int = 0, instances: int = 1,
    timeout: Optional[float] = None, log: Optional[Log] = None,
) -> FunctionEmulator:
    """The emulator of ``target`` (fc, agentrun, local), configured from its settings the way
    ``agentpack deploy`` configures the function."""
    def setting(name: str, default: Any) -> Any:
        value = getattr(settings, name, None)
        return default if value is None else value

    config = FunctionConfig(
        code_dir=code_dir,
        python=python,
        platform=target,
        env=env,
        timeout=timeout or float(setting("timeout", 300 if target == "fc" else 600)),
        memory_mb=int(setting("memory", 1024)),
        instances=instances,
        instance_concurrency=int(setting("instance_concurrency", setting("session_concurrency", 20))),
        function_name=str(setting("function_name", setting("runtime_name", "agentpack-function"))),
        region=str(setting("region", "cn-hangzhou")),
        role=setting("role", None),
        affinity_header=SESSION_HEADER if target == "fc" else None,
        health_check_path="/readiness" if target == "agentrun" else None,
        port=port,
    )
    return FunctionEmulator(config, log=log)
