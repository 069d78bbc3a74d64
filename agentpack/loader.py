"""Find the app object a user points at: ``path/to/file.py[:attr]`` or ``package.module:attr``."""

from __future__ import annotations

import contextvars
import importlib
import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentpack.errors import UserError

_LOADING = contextvars.ContextVar("agentpack_loading", default=False)
#: Attribute names tried, in order, when the spec names no attribute.
DEFAULT_ATTRS = ("app", "agent_app", "application")


class AppLoadError(UserError):
    """The spec does not lead to an ASGI app; the message says what to fix."""


def loading_for_cli() -> bool:
    """True while ``agentpack run`` imports the user's module (``app.run()`` must not block then)."""
    return _LOADING.get()


@contextmanager
def _loading() -> Iterator[None]:
    token = _LOADING.set(True)
    try:
        yield
    finally:
        _LOADING.reset(token)


@dataclass(frozen=True)
class AppSpec:
    module: str
    attr: str | None
    app_dir: Path | None

    @property
    def import_string(self) -> str:
        return f"{self.module}:{self.attr}"


def parse_spec(spec: str) -> AppSpec:
    """Split ``spec`` into module, attribute and the directory to import from."""
    target, _, attr_part = spec.partition(":")
    attr = attr_part or None
    if target.endswith(".py") or "/" in target or Path(target).is_file():
        path = Path(target)
        if not path.is_file():
            raise AppLoadError(f"{target}: no such file; give the path of the Python file that creates the app")
        path = path.resolve()
        return AppSpec(path.stem, attr, path.parent)
    return AppSpec(target, attr, None)


def _is_asgi(value: Any) -> bool:
    return callable(value) and not isinstance(value, type)


def _import_from(app_dir: Path, module: str) -> None:
    """Make ``import module`` find the file the user named, not a namesake.

    Many projects call their file ``app.py``: a process that loads two of them (the Python API,
    a test session) must get the second file, not the module the first one left in
    ``sys.modules``, and a directory earlier on ``sys.path`` must not shadow the one named."""
    entry = str(app_dir)
    if not sys.path or sys.path[0] != entry:
        if entry in sys.path:
            sys.path.remove(entry)
        sys.path.insert(0, entry)
    loaded = sys.modules.get(module)
    origin = getattr(loaded, "__file__", None)
    if loaded is not None and (origin is None or Path(origin).resolve().parent != app_dir):
        del sys.modules[module]


def load_app(spec: str) -> tuple[Any, AppSpec]:
    """Import the module and return ``(app, resolved spec)``; errors are :class:`AppLoadError`."""
    parsed = parse_spec(spec)
    if parsed.app_dir is not None:
        _import_from(parsed.app_dir, parsed.module)
    try:
        with _loading():
            module = importlib.import_module(parsed.module)
    except ModuleNotFoundError as exc:
        if exc.name == parsed.module:
            raise AppLoadError(
                f"cannot import {parsed.module!r}; give a file path (app.py) or an importable module"
            ) from None
        raise
    attrs = (parsed.attr,) if parsed.attr else DEFAULT_ATTRS
    for attr in attrs:
        value = getattr(module, attr, None)
        if value is not None:
            if not _is_asgi(value):
                raise AppLoadError(
                    f"{parsed.module}:{attr} is a {type(value).__name__}, not an ASGI app such as AgentApp()"
                )
            return value, AppSpec(parsed.module, attr, parsed.app_dir)
    if parsed.attr:
        raise AppLoadError(f"{parsed.module} has no attribute {parsed.attr!r}; name the variable that holds the app")
    from fastapi import FastAPI

    found = [name for name, value in vars(module).items() if isinstance(value, FastAPI)]
    if len(found) == 1:
        return getattr(module, found[0]), AppSpec(parsed.module, found[0], parsed.app_dir)
    tried = ", ".join(DEFAULT_ATTRS)
    raise AppLoadError(f"{spec}: found no app (tried {tried}); write {spec}:NAME with the variable that holds the app")
