"""The target's own Python on this host, when there is one (PATH, pyenv shims, pyenv versions).

A build uses it three ways: pip runs under it (so environment markers see the right Python),
it compiles the shipped bytecode (only it writes its own ``.pyc`` format), and it imports the
packed dependencies as a check.  Where it is missing, each step says so instead.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

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
}))
"""


@dataclass(frozen=True)
class Interpreter:
    """One CPython on this host and what a build needs to know about it."""

    path: str
    version: str  # "3.12"
    full_version: str  # "3.12.1"
    cache_tag: str  # "cpython-312": the ``__pycache__/<name>.<tag>.pyc`` it reads
    magic: str  # hex of importlib.util.MAGIC_NUMBER: the .pyc format it reads
    pip: Optional[str]  # its pip's version, None without pip

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


def _probe(candidate: str) -> Optional[dict]:
    """What ``candidate`` says about itself; remembered per binary (path, size, mtime) in the cache."""
    from agentpack.builders.cache import cache_root, write_atomic

    try:
        stat = Path(candidate).resolve().stat()
    except OSError:
        return None
    key = f"{Path(candidate).resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    memo = cache_root() / "interpreters.json"
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
        info = json.loads(probe.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    known[key] = info
    try:
        write_atomic(memo, json.dumps(known, indent=1, sort_keys=True))
    except OSError:  # a read-only cache only costs the next build a probe
        pass
    return info


@functools.lru_cache(maxsize=None)
def find_target_python(python: str) -> Optional[Interpreter]:
    """A working CPython ``python`` ("3.12") on this host, or None."""
    for candidate in _candidates(python):
        info = _probe(candidate)
        if info and info["version"] == python and info["implementation"] == "cpython":
            return Interpreter(info["executable"] or candidate, info["version"], info["full_version"], info["cache_tag"], info["magic"], info["pip"])
    return None


def find_interpreter(python: str) -> Optional[str]:
    """The path of a working ``pythonX.Y`` on this host, or None."""
    found = find_target_python(python)
    return found.path if found else None
