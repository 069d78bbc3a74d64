"""Serve an app in the background of the current process, for scripts, notebooks and tests.

``info = await app.deploy(LocalDeployManager(port=8090))`` returns once the server answers,
with its URL; ``await manager.stop(info["deploy_id"])`` shuts it down gracefully (the app's
lifespan exits) and answers ``{"success": bool, "message": str, "details": {...}}`` — the
signature and answer of AgentScope Runtime's manager, so its scripts and tests run as they
are.  The server runs in a thread with its own event loop, so a caller that blocks — a
synchronous HTTP client, a notebook cell — never deadlocks it.  Any number of managers may
serve at once, each on its own port.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
import warnings
from typing import Any, Optional

#: ``deploy()`` keywords AgentScope Runtime's deployers take that mean nothing when an app
#: object is served as it is (its own routes, handler and settings win, as they do there).
_APP_DECIDES = frozenset(
    {
        "runner",
        "endpoint_path",
        "request_model",
        "response_type",
        "stream",
        "before_start",
        "after_finish",
        "custom_endpoints",
        "protocol_adapters",
        "broker_url",
        "backend_url",
    }
)


class DeployError(RuntimeError):
    """The server did not start (port taken, start-up failed, already serving) or did not stop in time."""


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
        #: The id of the current (or last) deployment; a new one per ``deploy()``.
        self.deploy_id: Optional[str] = None
        self.url: Optional[str] = None
        self._server: Any = None
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None
        self._lock = threading.Lock()  # one start or stop at a time

    @property
    def is_running(self) -> bool:
        """Whether this manager's server is up and answering."""
        return self._thread is not None and self._thread.is_alive() and bool(self._server and self._server.started)

    @property
    def service_url(self) -> Optional[str]:
        """``http://host:port`` of the running server, else ``None``."""
        return self.url if self.is_running else None

    def _serve(self) -> None:
        try:
            asyncio.run(self._server.serve())
        except BaseException as exc:  # reported to the caller waiting in start()
            self._error = exc

    def start(self, app: Any) -> dict[str, str]:
        """Start serving ``app`` and wait until it accepts connections (blocking form of deploy)."""
        import uvicorn

        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise DeployError(
                    f"Service is already running at {self.url} (deploy id {self.deploy_id}); "
                    "stop it first (await manager.stop(deploy_id)) or use another LocalDeployManager"
                )
            # Streams still open at shutdown get a few seconds, then their runs are cancelled.
            options = {"log_level": "warning", "lifespan": "on", "timeout_graceful_shutdown": 5, **self.uvicorn_options}
            config = uvicorn.Config(app, host=self.host, port=self.port, **options)
            self._server = uvicorn.Server(config)
            self._server.install_signal_handlers = lambda: None  # the caller owns the signals
            self._error = None
            self.url = None
            self._thread = threading.Thread(target=self._serve, name=f"agentpack-local-{self.port}", daemon=True)
            self._thread.start()
            deadline = time.monotonic() + self.startup_timeout
            while not self._server.started:
                if not self._thread.is_alive() or self._server.should_exit:
                    self._thread.join(timeout=1)
                    self._thread = None
                    raise DeployError(f"the server on {self.host}:{self.port} did not start: {self._error or 'see the log above'}")
                if time.monotonic() > deadline:
                    self._server.should_exit = True
                    self._thread.join(timeout=self.shutdown_timeout)
                    self._thread = None
                    raise DeployError(f"the server on {self.host}:{self.port} did not start within {self.startup_timeout}s")
                time.sleep(0.01)
            port = self._server.servers[0].sockets[0].getsockname()[1]
            host = f"[{self.host}]" if ":" in self.host else self.host
            self.url = f"http://{'127.0.0.1' if self.host == '0.0.0.0' else host}:{port}"
            self.deploy_id = uuid.uuid4().hex
            return {"deploy_id": self.deploy_id, "url": self.url}

    def shutdown(self) -> None:
        """Stop serving (blocking form of stop); the app's lifespan shutdown runs first.

        Does nothing when nothing is served; raises :class:`DeployError` if the server
        does not stop within ``shutdown_timeout`` (it is then forced to exit).
        """
        with self._lock:
            if self._thread is None:
                return
            self._server.should_exit = True
            self._thread.join(timeout=self.shutdown_timeout)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout=5)
                raise DeployError(f"the server at {self.url} did not stop within {self.shutdown_timeout}s")
            self._thread = None

    async def deploy(self, app: Any = None, **kwargs: Any) -> dict[str, str]:
        """Serve ``app`` in the background; returns ``{"deploy_id", "url"}`` once it answers.

        Raises :class:`DeployError` (a ``RuntimeError``) whose message starts with
        "Service is already running" when this manager is already serving.
        """
        if app is None:
            raise TypeError("LocalDeployManager.deploy() needs the app to serve: await app.deploy(manager) or manager.deploy(app=app)")
        ignored = sorted(k for k in kwargs if k in _APP_DECIDES or k == "mode")
        if ignored:
            warnings.warn(
                f"LocalDeployManager.deploy({', '.join(f'{k}=' for k in ignored)}...) has no effect: "
                "the app is served as it is configured (set these on AgentApp instead)",
                UserWarning,
                stacklevel=2,
            )
        return await asyncio.to_thread(self.start, app)

    async def stop(self, deploy_id: Optional[str] = None, **kwargs: Any) -> dict[str, Any]:
        """Stop the service; ``deploy_id`` (optional) must be the one ``deploy()`` returned.

        Never raises for an expected outcome: stopping what is not running, or another
        deployment's id, answers ``{"success": False, ...}`` saying why.
        """
        details = {"deploy_id": deploy_id or self.deploy_id, "url": self.url}
        if deploy_id is not None and deploy_id != self.deploy_id:
            return {
                "success": False,
                "message": f"Deploy id {deploy_id!r} not found: this manager's deployment is {self.deploy_id!r}",
                "details": details,
            }
        if self._thread is None or not self._thread.is_alive():
            return {"success": False, "message": "Service is not running", "details": details}
        try:
            await asyncio.to_thread(self.shutdown)
        except DeployError as exc:
            return {"success": False, "message": f"Failed to stop service: {exc}", "details": {**details, "error": str(exc)}}
        return {"success": True, "message": "Service stopped successfully", "details": details}

    def __enter__(self) -> "LocalDeployManager":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
