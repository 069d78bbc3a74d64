"""The part every emulator shares: an asyncio loop of its own in a background thread, so the
emulator's servers and processes keep running while the caller (a CLI, a test, a deployer's
stand-in) blocks, and a ``start()``/``stop()`` that are plain calls."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Optional


class EmulatorStartError(Exception):
    """The artifact did not start under the emulator: the platform's error code (when it has
    one), what went wrong, the process's exit code, its last output, and (Lambda) the error it
    reported to ``/runtime/init/error``."""

    def __init__(
        self,
        message: str,
        *,
        code: Optional[str] = None,
        exit_code: Optional[int] = None,
        output: str = "",
        init_error: Optional[dict[str, Any]] = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.exit_code = exit_code
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
    """Subclasses implement ``_start()`` and ``_stop()`` (coroutines run on the loop) and set
    :attr:`stopping`-aware behaviour; :meth:`start` raises what ``_start`` raised, after stopping."""

    thread_name = "agentpack-emulator"
    #: seconds :meth:`stop` waits for ``_stop`` (instances get their graceful shutdown first)
    stop_timeout = 60.0

    def __init__(self) -> None:
        self.stopping = False
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None

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

    def __exit__(self, *exc: Any) -> None:
        self.stop()
