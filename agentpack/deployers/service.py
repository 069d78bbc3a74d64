"""The deployment commands as functions: what ``agentpack deploy | list | status | rollback |
destroy | logs | stop`` and the Python deploy managers call.

Each function takes the project directory (where ``agentpack.toml`` and
``.agentpack/deployments.json`` live) and a deployment's name, finds the deployment in the
state file, builds the target's deployer from the project's settings (endpoint overrides
included) and the region the deployment lives in, and records what changed.  Changes to one
deployment are serialised by its operation lock.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentpack.deployers.errors import DeployConfigError
from agentpack.deployers.pipeline import Deployer, DeployOutcome
from agentpack.deployers.request import DeployOptions, Progress, deployer_class, no_progress, prepare
from agentpack.deployers.state import Deployment, DeploymentStore

if TYPE_CHECKING:
    import httpx

    from agentpack.target_settings import TargetSettings

SAMPLE_BODY = {"input": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]}


def project_settings(project: Path, target: str) -> TargetSettings:
    """The project's ``[targets.<target>]`` settings, or the target's defaults when there is no config."""
    from agentpack.builders.config import project_settings as settings_of

    return settings_of(project, target)


def make_deployer(
    target: str, settings: TargetSettings, project: Path, *, region: str | None = None, progress: Progress = no_progress
) -> Deployer:
    return deployer_class(target)(settings, region=region, progress=progress, project=project)


def deployer_for(project: Path, deployment: Deployment, progress: Progress = no_progress) -> Deployer:
    return make_deployer(
        deployment.target,
        project_settings(project, deployment.target),
        project,
        region=deployment.region,
        progress=progress,
    )


def find(project: Path, name: str, target: str | None = None) -> Deployment:
    """The deployment called ``name`` (of ``target``); a clear error when there is none or several."""
    store = DeploymentStore(project)
    found = store.find(name, target)
    if not found:
        where = f" on {target}" if target else ""
        known = ", ".join(sorted({d.name for d in store.all()})) or "none yet"
        raise DeployConfigError(
            f"no deployment named {name!r}{where} in {store.path} (deployed here: {known}); deploy it first or pass --project"
        )
    if len(found) > 1:
        targets = " and ".join(d.target for d in found)
        raise DeployConfigError(f"{name!r} is deployed to {targets}; say which with --target")
    return found[0]


# -- deploy -------------------------------------------------------------------------------------------
def deploy(
    project: Path, target: str, options: DeployOptions = DeployOptions(), *, progress: Progress = no_progress
) -> DeployOutcome:
    """Check, build and publish the project to ``target`` and record the deployment (the steps are
    in ``deployers/pipeline.py``); the outcome's ``seconds`` is the whole command's time."""
    started = time.perf_counter()
    project = Path(project).resolve()
    request = prepare(project, target, options, progress=progress)
    store = DeploymentStore(project)

    def waiting() -> None:
        progress("wait", f"another command is changing {request.target}/{request.name}; waiting for it")

    with store.operation_lock(request.target, request.name, on_wait=waiting):
        previous = store.get(request.target, request.name)
        region = getattr(request.settings, "region", None) or (previous.region if previous else None)
        deployer = make_deployer(request.target, request.settings, project, region=region, progress=progress)
        if previous is not None and previous.region and deployer.region and previous.region != deployer.region:
            raise DeployConfigError(
                f"{request.target}/{request.name} is deployed in {previous.region}, not {deployer.region}: `agentpack destroy "
                f"{request.name}` first, or deploy to the new region under another --name"
            )
        request.build()
        outcome = deployer.deploy(request, previous)
        outcome.warnings = [*request.warnings, *outcome.warnings]
        if outcome.action != "unchanged" or previous is None or previous.url != outcome.deployment.url:
            store.put(outcome.deployment)
    outcome.seconds = time.perf_counter() - started
    return outcome


def describe(outcome: DeployOutcome, project: Path | None = None) -> dict[str, Any]:
    """The deploy's result as JSON (``--json`` and the Python API): nothing secret, env masked."""
    deployment = outcome.deployment
    return {
        "deploy_id": deployment.deploy_id,
        "target": deployment.target,
        "name": deployment.name,
        "url": deployment.url,
        "action": outcome.action,
        "uploaded": outcome.uploaded,
        "version": deployment.version,
        "previous_version": outcome.previous_version,
        "sha256": deployment.sha256,
        "region": deployment.region,
        "auth": deployment.auth,
        "env": deployment.masked_env(),
        "seconds": round(outcome.seconds, 3),
        "warnings": outcome.warnings,
        "curl": curl_line(deployment),
    }


def curl_line(deployment: Deployment) -> str:
    if deployment.auth not in ("anonymous", "NONE"):
        return f'agentpack invoke {deployment.name} "hello"   # requests must be signed ({deployment.auth}); invoke signs them'
    body = json.dumps(SAMPLE_BODY, separators=(",", ":"))
    return f"curl -N {deployment.url.rstrip('/')}/process -H 'Content-Type: application/json' -d '{body}'"


# -- the other commands ---------------------------------------------------------------------------------
def list_deployments(project: Path) -> list[Deployment]:
    return DeploymentStore(project).all()


@dataclass
class Status:
    deployment: Deployment
    platform: dict[str, Any]

    @property
    def drift(self) -> list[str]:
        """Where the platform disagrees with what agentpack recorded (someone changed it elsewhere)."""
        found = []
        if not self.platform.get("exists"):
            return [self.platform.get("detail") or "it no longer exists"]
        version = self.platform.get("version")
        if version is not None and self.deployment.version is not None and str(version) != str(self.deployment.version):
            found.append(f"serves version {version}, agentpack deployed {self.deployment.version}")
        url = self.platform.get("url")
        if url and url != self.deployment.url:
            found.append(f"answers at {url}, agentpack recorded {self.deployment.url}")
        return found

    def to_json(self) -> dict[str, Any]:
        record = self.deployment.to_json()
        record["env"] = self.deployment.masked_env()
        return {"deployment": record, "platform": self.platform, "drift": self.drift}


def status(project: Path, name: str, target: str | None = None) -> Status:
    deployment = find(project, name, target)
    return Status(deployment, deployer_for(Path(project), deployment).status(deployment))


def rollback(
    project: Path, name: str, target: str | None = None, to: str | None = None, progress: Progress = no_progress
) -> tuple[Deployment, str]:
    """Point the deployment back at ``to`` (default: the version before the one serving); returns it and the version left."""
    project = Path(project).resolve()
    store = DeploymentStore(project)
    deployment = find(project, name, target)
    with store.operation_lock(deployment.target, deployment.name):
        deployment = find(project, name, deployment.target)
        left = deployment.version or "?"
        versions = ", ".join(r.version for r in deployment.releases) or "none"
        if to is not None:
            release = deployment.release(to)
            if release is None:  # a unique prefix of a version id names it (local ids are 12 characters)
                matches = list(dict.fromkeys(r.version for r in deployment.releases if r.version.startswith(to)))
                if len(matches) > 1:
                    raise DeployConfigError(
                        f"--to {to} matches versions {', '.join(matches)} of {name}; give more of the version id"
                    )
                release = deployment.release(matches[0]) if matches else None
            if release is None:
                raise DeployConfigError(
                    f"version {to} of {name} was not deployed from this project (versions, oldest first: {versions})"
                )
        else:
            release = deployment.previous_release()
            if release is None and len(deployment.releases) > 1:
                raise DeployConfigError(
                    f"nothing older to roll back to: {name} serves version {left}, the oldest deployed from this "
                    f"project (versions, oldest first: {versions}); `--to VERSION` serves a newer one again"
                )
            if release is None:
                raise DeployConfigError(
                    f"nothing to roll back to: {name} has served only version {left} since agentpack deployed it"
                )
        if release.version == deployment.version:
            raise DeployConfigError(f"{name} already serves version {release.version}")
        progress("route", f"{deployment.target}/{name}: version {left} → {release.version}")
        deployer = deployer_for(project, deployment, progress)
        deployment = deployer.rollback(deployment, release.version)
        deployment.version, deployment.sha256 = release.version, release.sha256
        store.put(deployment)
    return deployment, left


def destroy(
    project: Path, name: str, target: str | None = None, progress: Progress = no_progress
) -> tuple[Deployment, bool]:
    """Remove what the deploys created and forget the deployment; returns it and whether anything was left to remove."""
    project = Path(project).resolve()
    store = DeploymentStore(project)
    deployment = find(project, name, target)
    with store.operation_lock(deployment.target, deployment.name):
        deployer = deployer_for(project, deployment, progress)
        progress("destroy", f"removing {deployment.target}/{name}")
        existed = deployer.destroy(deployment)
        store.remove(deployment.target, deployment.name)
    return deployment, existed


def stop_service(project: Path, name: str, target: str | None = None) -> tuple[Deployment, bool]:
    """End a local deployment's process (it stays listed, ``deploy`` starts it again)."""
    project = Path(project).resolve()
    store = DeploymentStore(project)
    deployment = find(project, name, target)
    deployer = deployer_for(project, deployment)
    stop = getattr(deployer, "stop", None)
    if stop is None:
        raise DeployConfigError(
            f"{deployment.target} deployments have no process to stop: give --session (and --user) to stop a run, "
            f"or `agentpack destroy {name}` to remove the deployment"
        )
    with store.operation_lock(deployment.target, deployment.name):
        stopped = stop(deployment)
        store.put(deployment)
    return deployment, stopped


def logs(
    project: Path, name: str, target: str | None = None, *, since_seconds: float = 3600, follow: bool = False
) -> Iterator[str]:
    deployment = find(project, name, target)
    return deployer_for(Path(project), deployment).logs(deployment, since_seconds=since_seconds, follow=follow)


@dataclass
class Endpoint:
    """Where to send requests for a deployment (or a bare URL) and how to sign them."""

    url: str
    auth: httpx.Auth | None = None
    name: str | None = None
    target: str | None = None


def endpoint(project: Path, name_or_url: str, target: str | None = None) -> Endpoint:
    """A deployment's URL and request signer; a URL is used as it is (signed when it is a known deployment's)."""
    project = Path(project).resolve()
    if name_or_url.startswith(("http://", "https://")):
        url = name_or_url.rstrip("/")
        try:
            known = [d for d in DeploymentStore(project).all() if d.url.rstrip("/") == url]
        except Exception:
            known = []
        if not known:
            return Endpoint(url)
        deployment = known[0]
    else:
        deployment = find(project, name_or_url, target)
    auth = None
    if deployment.auth not in ("anonymous", "NONE"):
        auth = deployer_for(project, deployment).request_auth(deployment)
    return Endpoint(deployment.url.rstrip("/"), auth, deployment.name, deployment.target)
