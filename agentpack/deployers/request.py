"""From a project and a few flags to everything a deployer needs, checked before any platform call.

:class:`DeployOptions` is what one deploy is asked for beyond the project's own settings — the
command line's flags and the Python managers' keywords, in one place: the CLI and the managers
fill it in, ``service.deploy`` and ``prepare`` pass it on, so a new option is a new field here.
``prepare()`` reads ``agentpack.toml``, applies the overrides (``--name``, ``--env``,
``--allow-anonymous``, a manager's settings) by validating them with the target's settings
model — so a bad ``--env`` key fails with the same rule as a bad ``env`` key in the file —
resolves the secrets' values (shell, then ``.env``) and checks the whole environment against
the platform's limit.  The build comes after, in :meth:`DeployRequest.build`, so that a
deployment that cannot work (no credentials, no region, a missing secret) is refused before a
minute of dependency downloads.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentpack.deployers import api_key
from agentpack.deployers.errors import DeployConfigError

if TYPE_CHECKING:
    from agentpack.builders.config import ProjectConfig
    from agentpack.deployers.pipeline import Deployer
    from agentpack.targets import Target

#: Called with a step ("build", "upload", "configure", "wait", "publish", "route", ...) and a detail.
Progress = Callable[[str, str], None]
#: Names a local deployment may have (they become directory names: any characters but a path's).
LOCAL_NAME = re.compile(r"[^./\\\x00\s][^/\\\x00]{0,63}")


def no_progress(step: str, detail: str) -> None:
    pass


@dataclass(frozen=True)
class DeployOptions:
    """What one deploy is asked for beyond ``[targets.T]`` (see the module doc)."""

    #: the resource's name (default: the target's name setting, else the project's name)
    name: str | None = None
    #: variables for this deploy, over ``[targets.T] env`` (checked by the same rules)
    env: Mapping[str, str] = field(default_factory=dict)
    #: a public URL (True) or signed requests only (False); None: the ``allow_anonymous`` setting
    allow_anonymous: bool | None = None
    #: settings of ``[targets.T]`` to override (the Python managers' keywords: ``memory=``…)
    settings_overrides: Mapping[str, Any] = field(default_factory=dict)
    #: seconds to wait for the platform to report the deployment ready
    wait_seconds: float = 900.0
    #: upload and publish even when the platform already holds this artifact and configuration
    force: bool = False
    #: an API key for the deployment (``deployers/api_key.py``): False ``--no-api-key``, True one
    #: even for signed requests; None: the ``api_key`` setting, else only for a public URL
    api_key: bool | None = None
    #: replace the generated API key with a new one (``--rotate-api-key``)
    rotate_api_key: bool = False


@dataclass
class DeployRequest:
    """One deploy of one project to one target (see the module doc).  ``environment`` holds
    secret values: it lives in memory only and is never written or shown."""

    project: Path
    target: str
    name: str
    #: the target's own TargetSettings subclass (FCSettings, LambdaSettings…), with the command line's
    #: overrides applied; each target's hooks read their own fields from it
    settings: Any
    environment: dict[str, str] = field(repr=False)
    #: resolved: the option, else the target's setting
    allow_anonymous: bool = False
    options: DeployOptions = field(default_factory=DeployOptions)
    progress: Progress = no_progress
    warnings: list[str] = field(default_factory=list)
    # filled in by build()
    artifact: Path | None = None
    sha256: str = ""
    size_bytes: int = 0
    python: str = ""
    arch: str = ""
    built: bool = False

    @property
    def env_keys(self) -> list[str]:
        return sorted(self.environment)

    @property
    def force(self) -> bool:
        return self.options.force

    @property
    def wait_seconds(self) -> float:
        return self.options.wait_seconds

    def build(self) -> None:
        """Build (or reuse) the artifact; raises the builder's ProjectError / BuildError."""
        from agentpack.builders.build import build

        self.progress("build", f"building {self.project.name} for {self.target}")
        result = build(self.project, self.target, progress=lambda step: self.progress("build", step))
        self.artifact = Path(result.artifact)
        self.sha256 = result.sha256
        self.size_bytes = result.size_bytes
        self.python = result.python
        self.arch = result.arch
        self.built = not result.unchanged
        verb = "built" if self.built else "unchanged"
        self.progress(
            "build", f"{self.artifact.name} {verb} (sha256 {self.sha256[:12]}, {self.size_bytes / 1e6:.1f} MB)"
        )

    def zip_bytes(self) -> bytes:
        assert self.artifact is not None, "build() first"
        return self.artifact.read_bytes()


def with_overrides(settings: Any, updates: dict[str, Any], what: str) -> Any:
    """``settings`` re-validated with ``updates`` (:func:`agentpack.builders.config.with_overrides`,
    which emulate's ``--env`` uses too), its refusal as a DeployConfigError."""
    from agentpack.builders.config import with_overrides as overridden
    from agentpack.builders.errors import ProjectError

    try:
        return overridden(settings, updates, what)
    except ProjectError as exc:
        raise DeployConfigError(str(exc)) from None


def default_name(project: Path, config: ProjectConfig) -> str:
    return config.name or project.resolve().name


def prepare(
    project: Path,
    target: str,
    options: DeployOptions = DeployOptions(),
    *,
    progress: Progress = no_progress,
    shell: dict[str, str] | None = None,
) -> DeployRequest:
    """Config, overrides, name and environment, checked (see the module doc); nothing is built yet.
    ``shell``: the variables secrets are read from (default: this process's environment)."""
    from agentpack.builders.config import load_config, target_settings
    from agentpack.builders.environment import secret_values

    project = Path(project).resolve()
    config, source = load_config(project)
    row = target_row(target)
    deployer = deployer_class(target)
    settings = target_settings(config, row.name)
    settings = with_overrides(settings, dict(options.settings_overrides), f"[targets.{target}]")
    if options.env:
        settings = with_overrides(settings, {"env": {**settings.env, **options.env}}, "--env")
    allow_anonymous = options.allow_anonymous
    if allow_anonymous is not None and "allow_anonymous" in type(settings).model_fields:
        settings = with_overrides(settings, {"allow_anonymous": allow_anonymous}, "--allow-anonymous")
    elif allow_anonymous and "allow_anonymous" not in type(settings).model_fields:
        raise DeployConfigError(f"--allow-anonymous: {target} has no authentication to turn off; drop the flag")

    # the name: --name, else the target's name setting, else the project's name
    name_setting = deployer.name_setting
    configured = getattr(settings, name_setting, None) if name_setting else None
    chosen = options.name or configured or default_name(project, config)
    if name_setting:
        settings = with_overrides(
            settings,
            {name_setting: chosen},
            f"--name {chosen}" if options.name else f"the name {chosen!r} (from {source})",
        )
    elif not LOCAL_NAME.fullmatch(chosen):
        raise DeployConfigError(
            f"the name {chosen!r} cannot name a local deployment: use 1-64 characters without '/', not starting with '.' (pass --name)"
        )

    if options.api_key is not None and api_key.offered(settings):
        settings = with_overrides(
            settings, {"api_key": options.api_key}, "--no-api-key" if options.api_key is False else "api_key"
        )

    try:
        environment = settings.platform_environment(secret_values(project, shell))
    except ValueError as exc:
        raise DeployConfigError(str(exc)) from None
    api_key.check_options(options, target, settings, environment)
    anonymous = bool(getattr(settings, "allow_anonymous", False))
    request = DeployRequest(project, row.name, chosen, settings, environment, anonymous, options, progress)
    if (
        anonymous
        and api_key.offered(settings)
        and not api_key.wanted(settings, anonymous)
        and api_key.VARIABLE not in environment
    ):
        request.warnings.append(
            f"{target}/{chosen} is public and has no API key ({'--no-api-key' if options.api_key is False else 'api_key = false'}): "
            "anyone with its URL may call it"
        )
    if deployer.scales_out and not environment.get("AGENTPACK_REDIS_URL"):
        request.warnings.append(
            f"{target} may run this app on several instances, and it has no Redis for its interrupt backend: a stop or a "
            f"second request for a session can land on another instance than the run. Set [targets.{target}] redis_url = "
            '"${REDIS_URL}" (and REDIS_URL in the shell or .env) unless the app sets interrupt_redis_url itself.'
        )
    return request


def target_row(target: str) -> Target:
    """The row of ``agentpack.targets`` for ``target``; an unknown one is the user's to fix."""
    from agentpack.targets import get_target

    try:
        return get_target(target)
    except KeyError as exc:
        raise DeployConfigError(f"--target {target}: {exc.args[0]}") from None


def deployer_class(target: str) -> type[Deployer]:
    """The deployer class the targets table names for ``target``."""
    try:
        deployer: type[Deployer] = target_row(target).load("deployer")
        return deployer
    except LookupError as exc:
        raise DeployConfigError(str(exc)) from None
