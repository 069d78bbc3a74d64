"""Which project files go into an artifact.

By default: the whole project minus what never belongs in one — secrets (``.env``, keys),
version control, virtual environments, caches, build output — and the output directory.
``include`` globs narrow it; ``exclude`` globs remove more.  Secrets are never packed,
even when an ``include`` glob names them.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

#: Directory names never descended into.
JUNK_DIRS = {
    ".git",
    ".hg",
    ".svn",
    ".venv",
    "venv",
    ".tox",
    ".nox",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".idea",
    ".vscode",
    "node_modules",
    "dist",
    "build",
    ".eggs",
    ".agentpack",
}
#: File name patterns never packed (secrets first).
SECRET_FILES = (".env", ".env.*", "*.pem", "*.key", "id_rsa*", "id_ed25519*", ".netrc", ".npmrc", ".pypirc", "*.p12")
JUNK_FILES = ("*.pyc", "*.pyo", ".DS_Store", "*.egg-info", "agentpack.toml", "*.zip")


def _matches(name: str, patterns: tuple[str, ...] | list[str]) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def is_secret(name: str) -> bool:
    return _matches(name, SECRET_FILES)


def project_files(project: Path, include: list[str] | None, exclude: list[str], out_dir: Path) -> list[str]:
    """Relative POSIX paths of the files to pack, sorted."""
    project = project.resolve()
    out = out_dir.resolve()
    chosen: list[str] = []
    for root, dirs, files in os.walk(project):
        here = Path(root)
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in JUNK_DIRS
            and not (here / d / "pyvenv.cfg").exists()  # a virtual environment by another name
            and (here / d).resolve() != out
            and not d.endswith(".egg-info")
        )
        for name in files:
            if is_secret(name) or _matches(name, JUNK_FILES):
                continue
            relative = (here / name).relative_to(project).as_posix()
            if include is not None and not any(fnmatch.fnmatch(relative, p) or relative == p for p in include):
                continue
            if _matches(relative, exclude) or _matches(name, exclude):
                continue
            chosen.append(relative)
    return sorted(chosen)
