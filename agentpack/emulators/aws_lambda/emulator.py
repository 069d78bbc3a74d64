"""The emulator: execution environments behind a function URL, as Lambda runs an unpacked artifact.

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
Invocations go to whichever environment is free (one at a time each, as on Lambda); with
none free they wait — the emulator does not scale out.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from agentpack.emulators.aws_lambda.environment import ExecutionEnvironment
from agentpack.emulators.aws_lambda.function_url import BUFFERED, RESPONSE_STREAM, FunctionURL
from agentpack.emulators.aws_lambda.runtime_api import Dispatcher, Failed
from agentpack.emulators.aws_lambda.runtime_client import python_version, runtime_dir
from agentpack.emulators.background import BackgroundEmulator, EmulatorStartError, Log
from agentpack.processes import child_env
from agentpack.target_settings import LambdaSettings
from agentpack.targets import LAMBDA_HANDLER, LAMBDA_STREAM_WRAPPER

#: Lambda's own timeout and memory for a function that sets none, and the names the emulator
#: gives a function that has none: a hand-made emulator's defaults.
PLATFORM_TIMEOUT = 3.0
PLATFORM_MEMORY = 128
FUNCTION_NAME = "agentpack-function"
REGION = "us-east-1"


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
        code_dir: os.PathLike[str] | str,
        python: str,
        env: dict[str, str] | None = None,
        *,
        streaming: bool = False,
        invoke_mode: str | None = None,
        timeout: float = PLATFORM_TIMEOUT,
        instances: int = 1,
        port: int = 0,
        memory: int = PLATFORM_MEMORY,
        function_name: str = FUNCTION_NAME,
        region: str = REGION,
        account_id: str = "123456789012",
        start_timeout: float = 60.0,
        log: Log | None = None,
        runtime_dir: os.PathLike[str] | str | None = None,
    ) -> None:
        self.code_dir = Path(code_dir).resolve()
        self.python = python
        self.env = dict(env or {})
        reserved = sorted(set(self.env) & LambdaSettings.reserved_env_names)
        if reserved:
            raise ValueError(
                f"env: {', '.join(reserved)} {'is' if len(reserved) == 1 else 'are'} reserved by Lambda; remove them from the function's environment"
            )
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
        self._runtime_dir = Path(runtime_dir) if runtime_dir else None
        super().__init__(log)
        self.environments: list[ExecutionEnvironment] = []
        self.dispatcher: Dispatcher
        self._front: FunctionURL | None = None
        self._python_version = ""

    # -- what the runtime sees ------------------------------------------------------------------
    @property
    def function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"

    def command(self) -> list[str]:
        """The managed runtime's start command, handed to the exec wrapper when there is one."""
        assert self._runtime_dir is not None
        command = [self.python, str(self._runtime_dir / "bootstrap.py")]
        wrapper = self.env.get("AWS_LAMBDA_EXEC_WRAPPER") or (
            str(self.code_dir / LAMBDA_STREAM_WRAPPER) if self.streaming else None
        )
        return [wrapper, *command] if wrapper else command

    def process_env(self, runtime_api: str, index: int) -> dict[str, str]:
        """The platform's variables, then the function's own; nothing from the host's environment."""
        env = {
            **child_env(self.python, LANG="en_US.UTF-8", HOME=None),
            "TZ": ":UTC",
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

    def any_ready(self, besides: ExecutionEnvironment | None = None) -> bool:
        return any(env is not besides and env.ready() for env in self.environments)

    # -- life cycle ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._front is None:
            raise RuntimeError("start() the emulator first")
        return self._front.url

    def start(self) -> LambdaEmulator:
        """Initialise every environment and open the front; raises :class:`EmulatorStartError`."""
        if self.streaming and not (self.code_dir / LAMBDA_STREAM_WRAPPER).is_file():
            raise EmulatorStartError(
                f"{self.code_dir} has no {LAMBDA_STREAM_WRAPPER}: build with `streaming = true` in [targets.lambda]"
            )
        handler_file = LAMBDA_HANDLER.partition(".")[0] + ".py"
        if not (self.code_dir / handler_file).is_file():
            raise EmulatorStartError(f"{self.code_dir} is not an unpacked Lambda artifact (no {handler_file})")
        self._python_version, _ = python_version(self.python)
        if self._runtime_dir is None:
            self._runtime_dir = runtime_dir(self.python)
        self._run_start()
        return self

    async def _start(self) -> None:
        self.dispatcher = Dispatcher()
        self._front = FunctionURL(
            self.dispatcher.submit,
            invoke_mode=self.invoke_mode,
            log=self.log,
            region=self.region,
            account_id=self.account_id,
            port=self.port,
        )
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

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary: URL, modes, and each environment's pid, starts and init time."""
        return {
            "url": self._front.url if self._front else None,
            "invoke_mode": self.invoke_mode,
            "streaming": self.streaming,
            "timeout": self.timeout,
            "environments": [
                {"index": e.info.index, "pid": e.info.pid, "starts": e.info.starts, "init_seconds": e.info.init_seconds}
                for e in self.environments
            ],
        }
