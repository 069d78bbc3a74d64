"""A built artifact as a file: its manifest, and the zip unpacked the way a platform mounts it.

The builder writes the manifest (:data:`MANIFEST`, the zip's last entry); ``agentpack emulate``
reads it to know the target and the Python, and unpacks the zip read-only as ``/code`` is —
so does the ``local`` target's deployer, which serves the same unpacked tree.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import zipfile
from pathlib import Path
from typing import Any

from agentpack.builders.errors import ProjectError

#: The manifest's name in the zip: target, arch, python, entry files, every file's sha256.
MANIFEST = "agentpack-manifest.json"


def read_manifest(artifact: Path) -> dict[str, Any]:
    """The manifest of ``artifact``; ProjectError when it is not an agentpack artifact."""
    try:
        with zipfile.ZipFile(artifact) as archive:
            manifest: dict[str, Any] = json.loads(archive.read(MANIFEST))
            return manifest
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise ProjectError(
            f"{artifact}: not an agentpack artifact ({exc}); build one with `agentpack build --target ...`"
        ) from None


def unpack(artifact: Path, destination: Path) -> Path:
    """Extract into ``destination/code`` with the archive's file modes, then make the tree
    read-only (as ``/code`` is); returns the code directory."""
    code = destination / "code"
    code.mkdir(parents=True)
    with zipfile.ZipFile(artifact) as archive:
        for info in archive.infolist():
            target = (code / info.filename).resolve()
            if code.resolve() not in target.parents and target != code.resolve():
                raise ProjectError(f"{artifact}: entry {info.filename!r} points outside the artifact")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, target.open("wb") as out:
                shutil.copyfileobj(source, out)
            mode = (info.external_attr >> 16) & 0o777
            os.chmod(target, (mode or 0o644) & 0o555)
    for root, dirs, _ in os.walk(code):
        for name in dirs:
            os.chmod(Path(root) / name, 0o555)
    os.chmod(code, 0o555)
    return code


def make_writable(path: Path) -> None:
    """Undo :func:`unpack`'s read-only modes (before deleting the tree)."""
    for root, dirs, files in os.walk(path):
        os.chmod(root, 0o755)
        for name in dirs:
            os.chmod(Path(root) / name, 0o755)
        for name in files:
            try:
                os.chmod(Path(root) / name, os.stat(Path(root) / name).st_mode | stat.S_IWUSR)
            except OSError:
                pass


def remove_unpacked(path: Path) -> None:
    """Delete a tree :func:`unpack` made (nothing when it is not there)."""
    if path.exists():
        make_writable(path)
        shutil.rmtree(path, ignore_errors=True)
