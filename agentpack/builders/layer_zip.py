"""The dependency part of artifacts, zipped once per (layer, placement, slim, bytecode) and reused.

An artifact is a copy of this zip with agentpack, the project's files and the manifest
appended, so a code-only rebuild never recompresses the dependencies.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from agentpack.builders import zipper
from agentpack.builders.cache import digest, file_sha256, write_atomic

_SLIM_DIRS = {"__pycache__", "tests", "test", "testing", "docs", "doc", "examples", "benchmarks"}
_SLIM_FILES = (".pyc", ".pyo", ".pyi", ".c", ".h", ".pxd", ".pyx")


def slim_away(relative: str) -> bool:
    """Whether ``--slim`` drops this dependency file; ``*.dist-info`` always stays (importlib.metadata)."""
    parts = relative.split("/")
    if parts[0].endswith(".dist-info"):
        return False
    return any(p in _SLIM_DIRS for p in parts[1:-1]) or relative.endswith(_SLIM_FILES)


def _source_of(pyc: str) -> str:
    """``a/__pycache__/b.cpython-312.pyc`` -> ``a/b.py``."""
    directory, _, name = pyc.rpartition("/")
    parent = directory.rpartition("/")[0] if directory.endswith("__pycache__") else directory
    return f"{parent + '/' if parent else ''}{name.split('.', 1)[0]}.py"


@dataclass
class LayerZip:
    path: Path
    hashes: dict[str, str]  # path in the artifact -> sha256
    sizes: dict[str, int]  # path in the artifact -> bytes
    largest: list[dict[str, Any]]  # [{"package", "bytes"}], largest first
    import_check: str | None  # the outcome of the import check, once one ran on an artifact with this layer

    def record_import_check(self, outcome: str) -> None:
        meta_path = self.path.with_suffix(".json")
        meta = json.loads(meta_path.read_text())
        meta["import_check"] = outcome
        write_atomic(meta_path, json.dumps(meta))
        self.import_check = outcome


def layer_zip(layer: Path, deps_dir: str, slim: bool, cache: Path, compiled: Path | None = None) -> LayerZip:
    """The zip of ``layer`` (plus the ``.pyc`` tree ``compiled``, if any) placed under ``deps_dir``."""
    key = digest(layer.name, deps_dir, slim, zipper.fixed_date(), compiled.name if compiled else None, "zip-2")
    zip_path = cache / "layer-zips" / f"{key}.zip"
    meta_path = zip_path.with_suffix(".json")
    if zip_path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        return LayerZip(zip_path, meta["hashes"], meta["sizes"], meta["largest"], meta.get("import_check"))
    files: dict[str, Path] = {}
    for path in layer.rglob("*"):
        relative = path.relative_to(layer).as_posix()
        if path.is_file() and relative != ".complete" and not (slim and slim_away(relative)):
            files[relative] = path
    if compiled is not None:
        for path in compiled.rglob("*.pyc"):
            relative = path.relative_to(compiled).as_posix()
            if _source_of(relative) in files:  # its source is packed (slim may have dropped it)
                files[relative] = path
    prefix = f"{deps_dir}/" if deps_dir else ""
    ordered = sorted(files.items())
    hashes = {prefix + rel: file_sha256(path) for rel, path in ordered}
    sizes = {rel: path.stat().st_size for rel, path in ordered}
    largest = sizes_by_distribution(layer, sizes)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=zip_path.parent, suffix=".tmp")
    os.close(handle)
    staging = Path(temp_name)
    try:
        zipper.write_zip(staging, ((prefix + rel, path, os.access(path, os.X_OK)) for rel, path in ordered))
        write_atomic(
            meta_path,
            json.dumps({"hashes": hashes, "sizes": {prefix + k: v for k, v in sizes.items()}, "largest": largest}),
        )
        os.replace(staging, zip_path)
    finally:
        staging.unlink(missing_ok=True)
    return LayerZip(zip_path, hashes, {prefix + k: v for k, v in sizes.items()}, largest, None)


def sizes_by_distribution(layer: Path, sizes: dict[str, int]) -> list[dict[str, Any]]:
    """Installed size per distribution (its RECORD says which files are its own), largest first."""
    owner: dict[str, str] = {}
    for dist in metadata.distributions(path=[str(layer)]):
        name = dist.metadata["Name"]
        for entry in dist.files or []:
            owner[entry.as_posix()] = name
    totals: dict[str, int] = {}
    for relative, size in sizes.items():
        source = _source_of(relative) if relative.endswith(".pyc") and "/__pycache__/" in f"/{relative}" else relative
        name = owner.get(source, owner.get(relative, relative.split("/", 1)[0]))
        totals[name] = totals.get(name, 0) + size
    return [{"package": n, "bytes": b} for n, b in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))]
