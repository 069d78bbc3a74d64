"""The part every emulator shares: an asyncio loop of its own in a background thread, so the
emulator's servers and processes keep running while the caller (a CLI, a test, a deployer's
stand-in) blocks, and a ``start()``/``stop()`` that are plain calls."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Optional


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
