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
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator, Optional

from agentpack.deployers.base import Deployer, DeployOutcome
from agentpack.deployers.errors import DeployConfigError, PlatformError
from agentpack.deployers.request import DeployRequest
from agentpack.deployers.state import STATE_DIR, Deployment, now

#: Unpacked versions kept per deployment (the newest ones; rollback needs them).
KEEP_VERSIONS = 5
READY_TIMEOUT = 120.0
STOP_GRACE = 15.0


def _process_start(pid: int) -> Optional[str]:
    """The process's start time (field 22 of /proc/<pid>/stat), None if it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        _reap(pid)
        return None
    return fields[19]


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {key.decode(errors="replace"): value.decode(errors="replace") for key, _, value in pairs}


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def remove_tree(path: Path) -> None:
    if path.exists():
        from agentpack.emulators.session import make_writable

        make_writable(path)
        shutil.rmtree(path, ignore_errors=True)


class LocalProcessDeployer(Deployer):
    target = "local"
    name_setting = None
    scales_out = False

    def __init__(self, settings: Any, *, environ: Optional[dict[str, str]] = None, **options: Any) -> None:
        options["region"] = None
        super().__init__(settings, **options)

    def root(self, name: str) -> Path:
        return self.project / STATE_DIR / "local" / name

    # -- the process ----------------------------------------------------------------------------------
    def running(self, deployment: Deployment) -> bool:
        pid = deployment.resource.get("pid")
        return bool(pid) and _process_start(int(pid)) == deployment.resource.get("started")

    def _stop_process(self, deployment: Deployment) -> bool:
        """End the deployment's process (group); False if it was not running."""
        if not self.running(deployment):
            return False
        pid = int(deployment.resource["pid"])
        for sig, wait in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if _process_start(pid) is None:
                    return True
                time.sleep(0.05)
        return _process_start(pid) is None

    def _unpack(self, request: DeployRequest, version: str) -> tuple[Path, bool]:
        """The version's code directory, and whether it was unpacked now (False: already there)."""
        from agentpack.emulators.session import unpack

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

    def _start(self, name: str, code: Path, python_version: str, port: int, variables: dict[str, str]) -> dict[str, Any]:
        from agentpack.emulators.session import EmulationError, bare_python

        try:
            python = bare_python(python_version)
        except EmulationError as exc:
            raise DeployConfigError(str(exc)) from None
        if not _port_free(port):
            raise DeployConfigError(f"port {port} is in use by another program; set [targets.local] port to a free one")
        log_path = self.root(name) / "server.log"
        env = {
            "PATH": f"{Path(python).parent}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": os.environ.get("HOME", "/tmp"),
            "PYTHONNOUSERSITE": "1",
            "AGENTPACK_PYTHON": python,
            "PORT": str(port),
            **variables,
        }
        with log_path.open("ab") as log:
            log.write(f"--- {now()} starting {code.parent.name} on port {port}\n".encode())
            log.flush()
            process = subprocess.Popen([str(code / "bootstrap")], cwd=code, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        try:
            started = _process_start(process.pid)
            self._await_ready(process, f"http://127.0.0.1:{port}", log_path)
        except BaseException:  # Ctrl+C or a failure before the state records it: leave nothing running
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            raise
        return {"pid": process.pid, "started": started, "port": port, "log": str(log_path), "code_dir": str(code)}

    def _await_ready(self, process: subprocess.Popen, url: str, log_path: Path) -> None:
        import httpx

        deadline = time.monotonic() + READY_TIMEOUT
        last = "no answer"
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise PlatformError("ProcessExited", f"the app exited with code {process.returncode} before it was ready; "
                                    f"its output ends with:\n{_tail(log_path)}")
            try:
                answer = httpx.get(f"{url}/readiness", timeout=2)
                if answer.status_code in (200, 404):  # 404: an app that is not an AgentApp (no probe), but serving
                    return
                last = f"{answer.status_code} {answer.text[:200]}"
            except httpx.HTTPError as exc:
                last = str(exc) or type(exc).__name__
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise PlatformError("NotReady", f"GET {url}/readiness did not answer 200 within {READY_TIMEOUT:g} s (last: {last}); "
                            f"output:\n{_tail(log_path)}")

    # -- deploy and the other commands ----------------------------------------------------------------
    def deploy(self, request: DeployRequest, previous: Optional[Deployment]) -> DeployOutcome:
        started = time.perf_counter()
        port = request.settings.port
        variables = self.variables(request, {})
        if (not request.force and previous is not None and previous.sha256 == request.sha256 and self.running(previous)
                and previous.resource.get("port") == port and sorted(variables) == sorted(previous.env_keys)):
            live = _environ(int(previous.resource["pid"]))
            if all(live.get(key) == value for key, value in variables.items()):
                return DeployOutcome(previous, "unchanged", seconds=time.perf_counter() - started)
        version = request.sha256[:12]
        self.progress("upload", f"unpacking {request.artifact.name if request.artifact else 'the artifact'} into {self.root(request.name)}")
        code, unpacked = self._unpack(request, version)
        previous_version = previous.version if previous is not None else None
        was_running = previous is not None and self._stop_process(previous)
        self.progress("start", f"starting it on port {port} with Python {request.python}")
        try:
            resource = self._start(request.name, code, request.python, port, variables)
        except BaseException:
            if was_running and previous is not None and previous.resource.get("code_dir"):
                self._restart(previous, variables)  # put the old one back
            raise
        deployment = previous if previous is not None else Deployment(target=self.target, name=request.name)
        deployment.url = f"http://127.0.0.1:{port}"
        deployment.auth = "anonymous"
        deployment.env_keys = sorted(variables)
        deployment.python, deployment.arch = request.python, request.arch
        deployment.status = "deployed"
        deployment.resource = {**resource, "python": request.python}
        action = "created" if previous is None else "updated" if previous.sha256 != request.sha256 else "restarted"
        deployment.remember(version, request.sha256)
        deployment.deployed_at = now()
        self._prune(deployment)
        return DeployOutcome(deployment, action, unpacked, previous_version, seconds=time.perf_counter() - started)

    def _restart(self, deployment: Deployment, variables: dict[str, str]) -> None:
        try:
            code = Path(deployment.resource["code_dir"])
            deployment.resource.update(self._start(deployment.name, code, deployment.resource.get("python") or deployment.python,
                                                   int(deployment.resource["port"]), variables))
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
            "detail": "" if running else "the process is not running; `agentpack deploy --target local` starts it again",
        }

    def stop(self, deployment: Deployment) -> bool:
        stopped = self._stop_process(deployment)
        deployment.status = "stopped"
        return stopped

    def rollback(self, deployment: Deployment, version: str) -> Deployment:
        code = self.root(deployment.name) / "versions" / version / "code"
        if not (code / "bootstrap").exists():
            raise DeployConfigError(f"version {version} of {deployment.name} is no longer on disk (the last {KEEP_VERSIONS} are kept); deploy it again")
        variables = _environ(int(deployment.resource["pid"])) if self.running(deployment) else {}
        keep = {key: variables[key] for key in deployment.env_keys if key in variables}
        if len(keep) != len(deployment.env_keys):
            raise DeployConfigError(
                f"{deployment.name} is not running, so its environment (values are never stored) is unknown; "
                "check out the earlier code and `agentpack deploy --target local` it instead"
            )
        self._stop_process(deployment)
        deployment.resource.update(self._start(deployment.name, code, deployment.resource.get("python") or deployment.python,
                                               int(deployment.resource["port"]), keep))
        deployment.resource["code_dir"] = str(code)
        deployment.status = "deployed"
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


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"
