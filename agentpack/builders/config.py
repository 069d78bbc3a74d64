"""``agentpack.toml`` (or ``[tool.agentpack]`` in pyproject.toml), validated with errors that name the key."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agentpack.builders.errors import ProjectError
from agentpack.targets import TARGETS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONFIG_FILE = "agentpack.toml"


class TargetSettings(BaseModel):
    """Per-target settings; which keys a target accepts is in its row of ``agentpack.targets``."""

    model_config = ConfigDict(extra="forbid")

    region: Optional[str] = None
    function_name: Optional[str] = None
    runtime_name: Optional[str] = None
    memory: Optional[int] = Field(default=None, gt=0)
    cpu: Optional[float] = Field(default=None, gt=0)
    timeout: Optional[int] = Field(default=None, gt=0)
    port: Optional[int] = Field(default=None, gt=0, lt=65536)
    env: dict[str, str] = Field(default_factory=dict)
    role: Optional[str] = None
    arch: Optional[str] = None
    streaming: bool = False
    session_concurrency: Optional[int] = Field(default=None, gt=0)
    idle_timeout: Optional[int] = Field(default=None, gt=0)


class ProjectConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    app: str
    name: Optional[str] = None
    python: Optional[str] = None
    requirements: Optional[str] = None
    include: Optional[list[str]] = None
    exclude: list[str] = Field(default_factory=list)
    targets: dict[str, TargetSettings] = Field(default_factory=dict)

    @field_validator("python")
    @classmethod
    def _python(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and (value.count(".") != 1 or not all(p.isdigit() for p in value.split("."))):
            raise ValueError('must look like "3.12"')
        return value

    @field_validator("app")
    @classmethod
    def _app(cls, value: str) -> str:
        if not value.strip():
            raise ValueError('must name the app, e.g. "app.py:agent_app"')
        return value.strip()

    @field_validator("targets")
    @classmethod
    def _targets(cls, value: dict[str, TargetSettings]) -> dict[str, TargetSettings]:
        for name, settings in value.items():
            if name not in TARGETS:
                raise ValueError(f"unknown target {name!r}; targets are {', '.join(TARGETS)}")
            allowed = set(TARGETS[name].settings)
            extra = sorted(k for k in settings.model_fields_set if k not in allowed)
            if extra:
                raise ValueError(f"[targets.{name}] does not take {', '.join(extra)}; it takes {', '.join(sorted(allowed))}")
        return value


def _describe(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "is not a known key (check its spelling)"
    elif first["type"] == "missing":
        message = "is required"
    return f"{source}: {location} {message}"


def load_config(project: Path) -> tuple[ProjectConfig, str]:
    """Read and validate the project's config; returns it with the file it came from."""
    if not project.is_dir():
        raise ProjectError(f"{project}: not a directory; give the project directory (the one with agentpack.toml)")
    toml_file = project / CONFIG_FILE
    pyproject = project / "pyproject.toml"
    data: Any = None
    source = ""
    try:
        if toml_file.is_file():
            source = str(toml_file)
            data = tomllib.loads(toml_file.read_text(encoding="utf-8"))
        elif pyproject.is_file():
            source = f"{pyproject} [tool.agentpack]"
            data = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {}).get("agentpack")
    except tomllib.TOMLDecodeError as exc:
        raise ProjectError(f"{source.split(' ')[0]}: not valid TOML ({exc}); fix the syntax") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProjectError(f"{source or project}: cannot be read ({exc})") from None
    if data is None:
        raise ProjectError(f"{project}: no {CONFIG_FILE} (or [tool.agentpack] in pyproject.toml); run `agentpack init {project}` to create one")
    try:
        return ProjectConfig.model_validate(data), source
    except ValidationError as exc:
        raise ProjectError(_describe(exc, source)) from None
