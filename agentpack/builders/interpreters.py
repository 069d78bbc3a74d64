"""The target's own Python on this host, when there is one (PATH, pyenv shims, pyenv versions).

A build uses it three ways: pip runs under it (so environment markers see the right Python),
it compiles the shipped bytecode (only it writes its own ``.pyc`` format), and it imports the
packed dependencies as a check.  Where it is missing, each step says so instead.  An artifact
runs locally (``agentpack emulate``, the ``local`` target) under :func:`bare_python`: a virtual
environment of that Python with nothing installed.  :func:`describe_interpreter` is the one
probe of an interpreter (version, machine, bytecode format, pip), remembered in the cache.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentpack.builders.errors import ProjectError

#: pip's ``install --report`` (what it chose, with archive hashes) needs 22.2 or later
MIN_PIP = (22, 2)

_PROBE = """
import importlib.util, json, platform, sys
try:
    from importlib.metadata import version
    pip = version("pip")
except Exception:
    pip = None
print(json.dumps({
    "executable": sys.executable,
    "version": "%d.%d" % sys.version_info[:2],
    "full_version": platform.python_version(),
    "implementation": sys.implementation.name,
    "cache_tag": sys.implementation.cache_tag,
    "magic": importlib.util.MAGIC_NUMBER.hex(),
    "pip": pip,
    "machine": platform.machine(),
}))
"""
#: Names the probe's answer in the cache: a new field makes a new key, so old answers are not trusted.
_PROBE_VERSION = 2


@dataclass(frozen=True)
class Interpreter:
    """One CPython on this host and what a build needs to know about it."""

    path: str
    version: str  # "3.12"
    full_version: str  # "3.12.1"
    cache_tag: str  # "cpython-312": the ``__pycache__/<name>.<tag>.pyc`` it reads
    magic: str  # hex of importlib.util.MAGIC_NUMBER: the .pyc format it reads
    pip: str | None  # its pip's version, None without pip
    machine: str = ""  # its CPU as wheel tags spell it: "x86_64", "aarch64"

    @property
    def pip_usable(self) -> bool:
        if not self.pip:
            return False
        try:
            return tuple(int(part) for part in self.pip.split(".")[:2]) >= MIN_PIP
        except ValueError:
            return False

    @property
    def bytecode_id(self) -> str:
        """What decides the bytes of a ``.pyc`` it writes: format and compiler release."""
        return f"{self.cache_tag}-{self.magic}-{self.full_version}"


def _candidates(python: str) -> list[str]:
    """``pythonX.Y`` on PATH, then pyenv's installed versions (newest first).

    A pyenv shim is skipped: it only forwards to one of those versions (and, for a version
    that is not selected, fails after a slow shell round trip).
    """
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found = []
    on_path = shutil.which(f"python{python}")
    if on_path and Path(on_path).parent != pyenv_root / "shims":
        found.append(on_path)
    versions = pyenv_root / "versions"
    if versions.is_dir():
        found += [str(p / "bin" / f"python{python}") for p in sorted(versions.glob(f"{python}.*"), reverse=True)]
    return [c for c in found if Path(c).exists()]


def _probe(candidate: str) -> dict[str, Any] | None:
    """What ``candidate`` says about itself; remembered per binary (path, size, mtime) in the cache."""
    from agentpack.builders.cache import cache_root, write_atomic

    try:
        stat = Path(candidate).resolve().stat()
    except OSError:
        return None
    key = f"v{_PROBE_VERSION}|{Path(candidate).resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    memo = cache_root() / "interpreters.json"
    known: dict[str, dict[str, Any]]
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    try:
        probe = subprocess.run([candidate, "-I", "-c", _PROBE], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if probe.returncode != 0:
        return None
    try:
        info: dict[str, Any] = json.loads(probe.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    known[key] = info
    try:
        write_atomic(memo, json.dumps(known, indent=1, sort_keys=True))
    except OSError:  # a read-only cache only costs the next build a probe
        pass
    return info


def _interpreter(info: dict[str, Any], path: str) -> Interpreter:
    machine = str(info.get("machine") or "").lower()
    return Interpreter(
        info["executable"] or path, info["version"], info["full_version"], info["cache_tag"], info["magic"], info["pip"],
        {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine),
    )  # fmt: skip


def describe_interpreter(path: str) -> Interpreter | None:
    """What the interpreter at ``path`` says about itself (None when it does not run)."""
    info = _probe(path)
    return _interpreter(info, path) if info else None


@functools.cache
def find_target_python(python: str) -> Interpreter | None:
    """A working CPython ``python`` ("3.12") on this host, or None."""
    for candidate in _candidates(python):
        info = _probe(candidate)
        if info and info["version"] == python and info["implementation"] == "cpython":
            return _interpreter(info, candidate)
    return None


def find_interpreter(python: str) -> str | None:
    """The path of a working ``pythonX.Y`` on this host, or None."""
    found = find_target_python(python)
    return found.path if found else None


def bare_python(version: str, cache: Path | None = None) -> str:
    """A virtual environment of Python ``version`` with nothing installed (cached): the
    artifact, not the host's site-packages, is all the app can import.  ProjectError when this
    machine has no such Python."""
    from agentpack.builders.cache import cache_root

    base = find_interpreter(version)
    if base is None:
        raise ProjectError(
            f"the target runs Python {version}, which is not on this machine; install it (e.g. `pyenv install {version}`) "
            "so the artifact runs with the interpreter it was built for"
        )
    root = (cache or cache_root()) / "pythons" / version
    python = root / "bin" / "python"
    root.parent.mkdir(parents=True, exist_ok=True)
    with (root.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two emulators starting at once build it once
        if not (root / ".complete").exists():
            shutil.rmtree(root, ignore_errors=True)
            result = subprocess.run([base, "-m", "venv", "--without-pip", str(root)], capture_output=True, text=True)
            if result.returncode != 0:
                shutil.rmtree(root, ignore_errors=True)
                raise ProjectError(f"could not create a Python {version} environment: {result.stderr.strip()[-300:]}")
            (root / ".complete").write_text(base)
    return str(python)
