"""The import check: every packed distribution imports with the target's Python, from the artifact.

It runs where this host can run the target (Linux, same CPU architecture, the target's
``pythonX.Y`` found here), isolated from this host's site-packages, without writing bytecode.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

from agentpack.builders.errors import BuildError
from agentpack.builders.interpreters import Interpreter
from agentpack.targets import Target, host_arch


def top_level_modules(layer: Path) -> list[str]:
    """Importable top-level names of the distributions in ``layer`` (top_level.txt, else RECORD)."""
    names: set[str] = set()
    for dist in metadata.distributions(path=[str(layer)]):
        top_level = dist.read_text("top_level.txt")
        if top_level:
            names.update(line.strip() for line in top_level.splitlines())
            continue
        for entry in dist.files or []:
            first = entry.parts[0]
            if first.endswith((".dist-info", ".data")) or first.startswith(("_", "..")):
                continue
            names.add(first.split(".", 1)[0])
    return sorted(n for n in names if n.isidentifier() and ((layer / n).exists() or any(layer.glob(f"{n}.*"))))


def why_not_checked(arch: str, python: str, interpreter: Interpreter | None) -> str | None:
    """Why this host cannot run the check ("skipped: ..."), or None when it can."""
    if arch != host_arch() or os.uname().sysname != "Linux":
        return f"skipped: this host ({host_arch()}) cannot run {arch} code"
    if interpreter is None:
        return f"skipped: no python{python} on this host"
    return None


def check_artifact(zip_path: Path, target: Target, python: str, interpreter: Interpreter) -> str:
    """Unpack ``zip_path`` and import every packed distribution; raises BuildError naming what failed."""
    with tempfile.TemporaryDirectory(prefix="agentpack-check-") as tmp:
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(tmp)
        unpacked = Path(tmp)
        modules = top_level_modules(unpacked / target.deps_dir if target.deps_dir else unpacked)
        failure = import_modules(unpacked, target.deps_dir, modules, interpreter.path)
    if failure is not None:
        raise BuildError(f"packed dependencies do not import with python{python}: {failure}")
    return f"passed: {len(modules)} modules imported with python{python}"


def import_modules(unpacked: Path, deps_dir: str, modules: list[str], interpreter: str) -> str | None:
    """Import every module with ``interpreter``; ``None`` if it passed, else the failure."""
    code = (
        "import importlib, sys, json\n"
        f"failed = {{}}\nfor name in {modules!r}:\n"
        "    try:\n        importlib.import_module(name)\n"
        "    except Exception as exc:\n        failed[name] = f'{type(exc).__name__}: {exc}'\n"
        "print(json.dumps(failed))\n"
    )
    paths = [str(unpacked / deps_dir) if deps_dir else str(unpacked), str(unpacked)]
    env = {"PYTHONDONTWRITEBYTECODE": "1", "PATH": os.environ.get("PATH", "")}
    result = subprocess.run(
        [interpreter, "-I", "-B", "-c", f"import sys; sys.path[:0] = {paths!r}\n" + code],
        capture_output=True,
        text=True,
        env=env,
        cwd=unpacked,
    )
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        return lines[-1].strip() if lines else f"exit code {result.returncode}"
    failed = json.loads(result.stdout.strip().splitlines()[-1])
    if failed:
        return "; ".join(f"{name}: {error}" for name, error in sorted(failed.items()))
    return None
