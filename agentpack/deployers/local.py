"""Serve an app in the background of the current process, for scripts, notebooks and tests.

``await app.deploy(LocalDeployManager(port=8090))`` returns once the server answers, with
its URL; ``await manager.stop()`` shuts it down gracefully (the app's lifespan exits).
The server runs in a thread with its own event loop, so a caller that blocks — a
synchronous HTTP client, a notebook cell — never deadlocks it.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any, Optional


class DeployError(RuntimeError):
    """The server did not start (port taken, start-up failed) or did not stop in time."""


class LocalDeployManager:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8090,
        startup_timeout: float = 30.0,
        shutdown_timeout: float = 30.0,
        **uvicorn_options: Any,
    ) -> None:
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self.shutdown_timeout = shutdown_timeout
        self.uvicorn_options = uvicorn_options
        self.deploy_id: Optional[str] = None
        self.url: Optional[str] = None
        self._server: Any = None
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and bool(self._server and self._server.started)

    def _serve(self) -> None:
        try:
            asyncio.run(self._server.serve())
        except BaseException as exc:  # reported to the caller waiting in start()
            self._error = exc

    def start(self, app: Any) -> dict[str, str]:
        """Start serving ``app`` and wait until it accepts connections (blocking form of deploy)."""
        import uvicorn

        if self.is_running:
            raise DeployError(f"already serving at {self.url}; stop() it first")
        # Streams still open at shutdown get a few seconds, then their runs are cancelled.
        options = {"log_level": "warning", "lifespan": "on", "timeout_graceful_shutdown": 5, **self.uvicorn_options}
        config = uvicorn.Config(app, host=self.host, port=self.port, **options)
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # the caller owns the signals
        self._error = None
        self._thread = threading.Thread(target=self._serve, name=f"agentpack-local-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self._server.started:
            if not self._thread.is_alive() or self._server.should_exit:
                self._thread.join(timeout=1)
                raise DeployError(f"the server on {self.host}:{self.port} did not start: {self._error or 'see the log above'}")
            if time.monotonic() > deadline:
                self._server.should_exit = True
                raise DeployError(f"the server on {self.host}:{self.port} did not start within {self.startup_timeout}s")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{'127.0.0.1' if self.host == '0.0.0.0' else host}:{port}"
        self.deploy_id = uuid.uuid4().hex
        return {"deploy_id": self.deploy_id, "url": self.url}

    def shutdown(self) -> None:
        """Stop serving (blocking form of stop); the app's lifespan shutdown runs first."""
        if self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=self.shutdown_timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout=5)
            raise DeployError(f"the server at {self.url} did not stop within {self.shutdown_timeout}s")
        self._thread = None

    async def deploy(self, app: Any, **_: Any) -> dict[str, str]:
        """Serve ``app`` in the background; returns ``{"deploy_id", "url"}`` once it answers."""
        return await asyncio.to_thread(self.start, app)

    async def stop(self) -> None:
        await asyncio.to_thread(self.shutdown)

    def __enter__(self) -> "LocalDeployManager":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
