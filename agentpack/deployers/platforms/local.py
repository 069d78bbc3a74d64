"""``agentpack deploy --target local``: the artifact served by a detached process on this machine.

Unlike :class:`agentpack.deployers.local.LocalDeployManager`, which serves an app object in a
thread of the caller, this serves the *built artifact*: it is unpacked under
``.agentpack/local/<name>/versions/<sha>/code`` and its ``bootstrap`` started in a session of
its own with the artifact's Python from a bare environment (the one ``agentpack emulate``
uses, so nothing of the host's site-packages leaks in), ``PORT`` set to the ``port`` setting,
and the deployment's environment.  The deploy returns once ``GET /readiness`` answers 200; the
process outlives the command, its output goes to ``.agentpack/local/<name>/server.log``, and
``stop`` / ``destroy`` / a redeploy end it (SIGTERM to its process group — the app's graceful
shutdown ends open streams with their terminal event — then SIGKILL).  A version is an
unpacked artifact; the last few stay on disk so ``rollback`` restarts the previous one.

Under faults the state file and the processes agree:

- the server runs under :data:`agentpack.processes.WATCHDOG`, the leader of its process group
  (its pid is the one recorded): when the server crashes, is stopped or is killed, the watchdog
  writes how it ended to ``server.log`` and ends the group, so nothing the server started
  outlives it; a group whose leader died anyway is ended by the next stop, redeploy or destroy;
- a redeploy whose new version does not start (or is interrupted with Ctrl+C) starts the old
  version again with the *old* variables and records its new pid at once; a first deploy that
  fails leaves no record and no files;
- starts on one port are serialised machine-wide (:func:`agentpack.processes.port_lock`), so of
  two deploys under different names on one port one wins and the other says which deployment
  holds the port;
- the state is written as soon as a new process is ready, before anything else can interrupt.

The values of the deployment's variables are never in ``deployments.json``; the local target
keeps them in ``.agentpack/local/<name>/environment.json`` (mode 0600, this machine's business
like the process itself), which is what a restart, a rollback and a failed redeploy start the
old version with — on any system, where reading a process's environment needs Linux's /proc.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentpack.builders.artifact import remove_unpacked as remove_tree
from agentpack.deployers.errors import DeployConfigError, PlatformError
from agentpack.deployers.pipeline import Deployer, Plan
from agentpack.deployers.request import DeployRequest
from agentpack.deployers.state import STATE_DIR, Deployment, DeploymentStore, now
from agentpack.processes import (
    WATCHDOG,
    child_env,
    end_leftover_group,
    end_process_group,
    interrupts_deferred,
    listening_sockets,
    port_lock,
    process_environ,
    process_group,
    process_start,
    signal_group,
    terminate_as_interrupt,
)

if TYPE_CHECKING:
    from agentpack.target_settings import LocalSettings

#: Unpacked versions kept per deployment (the newest ones; rollback needs them).
KEEP_VERSIONS = 5
READY_TIMEOUT = 120.0
STOP_GRACE = 15.0


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


class LocalProcessDeployer(Deployer):
    target = "local"
    name_setting = None
    scales_out = False
    exact = frozenset({"env"})
    publishes = False

    settings: LocalSettings

    def __init__(self, settings: LocalSettings, **options: Any) -> None:
        options["region"] = None  # this machine
        super().__init__(settings, **options)

    def root(self, name: str) -> Path:
        return self.project / STATE_DIR / "local" / name

    # -- the process ----------------------------------------------------------------------------------
    def running(self, deployment: Deployment) -> bool:
        pid = deployment.resource.get("pid")
        if not pid:
            return False
        started = process_start(int(pid))
        # a pid that is gone has no start time: never "running", whatever the record holds
        return started is not None and started == deployment.resource.get("started")

    def _stop_process(self, deployment: Deployment) -> bool:
        """End the deployment's process group; False if its leader was not running (whatever the
        group left behind — a crashed server's children — is killed all the same)."""
        pid = deployment.resource.get("pid")
        if not pid:
            return False
        pid = int(pid)
        if not self.running(deployment):
            end_leftover_group(pid, deployment.resource.get("started"))
            return False
        return end_process_group(pid, lambda: process_start(pid) is not None, grace=STOP_GRACE, poll=0.05)

    # -- the deployment's variables (see the module doc) -----------------------------------------------
    def _environment_file(self, name: str) -> Path:
        return self.root(name) / "environment.json"

    def _save_environment(self, name: str, variables: dict[str, str]) -> None:
        path = self._environment_file(name)
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".environment.", suffix=".tmp")
        try:
            os.fchmod(handle, 0o600)
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(variables, out)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def _environment(self, deployment: Deployment) -> dict[str, str] | None:
        """The variables the deployment's process was started with; None when unknown."""
        try:
            saved = json.loads(self._environment_file(deployment.name).read_text(encoding="utf-8"))
            if isinstance(saved, dict) and sorted(saved) == sorted(deployment.env_keys):
                return {str(k): str(v) for k, v in saved.items()}
        except (OSError, ValueError):
            pass
        live = process_environ(int(deployment.resource["pid"])) if self.running(deployment) else {}
        if all(key in live for key in deployment.env_keys):
            return {key: live[key] for key in deployment.env_keys}
        return None

    def _holder(self, port: int, besides: str) -> str:
        """Which local deployment of this project serves on ``port`` (for the error), if any."""
        try:
            others = [d for d in DeploymentStore(self.project).all() if d.target == self.target and d.name != besides]
        except Exception:
            return "another program"
        for other in others:
            if int(other.resource.get("port") or 0) == port and self.running(other):
                return f"local deployment {other.name!r} (pid {other.resource.get('pid')})"
        return "another program"

    def _unpack(self, request: DeployRequest, version: str) -> tuple[Path, bool]:
        """The version's code directory, and whether it was unpacked now (False: already there)."""
        from agentpack.builders.artifact import unpack

        directory = self.root(request.name) / "versions" / version
        code = directory / "code"
        if (code / "bootstrap").exists() and (directory / ".complete").exists():
            return code, False
        remove_tree(directory)
        directory.mkdir(parents=True)
        assert request.artifact is not None
        unpack(request.artifact, directory)
        (directory / ".complete").write_text(request.sha256)
        return code, True

    def _start(
        self, name: str, code: Path, python_version: str, port: int, variables: dict[str, str]
    ) -> dict[str, Any]:
        """Start ``code`` on ``port`` under the watchdog and wait until it is ready.

        Callers hold :func:`port_lock` for ``port``.  Anything that goes wrong before the
        process is ready — Ctrl+C included — ends its whole group: nothing is left running.
        """
        from agentpack.builders.errors import ProjectError
        from agentpack.builders.interpreters import bare_python

        try:
            python = bare_python(python_version)
        except ProjectError as exc:
            raise DeployConfigError(str(exc)) from None
        if not _port_free(port):
            raise DeployConfigError(
                f"port {port} is in use by {self._holder(port, name)}; "
                "set [targets.local] port to a free one (or destroy what holds it)"
            )
        log_path = self.root(name) / "server.log"
        env = {
            **child_env(python, HOME=os.environ.get("HOME", "/tmp"), AGENTPACK_PYTHON=python, PORT=str(port)),
            **variables,
        }
        process: subprocess.Popen[bytes] | None = None
        try:
            with log_path.open("ab") as log, interrupts_deferred():  # never a child nobody holds
                log.write(f"--- {now()} starting {code.parent.name} on port {port}\n".encode())
                log.flush()
                process = subprocess.Popen(
                    [python, "-I", "-c", WATCHDOG, str(code / "bootstrap")],
                    cwd=code,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            started = process_start(process.pid)
            self._await_ready(process, port, log_path)
            self._save_environment(name, variables)
        except BaseException:  # Ctrl+C or a failure before the state records it: leave nothing running
            if process is not None:
                signal_group(process.pid, signal.SIGKILL)
                process.wait()
            raise
        return {"pid": process.pid, "started": started, "port": port, "log": str(log_path), "code_dir": str(code)}

    def _await_ready(self, process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        """Until ``GET /readiness`` answers — from *this* process: where the system says who
        listens (Linux), the port must be its group's, and the process must still run."""
        import httpx

        url = _url(port)
        deadline = time.monotonic() + READY_TIMEOUT
        last = "no answer"
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise PlatformError(
                    "ProcessExited",
                    f"the app exited before it was ready (port {port}); its output ends with:\n{_tail(log_path)}",
                )
            try:
                answer = httpx.get(f"{url}/readiness", timeout=2)
                if answer.status_code in (200, 404):  # 404: an app that is not an AgentApp (no probe), but serving
                    sockets = listening_sockets(process_group(process.pid))
                    if process.poll() is None and (sockets is None or any(p == port for _, p in sockets)):
                        return
                    last = f"port {port} answered, but not from this process"
                else:
                    last = f"{answer.status_code} {answer.text[:200]}"
            except httpx.HTTPError as exc:
                last = str(exc) or type(exc).__name__
            time.sleep(0.1)
        raise PlatformError(
            "NotReady",
            f"GET {url}/readiness did not answer 200 within {READY_TIMEOUT:g} s (last: {last}); "
            f"output:\n{_tail(log_path)}",
        )

    # -- the pipeline's hooks: a version is an unpacked artifact, the route is the process on the port --
    def desired(self, plan: Plan) -> dict[str, Any]:
        return {"port": plan.request.settings.port, "env": plan.variables}

    def find(self, plan: Plan) -> dict[str, Any] | None:
        """The previous deployment's process: whether it runs, its port and the values of its variables."""
        previous = plan.previous
        if previous is None:
            return None
        running = self.running(previous)
        live = (self._environment(previous) or {}) if running else {}
        return {
            "running": running,
            "port": previous.resource.get("port"),
            "env": {key: live.get(key) for key in previous.env_keys},
        }

    def code_differs(self, plan: Plan) -> bool:
        assert plan.previous is not None and plan.current is not None
        return plan.previous.sha256 != plan.request.sha256 or not plan.current["running"]

    def serving_url(self, plan: Plan) -> str | None:
        return _url(plan.request.settings.port)

    def upload(self, plan: Plan) -> str:
        request, previous = plan.request, plan.previous
        self.progress(
            "upload",
            f"unpacking {request.artifact.name if request.artifact else 'the artifact'} into {self.root(request.name)}",
        )
        plan.facts["code"], plan.uploaded = self._unpack(request, _version(request))
        return "created" if previous is None else "updated" if previous.sha256 != request.sha256 else "restarted"

    def publish(self, plan: Plan) -> str:
        return _version(plan.request)

    def route(self, plan: Plan, version: str) -> str:
        """Stop the previous process and start this version's on the port, then record it at once.

        If the new version does not start (or Ctrl+C interrupts), the old one is started again
        with its own variables and its new pid recorded; a first deploy leaves nothing behind.
        """
        request, previous = plan.request, plan.previous
        port = request.settings.port
        store = DeploymentStore(self.project)
        with terminate_as_interrupt(), port_lock(port):
            old_variables = self._environment(previous) if previous is not None and self.running(previous) else None
            was_running = previous is not None and self._stop_process(previous)
            self.progress("start", f"starting it on port {port} with Python {request.python}")
            try:
                plan.facts["process"] = self._start(
                    request.name, plan.facts["code"], request.python, port, plan.variables
                )
            except BaseException:
                if previous is None:
                    remove_tree(self.root(request.name))
                else:
                    if was_running and old_variables is not None and previous.resource.get("code_dir"):
                        self._restart(previous, old_variables)  # put the old one back, as it was
                    store.put(previous)  # the pid that runs now (or a dead one: status says stopped)
                raise
            store.put(self.record(plan, version, _url(port)))  # at once, and before the port is free to others
        return _url(port)

    def resource(self, plan: Plan) -> dict[str, Any]:
        return {**plan.facts["process"], "python": plan.request.python}

    def record(self, plan: Plan, version: str, url: str) -> Deployment:
        deployment = super().record(plan, version, url)
        self._prune(deployment)
        return deployment

    # -- the other commands -----------------------------------------------------------------------------
    def _restart(self, deployment: Deployment, variables: dict[str, str]) -> None:
        """Start the deployment's recorded code again (the caller holds the port's lock)."""
        try:
            code = Path(deployment.resource["code_dir"])
            deployment.resource.update(
                self._start(
                    deployment.name,
                    code,
                    deployment.resource.get("python") or deployment.python,
                    int(deployment.resource["port"]),
                    variables,
                )
            )
        except Exception:
            pass  # the deploy's own error is the one to report

    def _prune(self, deployment: Deployment) -> None:
        keep = {r.version for r in deployment.releases[-KEEP_VERSIONS:]} | {deployment.version}
        versions = self.root(deployment.name) / "versions"
        for directory in versions.iterdir() if versions.is_dir() else []:
            if directory.name not in keep:
                remove_tree(directory)

    def status(self, deployment: Deployment) -> dict[str, Any]:
        import httpx

        running = self.running(deployment)
        ready = False
        if running:
            try:
                ready = httpx.get(f"{deployment.url}/readiness", timeout=2).status_code == 200
            except httpx.HTTPError:
                ready = False
        return {
            "exists": running,
            "state": ("ready" if ready else "running (not ready)") if running else "stopped",
            "pid": deployment.resource.get("pid") if running else None,
            "version": deployment.version,
            "url": deployment.url,
            "log": deployment.resource.get("log"),
            "detail": ""
            if running
            else f"the process is not running{self._how_it_ended(deployment)}; "
            "`agentpack deploy --target local` starts it again",
        }

    def _how_it_ended(self, deployment: Deployment) -> str:
        """`` (the server was killed by signal SIGKILL)``: the watchdog's last word in the log, if any."""
        marker = "--- agentpack: the server "
        last = [line for line in _tail(Path(deployment.resource.get("log") or "")).splitlines() if marker in line]
        if not last:
            return ""
        words = last[-1].split(marker, 1)[1].split(";", 1)[0]  # "(pid 42) was killed by signal SIGKILL"
        return f" (the server {words.split(') ', 1)[-1]})"

    def stop(self, deployment: Deployment) -> bool:
        stopped = self._stop_process(deployment)
        deployment.status = "stopped"
        return stopped

    def rollback(self, deployment: Deployment, version: str) -> Deployment:
        code = self.root(deployment.name) / "versions" / version / "code"
        if not (code / "bootstrap").exists():
            raise DeployConfigError(
                f"version {version} of {deployment.name} is no longer on disk (the last {KEEP_VERSIONS} are kept); deploy it again"
            )
        keep = self._environment(deployment)
        if keep is None:
            raise DeployConfigError(
                f"{deployment.name}'s environment (values are never in the state file) is unknown; "
                "check out the earlier code and `agentpack deploy --target local` it instead"
            )
        port = int(deployment.resource["port"])
        store = DeploymentStore(self.project)
        with terminate_as_interrupt(), port_lock(port):
            was_running = self._stop_process(deployment)
            try:
                started = self._start(
                    deployment.name, code, deployment.resource.get("python") or deployment.python, port, keep
                )
            except BaseException:  # the version rolled back to does not start: the one serving before comes back
                if was_running and deployment.resource.get("code_dir"):
                    self._restart(deployment, keep)
                store.put(deployment)
                raise
            deployment.resource.update(started, code_dir=str(code))
            deployment.status = "deployed"
            store.put(deployment)  # the new pid at once (the caller then records the version)
        return deployment

    def destroy(self, deployment: Deployment) -> bool:
        stopped = self._stop_process(deployment)
        root = self.root(deployment.name)
        existed = root.exists()
        remove_tree(root)
        return stopped or existed

    def logs(self, deployment: Deployment, *, since_seconds: float = 3600, follow: bool = False) -> Iterator[str]:
        path = Path(deployment.resource.get("log") or self.root(deployment.name) / "server.log")
        if not path.exists():
            return
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            while True:
                line = handle.readline()
                if line:
                    yield line.rstrip("\n")
                    continue
                if not follow:
                    return
                time.sleep(0.2)


def _version(request: DeployRequest) -> str:
    """A local version is the unpacked artifact, named by its sha256."""
    return request.sha256[:12]


def _url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"
