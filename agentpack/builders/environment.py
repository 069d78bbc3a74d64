"""The environment a function gets on its platform: ``[targets.<t>] env``, the values of the
secrets it names (from the shell, else the project's ``.env``; never from the artifact), and
``AGENTPACK_REDIS_URL`` from ``redis_url``.  Deploy and emulate read it the same way, so a
secret missing here fails before anything is uploaded or started."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def read_dotenv(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of a ``.env`` file (``export`` prefixes, comments and quotes allowed)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key.strip()] = value
    return values


def secret_values(project: Path | None, shell: Mapping[str, str] | None = None) -> dict[str, str]:
    """Where secrets' values come from: the project's ``.env``, overridden by the shell."""
    values = read_dotenv(project / ".env") if project is not None else {}
    values.update(os.environ if shell is None else shell)
    return values
