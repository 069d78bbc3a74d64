"""One instance of the function: a process started as the platform starts one, and stopped so.

The artifact's start command (``bootstrap``) runs with the code directory as working
directory (read-only, as ``/code`` is), only the platform's variables (the profile's) and the
function's own in its environment.  It counts as started once a socket of its process group
listens on an address the platform reaches (``0.0.0.0`` or ``::``; the local target also
loopback) at the port it was given — an app that binds elsewhere fails the way the platform
fails, ``FunctionNotStarted``, with the reason — then, where the platform has them, the health
check answered 200 and ``POST /initialize`` succeeded.  It stops as the platform stops it:
``GET /pre-stop`` (the app's graceful shutdown), then SIGTERM, then SIGKILL.

An instance that dies on its own is reported at once with its exit status or signal (as the
Lambda emulator reports a runtime's exit) and replaced at once, as the platform replaces a dead
instance: the requests that follow wait for the new one's cold start instead of failing.

Without Linux's /proc (macOS), "listens on the port" is "the port accepts connections": whether
the app bound 0.0.0.0, as the platform needs, or only loopback is checked on Linux alone.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

from agentpack.emulators.background import EmulatorStartError
from agentpack.processes import (
    accepts_connections,
    child_env,
    describe_exit,
    end_process_group_async,
    listening_sockets,
    process_group,
)

if TYPE_CHECKING:
    from agentpack.emulators.http_function.front import FunctionEmulator

#: Seconds an instance gets for its graceful shutdown once ``/pre-stop`` answered, then after SIGTERM.
PRE_STOP_GRACE = 20.0
SIGTERM_GRACE = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Instance:
    """One running copy of the function."""

    def __init__(self, emulator: FunctionEmulator, index: int) -> None:
        self.emulator = emulator
        self.index = index
        self.id = f"c-{uuid.uuid4().hex[:12]}"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.output: deque[str] = deque(maxlen=200)
        self.relaunching = asyncio.Lock()  # two requests finding it dead start one new process
        self.in_flight = 0
        self.starts = 0
        self.start_seconds: float | None = None
        self._reader: threading.Thread | None = None
        self._ending = False  # stopped on purpose: not a death to report
        self._launched = False  # the current process finished its start (listening, checked, initialised)
        self._watcher: asyncio.Future[None] | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def ready(self) -> bool:
        """Alive and done starting: requests may go to it (else they wait for :attr:`relaunching`)."""
        return self._launched and self.alive

    def env(self) -> dict[str, str]:
        """A clean environment, the platform's variables (the profile's), then the function's own."""
        config = self.emulator.config
        env = child_env(
            config.python,
            AGENTPACK_PYTHON=config.python,  # the interpreter standing in for the platform's
            # what the app tells clients (an A2A card) is the front's URL, as on the platform
            AGENTPACK_PUBLIC_URL=self.emulator.url,
            # an emulator killed outright (SIGKILL) leaves no instance serving behind it
            AGENTPACK_EXIT_WITH_PARENT="1",
            # one instance: the app need not warn that stops will not cross instances
            AGENTPACK_SINGLE_INSTANCE="1" if config.instances == 1 else None,
        )
        return {**env, **self.emulator.profile.instance_env(config, self.id, self.port), **config.env}

    def log(self, line: str) -> None:
        self.output.append(line)
        self.emulator.log(f"[instance {self.index}] {line}")

    def _read(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            self.log(raw.decode("utf-8", "replace").rstrip("\n"))

    def _failure(self, message: str, code: str, **details: Any) -> EmulatorStartError:
        return EmulatorStartError(message, code=code, output="\n".join(self.output), **details)

    async def launch(self) -> None:
        """Start the process and wait until it listens as the platform requires."""
        config = self.emulator.config
        self._ending = False
        self._launched = False
        self.port = free_port()
        self.output.clear()
        self.starts += 1
        started = time.perf_counter()
        command = [str(config.code_dir / part[2:]) if part.startswith("./") else part for part in config.command]
        try:
            # Popen returns once the child has started; a thread reads its output
            self.process = subprocess.Popen(  # noqa: ASYNC220
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
        self._launched = True
        self._watcher = asyncio.ensure_future(self._watch(self.process))

    async def _watch(self, process: subprocess.Popen[bytes]) -> None:
        """Report the process's death and start a new instance at once (see the module doc)."""
        code = await asyncio.get_running_loop().run_in_executor(None, process.wait)
        if self._ending or self.emulator.stopping or process is not self.process:
            return
        self.log(f"the instance (pid {process.pid}) {describe_exit(code)}; starting a new one")
        async with self.relaunching:
            if self.ready or self._ending or self.emulator.stopping:
                return  # a request found it dead first and started the new one
            try:
                await self.launch()
            except EmulatorStartError as exc:  # the next request tries again and gets the platform's error
                self.log(f"the new instance did not start: {exc}")

    async def _await_listening(self, started: float) -> None:
        config = self.emulator.config
        assert self.process is not None
        deadline = started + config.start_timeout
        reachable = self.emulator.profile.reachable
        while True:
            if self.process.poll() is not None:
                await asyncio.sleep(0.05)  # let the reader catch the last lines
                given = self.emulator.profile.row.port_env
                where = f"the port in ${given} ({self.port} here)" if given else f"port {self.port}"
                raise self._failure(
                    f"the instance {describe_exit(self.process.returncode)} before it listened on {where}",
                    "FunctionNotStarted",
                    exit_code=self.process.returncode,
                )
            sockets = listening_sockets(process_group(self.process.pid))
            if sockets is None:  # no /proc: the portable check (see the module doc)
                if accepts_connections(self.port):
                    return
                sockets = []
            on_port = [address for address, port in sockets if port == self.port]
            if any(address in reachable for address in on_port):
                return
            if time.perf_counter() > deadline:
                await self.kill()
                if on_port:
                    reason = f"it listens on {on_port[0]}:{self.port}, which the platform cannot reach; listen on 0.0.0.0:{self.port}"
                elif sockets:
                    shown = ", ".join(f"{a}:{p}" for a, p in sockets)
                    reason = f"it listens on {shown}, not on the port the platform gives it ({self.port}); listen on 0.0.0.0:{self.port}"
                else:
                    reason = "it opened no listening socket"
                raise self._failure(
                    f"Function instance health check failed on port {self.port} in {config.start_timeout:g} seconds: {reason}",
                    "FunctionNotStarted",
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
                response = await self.emulator.client.get(
                    f"http://127.0.0.1:{self.port}{config.health_check_path}", timeout=5
                )
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[:200]}"
            except Exception as exc:
                last = str(exc) or type(exc).__name__
            await asyncio.sleep(0.1)
        await self.kill()
        raise self._failure(
            f"the health check GET {config.health_check_path} did not answer 200 within {config.start_timeout:g} seconds (last: {last})",
            "HealthCheckFailed",
            exit_code=self.process.returncode if self.process else None,
        )

    async def _initialize(self) -> None:
        config = self.emulator.config
        try:
            response = await self.emulator.client.post(
                f"http://127.0.0.1:{self.port}/initialize",
                headers=self.emulator.profile.hook_headers(config, "/initialize"),
                timeout=config.start_timeout,
            )
        except Exception as exc:
            raise self._failure(f"the initializer failed: {exc}", "InitializationError") from None
        if not 200 <= response.status_code < 300:
            raise self._failure(
                f"the initializer answered {response.status_code}: {response.text[:500]}", "InitializationError"
            )

    async def stop(self) -> None:
        """``/pre-stop`` (which starts the app's graceful shutdown), then SIGTERM, then SIGKILL."""
        self._ending = True
        if not self.alive:
            return
        config = self.emulator.config
        settle = 0.0
        if config.pre_stop:
            try:
                answer = await self.emulator.client.get(
                    f"http://127.0.0.1:{self.port}/pre-stop",
                    headers=self.emulator.profile.hook_headers(config, "/pre-stop"),
                    timeout=5,
                )
                if answer.status_code < 300:  # the graceful shutdown has begun: give it its time
                    settle = PRE_STOP_GRACE
            except Exception as exc:
                self.log(f"pre-stop failed: {exc}")
        await self._end(settle=settle, grace=SIGTERM_GRACE)

    async def kill(self) -> None:
        """SIGKILL at once (an instance that failed to start)."""
        self._ending = True
        await self._end(settle=0.0, grace=0.0)

    async def _end(self, *, settle: float, grace: float) -> None:
        process = self.process
        if process is None:
            return
        await end_process_group_async(process.pid, lambda: process.poll() is None, settle=settle, grace=grace)
        await asyncio.get_running_loop().run_in_executor(None, process.wait)
        if self._watcher is not None:  # it watched this process: nothing left to report
            self._watcher.cancel()
