"""What the deploy tests share: the ``agentpack`` command run as a real process, a copy of the
test project, and the stand-ins' code hook that serves uploaded bytes with ``agentpack emulate``.

The control planes are loopback stand-ins (tests/standins) or moto's server; what they are
given to run — the zip the real SDK uploaded — is started with the emulator exactly as
``agentpack emulate ARTIFACT.zip`` would, so a deployed URL streams from the deployed bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Optional

from agentpack.builders.cache import cache_root

ROOT = Path(__file__).resolve().parents[1]
DEPLOYED = ROOT / "tests" / "projects" / "deployed"
#: Variables the emulator sets itself for each instance it runs (a port per instance, its own
#: path to the exec wrapper); the platform does the same with the values the deployer sent.
EMULATOR_OWNS = {"PORT", "AWS_LAMBDA_EXEC_WRAPPER"}


def copy_project(tmp: Path, name: str = "deployed") -> Path:
    project = tmp / name
    shutil.copytree(DEPLOYED, project)
    return project


def set_version(project: Path, version: str) -> None:
    app = project / "app.py"
    text = app.read_text()
    start = text.index('VERSION = "') + len('VERSION = "')
    end = text.index('"', start)
    app.write_text(text[:start] + version + text[end:])


def cli_env(**extra: Optional[str]) -> dict[str, str]:
    """A clean environment for the CLI: no cloud credentials from the machine, the build cache kept."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALIBABA_CLOUD_", "AWS_", "AGENTPACK_"))}
    env["AGENTPACK_CACHE_DIR"] = str(cache_root())
    env["PYTHONUNBUFFERED"] = "1"
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


class CLI:
    """``agentpack ...`` as a subprocess in ``cwd`` with ``env``."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.env = env

    def run(self, *args: str, timeout: float = 300, env: Optional[dict[str, str]] = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "agentpack", *args], cwd=self.cwd, env=env or self.env, capture_output=True,
                              text=True, timeout=timeout)

    def json(self, *args: str, expect: int = 0, timeout: float = 300) -> dict[str, Any]:
        """Run with ``--json`` and return the JSON object on the last line of stdout."""
        done = self.run(*args, "--json", timeout=timeout)
        assert done.returncode == expect, f"agentpack {' '.join(args)} exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        assert lines, f"no output\nstderr:\n{done.stderr}"
        return json.loads(lines[-1])

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "agentpack", *args], cwd=self.cwd, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, bufsize=1)


class Emulations:
    """The stand-ins' ``on_code`` hook: runs the code a create/update received under the target's
    emulator and returns its URL.  One emulation per distinct code and environment, kept until
    :meth:`close` (a rollback routes back to an older one); started with ``instances``."""

    def __init__(self, target: str, scratch: Path, instances: int = 2) -> None:
        self.target = target
        self.scratch = scratch
        self.instances = instances
        self.running: dict[str, Any] = {}
        self.started: list[str] = []  # sha256 of each code started, in order
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def hook(self, name: str, zip_bytes: bytes, config: dict) -> str:
        env = config.get("environmentVariables") or {}
        timeout = config.get("timeout")
        return self.serve(zip_bytes, env, float(timeout) if timeout else None)

    def serve(self, zip_bytes: bytes, env: dict[str, str], timeout: Optional[float] = None) -> str:
        from agentpack.emulators.session import start

        digest = hashlib.sha256(zip_bytes).hexdigest()
        env = {k: v for k, v in env.items() if k not in EMULATOR_OWNS}
        key = digest + json.dumps(env, sort_keys=True)
        with self._lock:
            if key not in self.running:
                path = self.scratch / f"{digest}.zip"
                path.write_bytes(zip_bytes)
                self.running[key] = start(path, self.target, port=0, instances=self.instances, env=env, timeout=timeout, log=self.lines.append)
                self.started.append(digest)
            return self.running[key].url

    def close(self) -> None:
        with self._lock:
            for emulation in self.running.values():
                emulation.stop()
            self.running.clear()
