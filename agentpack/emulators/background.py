"""The part every emulator shares: an asyncio loop of its own in a background thread, so the
emulator's servers and processes keep running while the caller (a CLI, a test, a deployer's
stand-in) blocks, and a ``start()``/``stop()`` that are plain calls; where its log lines go;
the errors of ``agentpack emulate``; and the profile a target's row names (``emulator =
"module:Class"``), which turns the target's settings into a configured emulator."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentpack.errors import OperationFailed, UserError

if TYPE_CHECKING:
    from agentpack.targets import Target

#: Receives each log line of the emulated instances (their output, the platform's own lines).
Log = Callable[[str], None]


class EmulationError(UserError):
    """The user's input is wrong (exit 2): a missing file, a target the artifact is not for…"""


class EmulatorStartError(OperationFailed):
    """The artifact did not start under the emulator: the platform's error code (when it has
    one), what went wrong, the process's exit code, its last output, and (Lambda) the error it
    reported to ``/runtime/init/error``."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        exit_code: int | None = None,
        output: str = "",
        init_error: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        # the process's exit code; it shadows AgentpackError.exit_code (the command line's), which the
        # CLI does not read for this error: `agentpack emulate` reports it with exit 1 itself
        self.exit_code = exit_code  # type: ignore[misc,assignment]
        self.output = output
        self.init_error = init_error

    def __str__(self) -> str:
        lines = [f"{self.code}: {self.args[0]}" if self.code else self.args[0]]
        if self.init_error:
            lines.append(f"init error: {self.init_error.get('errorType')}: {self.init_error.get('errorMessage')}")
        if self.exit_code is not None:
            lines.append(f"the process exited with code {self.exit_code}")
        if self.output.strip():
            lines.append("its output ended with:\n" + self.output.rstrip())
        return "\n".join(lines)


class BackgroundEmulator:
    """Subclasses implement ``start()`` (checks, then :meth:`_run_start`), ``_start()`` and
    ``_stop()`` (coroutines run on the loop) and set :attr:`stopping`-aware behaviour;
    :meth:`_run_start` raises what ``_start`` raised, after stopping."""

    thread_name = "agentpack-emulator"
    #: seconds :meth:`stop` waits for ``_stop`` (instances get their graceful shutdown first)
    stop_timeout = 60.0

    def __init__(self, log: Log | None = None) -> None:
        self.stopping = False
        self._log = log
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def log(self, line: str) -> None:
        """One log line: to ``log`` when one was given, else to stderr."""
        if self._log is not None:
            self._log(line)
        else:
            print(line, file=sys.stderr, flush=True)

    def start(self) -> Any:
        raise NotImplementedError

    @property
    def url(self) -> str:
        """Where the emulated platform answers (once started)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary (URL, instances) for ``agentpack emulate --json``."""
        raise NotImplementedError

    def _run_start(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=self.thread_name, daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start(), self._loop).result()
        except BaseException:
            self.stop()
            raise

    async def _start(self) -> None:
        raise NotImplementedError

    async def _stop(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop everything the emulator runs; idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self.stopping = True
        if loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._stop(), loop).result(timeout=self.stop_timeout)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout=10)
        if not loop.is_running():
            loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class EmulatorProfile:
    """How one target's platform is emulated; a target's row names its profile class.

    Built from the row (whose facts it reads: port variable, adapter, lifecycle hooks, health
    check, affinity header), :meth:`emulator` turns the target's settings into an emulator
    configured as ``agentpack deploy`` configures the function — see :func:`configured`.
    """

    def __init__(self, row: Target) -> None:
        self.row = row

    def emulator(
        self, code_dir: Path, python: str, settings: Any, env: dict[str, str], *, port: int = 0, instances: int = 1,
        timeout: float | None = None, log: Log | None = None,
    ) -> BackgroundEmulator:  # fmt: skip
        """An emulator (not started yet) of the unpacked artifact at ``code_dir``, run with
        ``python``, with the function's environment ``env``; ``timeout`` overrides the settings'."""
        raise NotImplementedError


def configured(settings: Any, *keys: str, stand_in: Any) -> Any:
    """The value the platform runs with for a setting: the first of ``keys`` (names of the same
    thing in different models, e.g. ``instance_concurrency`` / ``session_concurrency``) that the
    settings set, else what the deployer sends when it is unset (the model's ``sizing_defaults``),
    else ``stand_in`` — the emulator's own value where the platform picks one."""
    model = type(settings)
    for key in keys:
        if key in model.model_fields and getattr(settings, key) is not None:
            return getattr(settings, key)
    for key in keys:
        if key in model.sizing_defaults:
            return model.sizing_defaults[key]
    return stand_in
