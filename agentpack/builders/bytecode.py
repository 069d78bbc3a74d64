"""Precompiled bytecode: ``.pyc`` written by the target's own Python, so a cold start does not compile.

Each ``.pyc`` is compiled in *unchecked-hash* mode (PEP 552): its header holds a hash of the
source instead of a timestamp, and Python loads it without looking at the source's mtime.
So builds stay byte-identical, and a read-only code directory (FC's ``/code``, Lambda's
``/var/task``) is served without compiling or writing anything.  Python reads only ``.pyc``
files with its own cache tag (``__pycache__/x.cpython-312.pyc``) and magic number, so only the
target's interpreter can make them; where it is not on this host the build ships none.

Output is deterministic: one process compiles the files in a fixed order, with
``PYTHONHASHSEED=0`` (set constants are marshalled in iteration order, which depends on it).
The name a ``.pyc`` records for its source is the path relative to its import root; Python
replaces it with the real path when it loads the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from agentpack.builders.cache import digest, publish_dir, write_atomic
from agentpack.builders.errors import BuildError
from agentpack.builders.interpreters import Interpreter

_WORKER = r"""
import json, py_compile, sys
failed = []
for source, dfile, cfile in json.load(sys.stdin):
    try:
        py_compile.compile(source, cfile=cfile, dfile=dfile, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    except Exception as exc:  # a syntax error for this Python, a file that is not UTF-8, ...
        message = str(exc).strip().splitlines()
        failed.append([dfile, message[-1] if message else type(exc).__name__])
json.dump(failed, sys.stdout)
"""


@dataclass
class Compiled:
    """``.pyc`` files by their path in the artifact's import root, and sources that did not compile."""

    files: dict[str, bytes] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)


def pyc_path(source: str, cache_tag: str) -> str:
    """``pkg/mod.py`` -> ``pkg/__pycache__/mod.cpython-312.pyc``."""
    directory, _, name = source.rpartition("/")
    return f"{directory + '/' if directory else ''}__pycache__/{name[:-3]}.{cache_tag}.pyc"


def _compile(interpreter: Interpreter, jobs: list[tuple[str, str, str]]) -> list[list[str]]:
    if not jobs:
        return []
    # Not ``-I``: it implies ``-E``, which would ignore PYTHONHASHSEED.  A clean environment,
    # ``-s`` and an empty working directory keep this host's packages out instead.
    env = {"PYTHONHASHSEED": "0", "PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8"}
    with tempfile.TemporaryDirectory(prefix="agentpack-compile-") as empty:
        result = subprocess.run(
            [interpreter.path, "-s", "-c", _WORKER],
            input=json.dumps(jobs),
            capture_output=True,
            text=True,
            env=env,
            cwd=empty,
        )
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        raise BuildError(
            f"python{interpreter.version} could not compile bytecode: {lines[-1] if lines else f'exit code {result.returncode}'}"
        )
    compiled: list[list[str]] = json.loads(result.stdout)
    return compiled


def compile_layer(interpreter: Interpreter, layer: Path, layer_key: str, cache: Path) -> Path:
    """A tree mirroring ``layer`` with the ``.pyc`` of every module in it (cached per layer and interpreter).

    ``.complete`` in the tree lists the modules that did not compile (code for another Python
    version inside some packages' tests or templates is common; those are left as source).
    """
    out = cache / "bytecode" / digest(layer_key, interpreter.bytecode_id, "layer-pyc-1")
    if (out / ".complete").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="staging-", dir=out.parent))
    try:
        sources = sorted(p.relative_to(layer).as_posix() for p in layer.rglob("*.py") if p.is_file())
        sources = [s for s in sources if not s.split("/", 1)[0].endswith((".dist-info", ".data"))]
        jobs = [(str(layer / s), s, str(staging / pyc_path(s, interpreter.cache_tag))) for s in sources]
        failed = _compile(interpreter, jobs)
        (staging / ".complete").write_text(json.dumps(failed))
        publish_dir(staging, out)
    finally:
        if staging.exists():
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
    return out


def layer_failures(compiled_layer: Path) -> list[str]:
    return [source for source, _ in json.loads((compiled_layer / ".complete").read_text())]


def compile_sources(interpreter: Interpreter, sources: dict[str, bytes], cache: Path) -> Compiled:
    """``{source path: bytes}`` -> their ``.pyc``; each is cached by (content, path, interpreter),
    so a code-only rebuild compiles only the files that changed."""
    compiled = Compiled()
    store = cache / "pyc"
    pending: dict[str, str] = {}
    for source, data in sorted(sources.items()):
        key = digest(hashlib.sha256(data).hexdigest(), source, interpreter.bytecode_id, "pyc-1")
        cached = store / f"{key}.pyc"
        if cached.is_file():
            compiled.files[pyc_path(source, interpreter.cache_tag)] = cached.read_bytes()
        else:
            pending[source] = key
    if not pending:
        return compiled
    with tempfile.TemporaryDirectory(prefix="agentpack-pyc-") as scratch:
        root = Path(scratch)
        jobs = []
        for source, key in pending.items():
            path = root / "src" / source
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(sources[source])
            jobs.append((str(path), source, str(root / "out" / f"{key}.pyc")))
        failed = {dfile for dfile, _ in _compile(interpreter, jobs)}
        for source, key in pending.items():
            if source in failed:
                compiled.failed.append(source)
                continue
            data = (root / "out" / f"{key}.pyc").read_bytes()
            write_atomic(store / f"{key}.pyc", data)
            compiled.files[pyc_path(source, interpreter.cache_tag)] = data
    return compiled
