"""One execution environment: a runtime process and its own Runtime API, started as the
managed runtime starts one and replaced whenever the platform would replace it.

An environment takes one invocation at a time.  Its init ends with the runtime's first
``GET …/invocation/next`` (or its init error, or its exit); a timeout fails the invocation and
resets the environment (SIGTERM, then SIGKILL after the platform's grace) and a fresh one is
initialised; so does a runtime that exits.  A fresh runtime whose init fails is tried again
when there is work, failing that work with the init error when no other environment can take it.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agentpack.emulators.aws_lambda.runtime_api import Failed, RuntimeAPI
from agentpack.emulators.background import EmulatorStartError
from agentpack.processes import end_process_group_async

if TYPE_CHECKING:
    from agentpack.emulators.aws_lambda.emulator import LambdaEmulator

#: What the platform waits between SIGTERM and SIGKILL when it ends a runtime (with extensions).
SHUTDOWN_GRACE = 0.5


def how_it_exited(returncode: int) -> str:
    """The runtime's end in Lambda's words: ``exit status 3``, or ``signal: killed`` for a signal
    (an out-of-memory kill reads "Runtime exited with error: signal: killed" in Lambda's logs;
    the signal names are Go's, lower-case, which libc's descriptions match for the common ones)."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        described = signal.strsignal(-returncode) or f"signal {-returncode}"
    except ValueError:
        described = f"signal {-returncode}"
    return f"signal: {described.lower()}"


@dataclass
class EnvironmentInfo:
    """What the emulator can say about one execution environment."""

    index: int
    pid: int | None = None
    init_seconds: float | None = None
    starts: int = 0
    output: deque[str] = field(default_factory=lambda: deque(maxlen=200))


class ExecutionEnvironment:
    """One slot: a runtime process and its Runtime API, replaced whenever the platform would."""

    def __init__(self, emulator: LambdaEmulator, index: int) -> None:
        self.emulator = emulator
        self.info = EnvironmentInfo(index)
        self.process: asyncio.subprocess.Process | None = None
        self.api: RuntimeAPI | None = None
        self._reset = asyncio.Event()
        self._readers: list[asyncio.Task[None]] = []
        self._supervisor: asyncio.Task[None] | None = None

    def log(self, line: str) -> None:
        self.emulator.log(f"[env {self.info.index}] {line}")

    async def launch(self) -> None:
        """Start a runtime and wait for its init to end; raises :class:`EmulatorStartError`."""
        emulator = self.emulator
        self._reset.clear()
        self.api = RuntimeAPI(
            emulator.dispatcher,
            timeout=emulator.timeout,
            function_arn=emulator.function_arn,
            memory=emulator.memory,
            log=self.log,
            on_timeout=self._reset.set,
        )
        await self.api.start()
        started = time.monotonic()
        self.info.output.clear()
        command = emulator.command()
        try:
            self.process = await asyncio.create_subprocess_exec(
                *command,
                cwd=str(emulator.code_dir),
                env=emulator.process_env(self.api.address, self.info.index),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # Ctrl+C in the terminal reaches the emulator, which ends its children
            )
        except OSError as exc:
            await self.api.close()
            raise EmulatorStartError(
                f"execution environment {self.info.index} could not start {command[0]}: {exc}"
            ) from None
        self.info.pid, self.info.starts = self.process.pid, self.info.starts + 1
        self._readers = [
            asyncio.ensure_future(self._read(stream)) for stream in (self.process.stdout, self.process.stderr)
        ]
        exited = asyncio.ensure_future(self.process.wait())
        ready = asyncio.ensure_future(self.api.ready.wait())
        failed = asyncio.ensure_future(self.api.init_failed.wait())
        try:
            await asyncio.wait(
                {exited, ready, failed}, timeout=emulator.start_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in (ready, failed):
                waiter.cancel()
        if self.api.ready.is_set() and not exited.done():
            exited.cancel()  # the supervisor watches the process from here on
            self.info.init_seconds = time.monotonic() - started
            self.log(f"INIT_REPORT Init Duration: {self.info.init_seconds * 1000:.2f} ms")
            return
        if not exited.done():
            await asyncio.wait({exited}, timeout=2.0)  # a runtime that posted its init error exits on its own
        code = self.process.returncode
        if code is None:
            await self._kill()
        await asyncio.gather(*self._readers, return_exceptions=True)
        await self.api.close()
        reason = (
            "posted an init error"
            if self.api.init_error
            else f"exited with code {code}"
            if code is not None
            else f"did not finish init within {emulator.start_timeout:.0f}s"
        )
        raise EmulatorStartError(
            f"execution environment {self.info.index} {reason}",
            exit_code=code,
            output="\n".join(self.info.output),
            init_error=self.api.init_error,
        )

    async def _read(self, stream: asyncio.StreamReader | None) -> None:
        """Forward the runtime's output line by line; never stop reading (a full pipe would stall it)."""
        assert stream is not None
        pending = b""
        while True:
            data = await stream.read(65536)
            pending += data
            lines = pending.split(b"\n")
            pending = lines.pop() if data else b""
            if len(pending) > 65536:  # a very long line is shown in pieces
                lines.append(pending)
                pending = b""
            for line in lines:
                if line or data:
                    text = line.decode("utf-8", "replace").rstrip("\r")
                    self.info.output.append(text)
                    self.log(text)
            if not data:
                return

    def supervise(self) -> None:
        self._supervisor = asyncio.ensure_future(self._supervise())

    async def _supervise(self) -> None:
        """Replace the runtime whenever the platform would: after a timeout, or when it exits."""
        while not self.emulator.stopping:
            assert self.process is not None and self.api is not None
            exited = asyncio.ensure_future(self.process.wait())
            reset = asyncio.ensure_future(self._reset.wait())
            try:
                await asyncio.wait({exited, reset}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                reset.cancel()
                if not exited.done():
                    exited.cancel()
            if self.emulator.stopping:
                return
            if self.process.returncode is not None:
                ended = how_it_exited(self.process.returncode)
                self.log(f"Runtime exited with error: {ended}")
                self.api.fail_current("Runtime.ExitError", f"Runtime exited with error: {ended}")
            else:
                self.log("resetting the execution environment after the timeout")
                await self._kill()
            await asyncio.gather(*self._readers, return_exceptions=True)
            await self.api.close()
            await self._relaunch()

    async def _relaunch(self) -> None:
        """A fresh runtime; if its init fails, try again when there is work (failing that work
        with the init error when no other environment could take it)."""
        while not self.emulator.stopping:
            try:
                await self.launch()
                return
            except EmulatorStartError as failure:
                self.log(str(failure))
                await self.emulator.dispatcher.wait_for_demand()
                if not self.emulator.any_ready(besides=self):
                    waiting = self.emulator.dispatcher.take_nowait()
                    if waiting is not None:
                        error = failure.init_error or {
                            "errorType": "Runtime.ExitError",
                            "errorMessage": failure.args[0],
                        }
                        waiting.deliver(Failed(str(error.get("errorType")), str(error.get("errorMessage"))))
                await asyncio.sleep(1.0)

    def ready(self) -> bool:
        return (
            self.api is not None
            and self.api.ready.is_set()
            and self.process is not None
            and self.process.returncode is None
        )

    async def _kill(self) -> None:
        """End the runtime as the platform does: SIGTERM, then SIGKILL (the runtime if it lingers,
        and anything it started) after the grace."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        await end_process_group_async(process.pid, lambda: process.returncode is None, grace=SHUTDOWN_GRACE)
        await process.wait()

    async def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        await self._kill()
        await asyncio.gather(*self._readers, return_exceptions=True)
        if self.api is not None:
            await self.api.close()
