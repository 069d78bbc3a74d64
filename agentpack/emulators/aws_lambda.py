"""Run an unpacked Lambda artifact the way the managed Python runtime would, behind a function URL.

::

    emulator = LambdaEmulator(code_dir, python="/usr/bin/python3.12", env={"KEY": "v"}, streaming=True, timeout=30)
    emulator.start()          # every environment initialised, or EmulatorStartError
    ... HTTP to emulator.url ...
    emulator.stop()

Each execution environment is a process started as the managed runtime starts one: cwd and
``LAMBDA_TASK_ROOT`` at the code, the platform's reserved variables plus the function's own,
its own Runtime API (``AWS_LAMBDA_RUNTIME_API``), and the command
``python <runtime>/bootstrap.py`` — or, with ``streaming``, that command handed to the
artifact's exec wrapper (``AWS_LAMBDA_EXEC_WRAPPER``), exactly as the platform hands it.
The runtime client is the real ``awslambdaric``, unchanged, installed once per Python
version into agentpack's cache with ``pip install --target`` (the host's own copy is built
for the host's Python only, and the artifact must not see the host's site-packages).

Invocations go to whichever environment is free (one at a time each, as on Lambda); with
none free they wait — the emulator does not scale out.  A timeout fails the invocation and
resets its environment (SIGTERM, then SIGKILL after the platform's grace) and a fresh one is
initialised; so does a runtime that exits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from agentpack.emulators.background import BackgroundEmulator, EmulatorStartError
from agentpack.emulators.lambda_function_url import BUFFERED, RESPONSE_STREAM, FunctionURL
from agentpack.emulators.lambda_runtime_api import Dispatcher, Failed, RuntimeAPI
from agentpack.targets import LAMBDA_HANDLER, LAMBDA_STREAM_WRAPPER

logger = logging.getLogger("agentpack.emulate")

#: What the platform waits between SIGTERM and SIGKILL when it ends a runtime (with extensions).
SHUTDOWN_GRACE = 0.5
#: The variables Lambda sets itself; a function may not configure them.
RESERVED = frozenset(
    {
        "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
    }
)  # fmt: skip
#: The managed runtime's own start script, in the runtime directory next to awslambdaric.
BOOTSTRAP = '''"""The managed Python runtime's start: awslambdaric serves the handler named by _HANDLER."""
import os
import sys

sys.path.insert(0, os.environ["LAMBDA_TASK_ROOT"])
from awslambdaric.__main__ import main

main([sys.argv[0], os.environ["_HANDLER"]])
'''

Log = Callable[[str], None]


# -- the runtime client, for the target's Python ---------------------------------------------
def interpreter_info(python: str) -> tuple[str, str]:
    """``("3.12", "x86_64")`` for the interpreter at ``python``."""
    probe = subprocess.run(
        [python, "-c", "import sys, platform; print('%d.%d' % sys.version_info[:2], platform.machine())"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if probe.returncode != 0:
        raise EmulatorStartError(f"{python} does not run: {probe.stderr.strip()[-500:]}")
    version, machine = probe.stdout.split()
    return version, {"amd64": "x86_64", "arm64": "aarch64"}.get(machine.lower(), machine.lower())


def runtime_client_requirement() -> str:
    """The awslambdaric to emulate with: the host's version when installed (tests and runs agree), else the latest."""
    from importlib import metadata

    try:
        return f"awslambdaric=={metadata.version('awslambdaric')}"
    except metadata.PackageNotFoundError:
        return "awslambdaric"


def runtime_dir(python: str, cache: Optional[Path] = None) -> Path:
    """A directory holding awslambdaric for ``python``'s version and the runtime's ``bootstrap.py``.

    Installed once into the cache with ``pip install --target`` (wheels only, for this
    machine's architecture and the interpreter's version); later calls reuse it.
    """
    from agentpack.builders.cache import cache_root
    from agentpack.targets import host_glibc

    version, machine = interpreter_info(python)
    requirement = runtime_client_requirement()
    root = (cache or cache_root()) / "lambda-runtime" / f"{requirement.replace('==', '-')}-cp{version.replace('.', '')}-{machine}"
    if (root / ".complete").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = root.with_name(root.name + f".{os.getpid()}.tmp")
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(host_glibc(), 16, -1)] + [f"manylinux2014_{machine}"]
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(staging), "--only-binary=:all:", "--implementation", "cp", "--python-version", version]
    for tag in tags:
        command += ["--platform", tag]
    result = subprocess.run([*command, requirement], capture_output=True, text=True, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    if result.returncode != 0:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        last = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("WARNING")]
        raise EmulatorStartError(f"could not install {requirement} for Python {version} ({machine}): {last[-1] if last else 'pip failed'}")
    (staging / "bootstrap.py").write_text(BOOTSTRAP)
    (staging / ".complete").write_text(requirement)
    try:
        os.replace(staging, root)
    except OSError:  # another process finished first
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    return root


# -- execution environments --------------------------------------------------------------------
@dataclass
class EnvironmentInfo:
    """What the emulator can say about one execution environment."""

    index: int
    pid: Optional[int] = None
    init_seconds: Optional[float] = None
    starts: int = 0
    output: deque = field(default_factory=lambda: deque(maxlen=200))


class ExecutionEnvironment:
    """One slot: a runtime process and its Runtime API, replaced whenever the platform would."""

    def __init__(self, emulator: "LambdaEmulator", index: int) -> None:
        self.emulator = emulator
        self.info = EnvironmentInfo(index)
        self.process: Optional[asyncio.subprocess.Process] = None
        self.api: Optional[RuntimeAPI] = None
        self._reset = asyncio.Event()
        self._readers: list[asyncio.Task] = []
        self._supervisor: Optional[asyncio.Task] = None

    def log(self, line: str) -> None:
        self.emulator.log(f"[env {self.info.index}] {line}")

    async def launch(self) -> None:
        """Start a runtime and wait for its init to end; raises :class:`EmulatorStartError`."""
        emulator = self.emulator
        self._reset.clear()
        self.api = RuntimeAPI(
            emulator.dispatcher, timeout=emulator.timeout, function_arn=emulator.function_arn, memory=emulator.memory, log=self.log, on_timeout=self._reset.set
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
            raise EmulatorStartError(f"execution environment {self.info.index} could not start {command[0]}: {exc}") from None
        self.info.pid, self.info.starts = self.process.pid, self.info.starts + 1
        self._readers = [asyncio.ensure_future(self._read(stream)) for stream in (self.process.stdout, self.process.stderr)]
        exited = asyncio.ensure_future(self.process.wait())
        ready = asyncio.ensure_future(self.api.ready.wait())
        failed = asyncio.ensure_future(self.api.init_failed.wait())
        try:
            await asyncio.wait({exited, ready, failed}, timeout=emulator.start_timeout, return_when=asyncio.FIRST_COMPLETED)
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
        reason = "posted an init error" if self.api.init_error else f"exited with code {code}" if code is not None else f"did not finish init within {emulator.start_timeout:.0f}s"
        raise EmulatorStartError(
            f"execution environment {self.info.index} {reason}", exit_code=code, output="\n".join(self.info.output), init_error=self.api.init_error
        )

    async def _read(self, stream: Optional[asyncio.StreamReader]) -> None:
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
                code = self.process.returncode
                self.log(f"Runtime exited with error: exit status {code}")
                self.api.fail_current("Runtime.ExitError", f"Runtime exited with error: exit status {code}")
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
                        error = failure.init_error or {"errorType": "Runtime.ExitError", "errorMessage": failure.args[0]}
                        waiting.deliver(Failed(str(error.get("errorType")), str(error.get("errorMessage"))))
                await asyncio.sleep(1.0)

    def ready(self) -> bool:
        return self.api is not None and self.api.ready.is_set() and self.process is not None and self.process.returncode is None

    async def _kill(self) -> None:
        """End the runtime as the platform does: SIGTERM, then SIGKILL after the grace."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        try:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), SHUTDOWN_GRACE)
        except (asyncio.TimeoutError, ProcessLookupError):
            pass
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the runtime if it lingers, and anything it started
        except (ProcessLookupError, PermissionError):
            pass
        await process.wait()

    async def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        await self._kill()
        await asyncio.gather(*self._readers, return_exceptions=True)
        if self.api is not None:
            await self.api.close()


# -- the emulator ------------------------------------------------------------------------------
class LambdaEmulator(BackgroundEmulator):
    """An unpacked Lambda artifact, served on ``http://127.0.0.1:<port>`` as a function URL.

    ``code_dir``: the unpacked artifact.  ``python``: the interpreter playing the managed
    runtime's (its version should be the target's).  ``env``: the function's environment
    variables (reserved names are refused, as Lambda refuses them).  ``streaming``: start
    through the artifact's exec wrapper (agentpack's streaming loop) instead of the runtime's
    client.  ``invoke_mode``: the URL's mode, ``RESPONSE_STREAM`` when streaming, else
    ``BUFFERED``.  ``timeout``: the function timeout in seconds.  ``instances``: execution
    environments kept warm.  ``log``: receives every log line (runtime output, START/END/
    REPORT); default stderr.  ``runtime_dir``: a ready awslambdaric directory (default: the
    cached install for ``python``'s version).
    """

    thread_name = "agentpack-lambda-emulator"
    stop_timeout = 30.0

    def __init__(
        self,
        code_dir: os.PathLike | str,
        python: str,
        env: Optional[dict[str, str]] = None,
        *,
        streaming: bool = False,
        invoke_mode: Optional[str] = None,
        timeout: float = 3.0,
        instances: int = 1,
        port: int = 0,
        memory: int = 128,
        function_name: str = "agentpack-function",
        region: str = "us-east-1",
        account_id: str = "123456789012",
        start_timeout: float = 60.0,
        log: Optional[Log] = None,
        runtime_dir: Optional[os.PathLike | str] = None,
    ) -> None:
        self.code_dir = Path(code_dir).resolve()
        self.python = python
        self.env = dict(env or {})
        reserved = sorted(set(self.env) & RESERVED)
        if reserved:
            raise ValueError(f"env: {', '.join(reserved)} {'is' if len(reserved) == 1 else 'are'} reserved by Lambda; remove them from the function's environment")
        self.streaming = streaming
        self.invoke_mode = invoke_mode or (RESPONSE_STREAM if streaming else BUFFERED)
        if self.invoke_mode not in (BUFFERED, RESPONSE_STREAM):
            raise ValueError(f"invoke_mode {self.invoke_mode!r}: use {BUFFERED} or {RESPONSE_STREAM}")
        if timeout <= 0 or instances < 1:
            raise ValueError("timeout must be positive and instances at least 1")
        self.timeout = timeout
        self.instances = instances
        self.port = port
        self.memory = memory
        self.function_name = function_name
        self.region = region
        self.account_id = account_id
        self.start_timeout = start_timeout
        self._log = log
        self._runtime_dir = Path(runtime_dir) if runtime_dir else None
        super().__init__()
        self.environments: list[ExecutionEnvironment] = []
        self.dispatcher: Dispatcher
        self._front: Optional[FunctionURL] = None
        self._python_version = ""

    # -- what the runtime sees ------------------------------------------------------------------
    @property
    def function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"

    def command(self) -> list[str]:
        """The managed runtime's start command, handed to the exec wrapper when there is one."""
        assert self._runtime_dir is not None
        command = [self.python, str(self._runtime_dir / "bootstrap.py")]
        wrapper = self.env.get("AWS_LAMBDA_EXEC_WRAPPER") or (str(self.code_dir / LAMBDA_STREAM_WRAPPER) if self.streaming else None)
        return [wrapper, *command] if wrapper else command

    def process_env(self, runtime_api: str, index: int) -> dict[str, str]:
        """The platform's variables, then the function's own; nothing from the host's environment."""
        python_bin = str(Path(self.python).parent)
        env = {
            "PATH": f"{python_bin}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "PYTHONNOUSERSITE": "1",
            "LD_LIBRARY_PATH": f"{self.code_dir}:{self.code_dir}/lib",
            "LAMBDA_TASK_ROOT": str(self.code_dir),
            "LAMBDA_RUNTIME_DIR": str(self._runtime_dir),
            "_HANDLER": LAMBDA_HANDLER,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_python{self._python_version}",
            "AWS_LAMBDA_RUNTIME_API": runtime_api,
            "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"{time.strftime('%Y/%m/%d')}/[$LATEST]emulated{index:04d}",
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            # what the app tells clients (an A2A card) is the function URL's, as on the platform
            **({"AGENTPACK_PUBLIC_URL": self._front.url} if self._front is not None else {}),
            **self.env,
        }
        if self.streaming:
            env["AWS_LAMBDA_EXEC_WRAPPER"] = str(self.code_dir / LAMBDA_STREAM_WRAPPER)
        return env

    def log(self, line: str) -> None:
        if self._log is not None:
            self._log(line)
        else:
            print(line, file=sys.stderr, flush=True)

    def any_ready(self, besides: Optional[ExecutionEnvironment] = None) -> bool:
        return any(env is not besides and env.ready() for env in self.environments)

    # -- life cycle ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._front is None:
            raise RuntimeError("start() the emulator first")
        return self._front.url

    def start(self) -> "LambdaEmulator":
        """Initialise every environment and open the front; raises :class:`EmulatorStartError`."""
        if self.streaming and not (self.code_dir / LAMBDA_STREAM_WRAPPER).is_file():
            raise EmulatorStartError(f"{self.code_dir} has no {LAMBDA_STREAM_WRAPPER}: build with `streaming = true` in [targets.lambda]")
        if not (self.code_dir / "agentpack_lambda.py").is_file():
            raise EmulatorStartError(f"{self.code_dir} is not an unpacked Lambda artifact (no agentpack_lambda.py)")
        self._python_version, _ = interpreter_info(self.python)
        if self._runtime_dir is None:
            self._runtime_dir = runtime_dir(self.python)
        self._run_start()
        return self

    async def _start(self) -> None:
        self.dispatcher = Dispatcher()
        self._front = FunctionURL(self.dispatcher.submit, invoke_mode=self.invoke_mode, log=self.log, region=self.region, account_id=self.account_id, port=self.port)
        await self._front.start()  # a port already taken fails before any cold start
        self.environments = [ExecutionEnvironment(self, index) for index in range(1, self.instances + 1)]
        outcomes = await asyncio.gather(*(env.launch() for env in self.environments), return_exceptions=True)
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if failures:
            raise failures[0]
        for env in self.environments:
            env.supervise()

    async def _stop(self) -> None:
        """End every environment (SIGTERM, then SIGKILL) and close the front."""
        if self._front is not None:
            await self._front.close()
        await asyncio.gather(*(env.stop() for env in self.environments), return_exceptions=True)
        while True:  # whatever still waits for an environment gets the platform's refusal
            waiting = self.dispatcher.take_nowait() if hasattr(self, "dispatcher") else None
            if waiting is None:
                break
            waiting.deliver(Failed("ServiceException", "the emulator stopped"))

    def __enter__(self) -> "LambdaEmulator":
        return self.start()

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary: URL, modes, and each environment's pid, starts and init time."""
        return {
            "url": self._front.url if self._front else None,
            "invoke_mode": self.invoke_mode,
            "streaming": self.streaming,
            "timeout": self.timeout,
            "environments": [
                {"index": e.info.index, "pid": e.info.pid, "starts": e.info.starts, "init_seconds": e.info.init_seconds} for e in self.environments
            ],
        }



def for_target(
    target: str, code_dir: Path, python: str, settings: Any, env: dict[str, str], *, port: int = 0, instances: int = 1,
    timeout: Optional[float] = None, log: Optional[Log] = None,
) -> LambdaEmulator:
    """The Lambda emulator configured from ``[targets.lambda]`` the way ``agentpack deploy``
    configures the function (streaming when the artifact carries the exec wrapper)."""
    def setting(name: str, default: Any) -> Any:
        value = getattr(settings, name, None)
        return default if value is None else value

    return LambdaEmulator(
        code_dir,
        python,
        env,
        streaming=bool(setting("streaming", False)) or (Path(code_dir) / LAMBDA_STREAM_WRAPPER).exists(),
        timeout=timeout or float(setting("timeout", 30)),
        instances=instances,
        port=port,
        memory=int(setting("memory", 1024)),
        function_name=str(setting("function_name", "agentpack-function")),
        region=str(setting("region", "us-east-1")),
        log=log,
    )
