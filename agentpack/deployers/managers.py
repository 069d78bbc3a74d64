"""The Python deploy API: ``await app.deploy(FCDeployManager(...))`` and friends.

Each manager publishes the *project* an app belongs to — built into the same artifact and
published by the same deployer as ``agentpack deploy --target T`` — and answers
``{"deploy_id", "url", ...}`` like AgentScope Runtime's managers, with ``url`` the address
where the agent answers (not a console page).  The project is ``project_dir`` when given,
else the directory holding ``agentpack.toml`` above the file that defines the app object,
else the current directory.  Keyword arguments of the constructor are settings of the
target's ``[targets.<t>]`` table (``region=``, ``memory=``, ``env=``…) and override it.

``stop(deploy_id)`` removes the deployment, as AgentScope Runtime's ``stop`` does for cloud
targets, and answers ``{"success", "message", "details"}``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import warnings
from pathlib import Path
from typing import Any, ClassVar

from agentpack.deployers.request import DeployOptions

#: ``deploy()`` keywords AgentScope Runtime's managers take that mean nothing here: agentpack
#: deploys the project's artifact, whose requirements and entry come from the project itself.
_PROJECT_DECIDES = frozenset(
    {
        "runner", "endpoint_path", "protocol_adapters", "requirements", "extra_packages", "cmd", "skip_upload",
        "external_whl_path", "custom_endpoints", "agent_source", "mode", "broker_url", "backend_url", "stream",
        "request_model", "response_type", "before_start", "after_finish", "app_name", "agent_id", "agent_desc",
        "telemetry_enabled",
    }
)  # fmt: skip
#: Constructor arguments of AgentScope Runtime's managers, which hold platform settings here.
_UPSTREAM_CONFIGS = frozenset({"fc_config", "oss_config", "agentrun_config", "build_root", "state_manager"})


def _has_config(directory: Path) -> bool:
    if (directory / "agentpack.toml").is_file():
        return True
    pyproject = directory / "pyproject.toml"
    return pyproject.is_file() and "[tool.agentpack]" in pyproject.read_text(encoding="utf-8", errors="replace")


def project_of(app: Any) -> Path | None:
    """The project directory of the module that defines ``app`` (the first with agentpack.toml upward)."""
    if app is None:
        return None
    for module in list(sys.modules.values()):
        filename = getattr(module, "__file__", None)
        if not filename:
            continue
        try:
            defines = any(value is app for value in vars(module).values())
        except Exception:
            continue
        if not defines:
            continue
        for directory in Path(filename).resolve().parents:
            if _has_config(directory):
                return directory
    return None


class ArtifactDeployManager:
    """Base of the managers that publish a project's artifact (see the module doc)."""

    target: ClassVar[str] = ""

    def __init__(
        self,
        project_dir: str | Path | None = None,
        *,
        name: str | None = None,
        allow_anonymous: bool | None = None,
        wait_seconds: float = 900.0,
        **settings: Any,
    ) -> None:
        upstream = sorted(set(settings) & _UPSTREAM_CONFIGS)
        if upstream:
            raise TypeError(
                f"{type(self).__name__}({', '.join(f'{k}=' for k in upstream)}...): agentpack reads the platform's settings from "
                f"[targets.{self.target}] in agentpack.toml, or from keywords such as region=, memory=, env= (see docs/deploy.md)"
            )
        self.project_dir = Path(project_dir) if project_dir is not None else None
        #: what every deploy() of this manager asks for (its keywords add the name and variables)
        self.options = DeployOptions(
            name=name, allow_anonymous=allow_anonymous, wait_seconds=wait_seconds, settings_overrides=settings
        )
        #: the id of the last deployment (``"<target>:<name>"``, stable across redeploys)
        self.deploy_id: str | None = None
        self._project: Path | None = None

    def _resolve_project(self, app: Any, project_dir: str | Path | None = None) -> Path:
        chosen = project_dir or self.project_dir
        if chosen is not None:
            return Path(chosen).resolve()
        return project_of(app) or Path.cwd()

    async def deploy(self, app: Any = None, **kwargs: Any) -> dict[str, Any]:
        """Build and publish the app's project; returns ``{"deploy_id", "url", ...}`` (see the module doc)."""
        from agentpack.deployers import service

        ignored = sorted(k for k in kwargs if k in _PROJECT_DECIDES)
        unknown = sorted(
            k
            for k in kwargs
            if k not in _PROJECT_DECIDES | {"environment", "deploy_name", "function_name", "project_dir"}
        )
        if unknown:
            raise TypeError(f"{type(self).__name__}.deploy() got unexpected keyword arguments {', '.join(unknown)}")
        if ignored:
            warnings.warn(
                f"{type(self).__name__}.deploy({', '.join(f'{k}=' for k in ignored)}...) has no effect: agentpack deploys the project's "
                "artifact (its requirements.txt and agentpack.toml decide what goes in)",
                UserWarning,
                stacklevel=2,
            )
        project = self._resolve_project(app, kwargs.get("project_dir"))
        self._project = project
        options = dataclasses.replace(
            self.options,
            name=kwargs.get("deploy_name") or kwargs.get("function_name") or self.options.name,
            env=dict(kwargs.get("environment") or {}),
        )
        outcome = await asyncio.to_thread(service.deploy, project, self.target, options)
        self.deploy_id = outcome.deployment.deploy_id
        return {**service.describe(outcome), "success": True, "message": f"{outcome.action}: {outcome.deployment.url}"}

    def _locate(self, deploy_id: str | None) -> tuple[Path, str, str]:
        wanted = deploy_id or self.deploy_id
        if not wanted or ":" not in wanted:
            raise ValueError(f'deploy id {wanted!r}: give the deploy_id deploy() returned ("{self.target}:<name>")')
        target, _, name = wanted.partition(":")
        return self._project or self._resolve_project(None), target, name

    async def stop(self, deploy_id: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """Remove the deployment; never raises for an expected outcome (answers ``success: False`` saying why)."""
        from agentpack.deployers import service
        from agentpack.deployers.errors import DeployConfigError, PlatformError

        try:
            project, target, name = self._locate(deploy_id)
            deployment, existed = await asyncio.to_thread(service.destroy, project, name, target)
        except (ValueError, DeployConfigError, PlatformError) as exc:
            return {
                "success": False,
                "message": f"Failed to stop deployment: {exc}",
                "details": {"deploy_id": deploy_id or self.deploy_id},
            }
        message = "Deployment removed" if existed else "Deployment was already gone; its record is removed"
        return {
            "success": True,
            "message": message,
            "details": {"deploy_id": deployment.deploy_id, "url": deployment.url},
        }

    async def rollback(self, deploy_id: str | None = None, to: str | None = None) -> dict[str, Any]:
        from agentpack.deployers import service

        project, target, name = self._locate(deploy_id)
        deployment, left = await asyncio.to_thread(service.rollback, project, name, target, to)
        return {
            "deploy_id": deployment.deploy_id,
            "url": deployment.url,
            "version": deployment.version,
            "previous_version": left,
        }

    async def status(self, deploy_id: str | None = None) -> dict[str, Any]:
        from agentpack.deployers import service

        project, target, name = self._locate(deploy_id)
        found = await asyncio.to_thread(service.status, project, name, target)
        return found.to_json()


class FCDeployManager(ArtifactDeployManager):
    """Deploys to Function Compute 3.0 (``[targets.fc]``)."""

    target = "fc"


class AgentRunDeployManager(ArtifactDeployManager):
    """Deploys to AgentRun (``[targets.agentrun]``)."""

    target = "agentrun"


class LambdaDeployManager(ArtifactDeployManager):
    """Deploys to AWS Lambda (``[targets.lambda]``)."""

    target = "lambda"


class LocalProcessDeployManager(ArtifactDeployManager):
    """Serves the project's artifact from a detached process on this machine (``[targets.local]``);
    ``LocalDeployManager`` serves an app object in a thread instead."""

    target = "local"


class ModelstudioDeployManager(ArtifactDeployManager):
    """Deploys to a Model Studio (Bailian) high-code agent (``[targets.modelstudio]``).

    Takes AgentScope Runtime's constructor keywords: ``modelstudio_config`` (its ``workspace_id``
    and ``endpoint`` become the settings ``workspace`` and ``endpoint``; its keys are not used —
    credentials come from the standard places), and ``oss_config``, ``build_root`` and
    ``state_manager``, which mean nothing here (the upload goes through the workspace's temporary
    storage lease, the build is the project's, the state is ``.agentpack/deployments.json``).
    ``deploy(agent_desc=..., telemetry_enabled=...)`` set ``description`` and ``telemetry``.
    """

    target = "modelstudio"

    def __init__(
        self,
        project_dir: str | Path | None = None,
        *,
        oss_config: Any = None,
        modelstudio_config: Any = None,
        build_root: Any = None,
        state_manager: Any = None,
        **settings: Any,
    ) -> None:
        for keyword, value in (
            ("oss_config", oss_config),
            ("build_root", build_root),
            ("state_manager", state_manager),
        ):
            if value is not None:
                warnings.warn(
                    f"ModelstudioDeployManager({keyword}=...) has no effect: the artifact goes through the workspace's "
                    "temporary storage lease, is built from the project, and its record is .agentpack/deployments.json",
                    UserWarning,
                    stacklevel=2,
                )
        if modelstudio_config is not None:
            for upstream, ours in (("workspace_id", "workspace"), ("endpoint", "endpoint")):
                value = getattr(modelstudio_config, upstream, None) or (
                    modelstudio_config.get(upstream) if isinstance(modelstudio_config, dict) else None
                )
                if value and ours not in settings:
                    settings[ours] = value
        super().__init__(project_dir, **settings)

    async def deploy(self, app: Any = None, **kwargs: Any) -> dict[str, Any]:
        overrides = dict(self.options.settings_overrides)
        if kwargs.get("agent_desc") is not None:
            overrides["description"] = kwargs.pop("agent_desc")
        if kwargs.get("telemetry_enabled") is not None:
            overrides["telemetry"] = bool(kwargs.pop("telemetry_enabled"))
        self.options = dataclasses.replace(self.options, settings_overrides=overrides)
        return await super().deploy(app, **kwargs)
