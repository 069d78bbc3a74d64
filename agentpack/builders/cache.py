"""Where builds keep what they can reuse, and the two helpers every cache entry needs.

Entries are content-addressed (a digest of everything that decides their content) and
published atomically (written under a temporary name, then renamed), so a crash or a
concurrent build never leaves a half-written entry that a later build would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path


def cache_root() -> Path:
    """``$AGENTPACK_CACHE_DIR``, else ``$XDG_CACHE_HOME/agentpack``, else ``~/.cache/agentpack``."""
    explicit = os.environ.get("AGENTPACK_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "agentpack"


def digest(*parts: object) -> str:
    """A short, stable key for ``parts`` (anything JSON can show)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def write_atomic(path: Path, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` in one step (readers see the old or the new file, never a part)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data.encode() if isinstance(data, str) else data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def publish_dir(staging: Path, final: Path, marker: str = ".complete") -> Path:
    """Move a finished ``staging`` directory (holding ``marker``) to ``final``.

    If a concurrent build published an identical entry first, theirs is kept; a ``final``
    without its marker is a leftover of a crash and is replaced.
    """
    if final.exists() and not (final / marker).exists():
        shutil.rmtree(final, ignore_errors=True)
    try:
        os.replace(staging, final)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of a file, read in 1 MiB blocks (artifacts can be hundreds of MB)."""
    import hashlib

    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()
