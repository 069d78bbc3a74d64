"""``LocalDeployManager``: an app object served in a thread of the caller, for scripts, notebooks and tests.

(The ``local`` *target* — the built artifact in a detached process, ``agentpack deploy --target
local`` — is ``agentpack.deployers.platforms.local``.)

``info = await app.deploy(LocalDeployManager(port=8090))`` returns once the server answers,
with its URL; ``await manager.stop(info["deploy_id"])`` shuts it down gracefully (the app's
lifespan exits) and answers ``{"success": bool, "message": str, "details": {...}}`` — the
signature and answer of AgentScope Runtime's manager, so its scripts and tests run as they
are.  The server runs in a thread with its own event loop, so a caller that blocks — a
synchronous HTTP client, a notebook cell — never deadlocks it.  Any number of managers may
serve at once, each on its own port.

The attributes AgentScope Runtime's tests read are kept under its names (``is_running``,
``service_url``, ``_server``, ``_server_task``, ``_app``, ``_startup_timeout``,
``_shutdown_timeout``, ``_is_server_ready``), with the same values at the same moments.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
import warnings
from typing import TYPE_CHECKING, Any

from agentpack.errors import OperationFailed

if TYPE_CHECKING:
    import uvicorn

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


class DeployError(OperationFailed, RuntimeError):
    """The server did not start (port taken, start-up failed, already serving) or did not stop in
    time.  A ``RuntimeError`` as well, as AgentScope Runtime's manager raises."""


class _AlreadyServing(DeployError):
    """A second start on a manager that is serving: reported as it is, never as a failed start-up."""


class LocalDeployManager:
    """Serves one app at a time from a background thread; see the module docstring.

    ``startup_timeout`` bounds the wait for the server to accept connections (the server is
    shut down again when it runs out); ``shutdown_timeout`` bounds a graceful stop.  Other
    keywords are uvicorn options.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8090,
        shutdown_timeout: float = 30.0,
        startup_timeout: float = 30.0,
        logger: logging.Logger | None = None,
        **uvicorn_options: Any,
    ) -> None:
        # AgentScope Runtime's order and keywords (shutdown before startup, then logger), so
        # positional calls written for it mean the same here.
        self.host = host
        self.port = port
        self.logger = logger or logging.getLogger("agentpack.local")
        # Stored once, under AgentScope Runtime's private names (its tests set them); the
        # public names are properties over these, so the two spellings can never disagree.
        self._startup_timeout = startup_timeout
        self._shutdown_timeout = shutdown_timeout
        self.uvicorn_options = uvicorn_options
        #: The id of the current (or last) deployment; a new one per ``deploy()``.
        self.deploy_id: str | None = None
        #: The address a client reaches the current (or last) server at; see ``service_url``.
        self.url: str | None = None
        #: The app being served, ``None`` when none is.
        self._app: Any = None
        #: The ``uvicorn.Server`` being served, ``None`` when none is.
        self._server: uvicorn.Server | None = None
        #: AgentScope Runtime keeps the asyncio task of a server running in the caller's loop
        #: here.  This manager never serves in the caller's loop (a caller that blocks would
        #: deadlock it), so there is no such task: it stays ``None``, for code that checks it.
        self._server_task: asyncio.Task[None] | None = None
        self._server_thread: threading.Thread | None = None
        self._running = False  # what is_running reports; see there
        self._error: BaseException | None = None
        self._lock = threading.Lock()  # one start or stop at a time

    @property
    def startup_timeout(self) -> float:
        """Seconds ``deploy()``/``start()`` waits for the server to accept connections."""
        return self._startup_timeout

    @startup_timeout.setter
    def startup_timeout(self, seconds: float) -> None:
        self._startup_timeout = seconds

    @property
    def shutdown_timeout(self) -> float:
        """Seconds ``stop()``/``shutdown()`` waits for a graceful stop before forcing it."""
        return self._shutdown_timeout

    @shutdown_timeout.setter
    def shutdown_timeout(self, seconds: float) -> None:
        self._shutdown_timeout = seconds

    @property
    def is_running(self) -> bool:
        """Whether this manager is serving: true from a successful start until its stop.

        Assignable, because AgentScope Runtime's manager keeps it as a plain attribute and its
        scripts and tests set it; an assignment changes what is reported here and by
        ``service_url``, never the server (``deploy()`` and ``stop()`` act on the server
        itself).  A server that exited on its own is reported as not running whatever was
        assigned.
        """
        thread = self._server_thread
        if thread is not None and not thread.is_alive():
            return False
        return self._running

    @is_running.setter
    def is_running(self, value: bool) -> None:
        self._running = bool(value)

    @property
    def service_url(self) -> str | None:
        """``http://host:port`` a client reaches the service at while ``is_running``, else ``None``.

        For a server this manager started, the address it really answers on: a wildcard
        host (``0.0.0.0``, ``::``) becomes loopback and port 0 the port the system picked.
        Otherwise (``is_running`` assigned) it is made from ``host`` and ``port`` as they are now.
        """
        if not self.is_running:
            return None
        if self._server_thread is not None and self.url:
            return self.url
        return self._url_for(self.port)

    def _url_for(self, port: int) -> str:
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    def _is_server_ready(self) -> bool:
        """Whether the server accepts connections: what the start-up wait polls.

        uvicorn sets ``started`` once its listening sockets exist, so from then on a client's
        connection is accepted; asking the server (rather than connecting to ``host:port``)
        also works for port 0 and for wildcard hosts.
        """
        server = self._server
        return server is not None and bool(server.started)

    def _serving(self) -> bool:
        thread = self._server_thread
        return thread is not None and thread.is_alive()

    def _refuse_if_serving(self) -> None:
        if self._serving():
            raise _AlreadyServing(
                f"Service is already running at {self.url} (deploy id {self.deploy_id}); "
                "stop it first (await manager.stop(deploy_id)) or use another LocalDeployManager"
            )

    def _serve(self, server: uvicorn.Server) -> None:
        try:
            asyncio.run(server.serve())
        except BaseException as exc:  # reported to the caller waiting in start()
            self._error = exc

    def _stop_server(self) -> bool:
        """Ask the server to exit and join its thread; ``False`` if it is still alive after that.

        Graceful first (the app's lifespan exits, open streams get uvicorn's grace period),
        within ``shutdown_timeout``; then forced, for a few more seconds.
        """
        thread, server = self._server_thread, self._server
        if thread is None or server is None:  # set and forgotten together
            return True
        server.should_exit = True
        thread.join(timeout=self._shutdown_timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5)
        return not thread.is_alive()

    def _forget_server(self) -> None:
        self._server = None
        self._server_task = None
        self._server_thread = None
        self._app = None
        self._running = False

    def _forget_if_stopped(self) -> bool:
        """Drop what a server that is not serving left behind (it may have exited on its own)."""
        with self._lock:  # not while a start or stop is under way
            if self._serving():
                return False
            self._forget_server()
            return True

    def start(self, app: Any) -> dict[str, str]:
        """Start serving ``app`` and wait until it accepts connections (blocking form of deploy).

        Raises :class:`DeployError` when this manager is already serving, when the server
        fails to start, or when it is not ready within ``startup_timeout``; in the last two
        cases nothing is left behind (the server is shut down and its thread joined).
        """
        import uvicorn

        with self._lock:
            self._refuse_if_serving()
            # Streams still open at shutdown get a few seconds, then their runs are cancelled.
            options = {"log_level": "warning", "lifespan": "on", "timeout_graceful_shutdown": 5, **self.uvicorn_options}
            config = uvicorn.Config(app, host=self.host, port=self.port, **options)
            server = uvicorn.Server(config)  # in a thread, uvicorn leaves the caller's signal handlers alone
            self._forget_server()
            self._server, self._app = server, app
            self._error = None
            self.url = None
            self._server_thread = threading.Thread(
                target=self._serve, args=(server,), name=f"agentpack-local-{self.port}", daemon=True
            )
            self._server_thread.start()
            try:
                self._wait_until_ready()
            except BaseException:
                stopped = self._stop_server()
                if stopped:
                    self._forget_server()
                raise
            self.url = self._url_for(self._bound_port(server))
            self.deploy_id = uuid.uuid4().hex
            self._running = True
            return {"deploy_id": self.deploy_id, "url": self.url}

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        thread, server = self._server_thread, self._server
        assert thread is not None and server is not None, "start() sets both first"
        while not self._is_server_ready():
            if not thread.is_alive() or server.should_exit:
                thread.join(timeout=1)
                raise DeployError(
                    f"the server on {self.host}:{self.port} did not start: {self._error or 'see the log above'}"
                )
            if time.monotonic() > deadline:
                raise DeployError(
                    f"Server did not become ready within timeout ({self._startup_timeout}s) "
                    f"on {self.host}:{self.port}; it was shut down"
                )
            time.sleep(0.01)

    def _bound_port(self, server: uvicorn.Server) -> int:
        """The port the server listens on (the system's pick when ``port`` is 0)."""
        for listener in getattr(server, "servers", None) or ():
            for sock in listener.sockets or ():
                port: int = sock.getsockname()[1]
                return port
        return self.port

    def shutdown(self) -> None:
        """Stop serving (blocking form of stop); the app's lifespan shutdown runs first.

        Does nothing when nothing is served; raises :class:`DeployError` if the server
        does not stop within ``shutdown_timeout`` (it is then forced to exit, and counts
        as still serving, so a later stop can try again).
        """
        with self._lock:
            if not self._stop_server():
                raise DeployError(f"the server at {self.url} did not stop within {self._shutdown_timeout}s")
            self._forget_server()

    async def deploy(self, app: Any = None, **kwargs: Any) -> dict[str, str]:
        """Serve ``app`` in the background; returns ``{"deploy_id", "url"}`` once it answers.

        Raises :class:`DeployError` (a ``RuntimeError``): its message starts with "Service is
        already running" when this manager is already serving, and with "Failed to deploy
        service: " when the server did not start or was not ready in time (as AgentScope
        Runtime's manager words them).
        """
        if app is None:
            raise TypeError(
                "LocalDeployManager.deploy() needs the app to serve: await app.deploy(manager) or manager.deploy(app=app)"
            )
        ignored = sorted(k for k in kwargs if k in _APP_DECIDES or k == "mode")
        if ignored:
            warnings.warn(
                f"LocalDeployManager.deploy({', '.join(f'{k}=' for k in ignored)}...) has no effect: "
                "the app is served as it is configured (set these on AgentApp instead)",
                UserWarning,
                stacklevel=2,
            )
        self._refuse_if_serving()
        try:
            return await asyncio.to_thread(self.start, app)
        except _AlreadyServing:
            raise
        except Exception as exc:
            raise DeployError(f"Failed to deploy service: {exc}") from exc

    async def stop(self, deploy_id: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """Stop the service; ``deploy_id`` (optional) must be the one ``deploy()`` returned.

        Never raises for an expected outcome: stopping what is not running, or another
        deployment's id, answers ``{"success": False, ...}`` saying why.  After a stop that
        succeeds or finds nothing running, ``is_running`` is false (even if it was assigned)
        and no server is held.
        """
        details = {"deploy_id": deploy_id or self.deploy_id, "url": self.url}
        if not self._serving() and await asyncio.to_thread(self._forget_if_stopped):
            return {"success": False, "message": "Service is not running", "details": details}
        if deploy_id is not None and deploy_id != self.deploy_id:
            return {
                "success": False,
                "message": f"Deploy id {deploy_id!r} not found: this manager's deployment is {self.deploy_id!r}",
                "details": details,
            }
        try:
            await asyncio.to_thread(self.shutdown)
        except DeployError as exc:
            return {
                "success": False,
                "message": f"Failed to stop service: {exc}",
                "details": {**details, "error": str(exc)},
            }
        return {"success": True, "message": "Service stopped successfully", "details": details}

    def __enter__(self) -> LocalDeployManager:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
