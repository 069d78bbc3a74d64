"""``agentpack.toml`` (or ``[tool.agentpack]`` in pyproject.toml), validated with errors that name the key.

The ``[targets.<name>]`` tables are validated by the settings model of each target's row in
``agentpack.targets``; ``config.targets[name]`` (or ``target_settings(config, name)``) is that
model — its defaults when the table is absent — which emulators and deployers read as they are.
The lookups every command makes live here once: the project's config with a target's row and
settings (:func:`load_target`), a target's settings whether or not there is a project
(:func:`project_settings`), and settings with a command's flags over them (:func:`with_overrides`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, create_model, field_validator

from agentpack.builders.errors import ProjectError
from agentpack.target_settings import TargetSettings
from agentpack.targets import TARGETS, Target, get_target

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONFIG_FILE = "agentpack.toml"


class _TargetTablesBase(BaseModel):
    """The ``[targets]`` tables: one field per row of ``TARGETS``, looked up by target name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def __getitem__(self, name: str) -> TargetSettings:
        if name not in TARGETS:
            raise KeyError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}")
        settings: TargetSettings = getattr(self, name)
        return settings

    def __contains__(self, name: object) -> bool:
        """Whether the config has a ``[targets.<name>]`` table (every target has settings anyway)."""
        return name in self.model_fields_set

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self else default  # noqa: SIM401 (this is get itself)


#: Built from the table, so a new row needs no change here.
TargetTables = create_model(  # type: ignore[call-overload]
    "TargetTables",
    __base__=_TargetTablesBase,
    **{name: (row.settings, Field(default_factory=row.settings)) for name, row in TARGETS.items()},
)


class ProjectConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    app: str
    name: str | None = None
    python: str | None = None
    requirements: str | None = None
    include: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)
    #: ship .pyc compiled by the target's Python (when this host has it)
    bytecode: bool = True
    #: pack agentpack's chat page (served at /ui where AGENTPACK_UI=1); left out by default
    ui: bool = False
    targets: TargetTables = Field(default_factory=TargetTables)
    _source: str = PrivateAttr(default="")

    @property
    def source(self) -> str:
        """The file this config came from, for messages."""
        return self._source

    @field_validator("python")
    @classmethod
    def _python(cls, value: str | None) -> str | None:
        if value is not None and (value.count(".") != 1 or not all(p.isdigit() for p in value.split("."))):
            raise ValueError('must look like "3.12"')
        return value

    @field_validator("app")
    @classmethod
    def _app(cls, value: str) -> str:
        if not value.strip():
            raise ValueError('must name the app, e.g. "app.py:agent_app"')
        return value.strip()


def target_settings(config: ProjectConfig, target: str) -> TargetSettings:
    """The validated settings of ``target`` (its model's defaults when the config has no table)."""
    return config.targets[target]


def load_target(project: Path, target: str) -> tuple[ProjectConfig, Target, TargetSettings]:
    """The project's config, the row of ``target`` and its settings; ProjectError naming the fix."""
    config, _ = load_config(project)
    try:
        row = get_target(target)
    except KeyError as exc:
        raise ProjectError(f"--target {target}: {exc.args[0]}") from None
    return config, row, target_settings(config, row.name)


def project_settings(project: Path | None, target: str) -> TargetSettings:
    """The ``[targets.<target>]`` settings of ``project``; the target's defaults when there is no
    project (a bare artifact) or its config cannot be read (a deployment outliving its config)."""
    if project is not None:
        try:
            config, _ = load_config(project)
        except ProjectError:
            pass
        else:
            return target_settings(config, target)
    defaults: TargetSettings = get_target(target).parse_settings()
    return defaults


def with_overrides(settings: TargetSettings, updates: dict[str, Any], what: str) -> TargetSettings:
    """``settings`` re-validated with ``updates`` over them, so the model's rules apply to flags
    as they do to the config; ProjectError ``"<what>: <where>: <the rule>"`` when one breaks
    them (``where`` left out when ``what`` is the flag that set the key, e.g. ``--env``)."""
    if not updates:
        return settings
    try:
        return type(settings).model_validate({**settings.model_dump(exclude_unset=True), **updates})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(part) for part in first["loc"]]
        message = str(first["msg"]).removeprefix("Value error, ")
        if loc and what.startswith("--") and loc[0] in updates:  # the flag already says where
            loc = loc[1:]
        where = ".".join(loc)
        raise ProjectError(f"{what}: {where}: {message}" if where else f"{what}: {message}") from None


def _location(loc: tuple[Any, ...]) -> str:
    if len(loc) >= 2 and loc[0] == "targets":
        key = ".".join(str(part) for part in loc[2:])
        return f"[targets.{loc[1]}]" + (f" {key}" if key else "")
    return ".".join(str(part) for part in loc) or "(top level)"


def _describe(error: ValidationError, source: str) -> str:
    """The first problem as one line: where, what was given, and the fix."""
    first = error.errors()[0]
    loc = tuple(first["loc"])
    where = _location(loc)
    message = first["msg"].removeprefix("Value error, ")
    kind = first["type"]
    if kind == "extra_forbidden" and len(loc) == 2 and loc[0] == "targets":
        return f"{source}: [targets.{loc[1]}]: unknown target {loc[1]!r}; targets are {', '.join(TARGETS)}"
    if kind == "extra_forbidden" and len(loc) == 3 and loc[0] == "targets":
        allowed = sorted(TARGETS[str(loc[1])].settings.model_fields)
        return f"{source}: [targets.{loc[1]}] does not take {loc[2]}; it takes {', '.join(allowed)}"
    if kind == "extra_forbidden":
        return f"{source}: {where} is not a known key (check its spelling)"
    if kind == "missing":
        return f"{source}: {where} is required"
    if kind == "string_type":
        message = 'must be a string; quote it ("...")'
    elif kind in ("int_type", "int_parsing", "int_from_float"):
        message = "must be a whole number"
    elif kind in ("float_type", "float_parsing"):
        message = "must be a number"
    elif kind in ("bool_type", "bool_parsing"):
        message = "must be true or false"
    elif kind in ("dict_type", "model_type"):
        message = "must be a table ([...] or {...})"
    elif kind == "list_type":
        message = 'must be a list, e.g. ["A", "B"]'
    given = first.get("input")
    shown = f" = {json.dumps(given, ensure_ascii=False)}" if isinstance(given, (str, int, float, bool)) else ""
    return f"{source}: {where}{shown}: {message}"


def load_config(project: Path) -> tuple[ProjectConfig, str]:
    """Read and validate the project's config; returns it with the file it came from (also ``config.source``)."""
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
        raise ProjectError(
            f"{project}: no {CONFIG_FILE} (or [tool.agentpack] in pyproject.toml); run `agentpack init {project}` to create one"
        )
    try:
        config = ProjectConfig.model_validate(data)
    except ValidationError as exc:
        raise ProjectError(_describe(exc, source)) from None
    config._source = source
    return config, source
