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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentpack.deployers import api_key
from agentpack.deployers.errors import DeployConfigError, PlatformError
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
    """The deploy's result as JSON (``--json`` and the Python API): env masked, nothing secret but
    an API key this deploy generated (``api_key``, present only then: it is shown this once)."""
    deployment = outcome.deployment
    key = outcome.api_key
    shown_key = {"api_key": key.value} if key.new and key.value else {}
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
        "api_key_source": key.source,
        **shown_key,
    }


def curl_line(deployment: Deployment) -> str:
    """How to try the deployment, in one line: ``invoke`` when requests are signed, else ``curl``
    (with the API key's header, read from ``$AGENTPACK_API_KEY``, when the deployment has a key)."""
    keyed = api_key.VARIABLE in deployment.env_keys
    if deployment.auth not in ("anonymous", "NONE"):
        also = " and sends its API key" if keyed else ""
        return f'agentpack invoke {deployment.name} "hello"   # requests must be signed ({deployment.auth}); invoke signs them{also}'
    body = json.dumps(SAMPLE_BODY, separators=(",", ":"))
    header = f' -H "Authorization: Bearer ${api_key.CLIENT_VARIABLE}"' if keyed else ""
    return f"curl -N {deployment.url.rstrip('/')}/process{header} -H 'Content-Type: application/json' -d '{body}'"


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
    #: the API key to send: the caller's, else the one the deployment's environment holds
    api_key: str | None = field(default=None, repr=False)
    #: why the deployment's key could not be read from the platform (the caller sends none then)
    key_problem: str | None = None


def endpoint(project: Path, name_or_url: str, target: str | None = None, *, key: str | None = None) -> Endpoint:
    """A deployment's URL, request signer and API key; a URL is used as it is (signed, and given its
    key, when it is a known deployment's).  ``key``: the caller's own (``--api-key`` /
    ``AGENTPACK_API_KEY``); without it, a deployment whose environment has ``AGENTPACK_API_KEYS``
    gets the first key the platform shows there — whoever may deploy may read it anyway."""
    project = Path(project).resolve()
    if name_or_url.startswith(("http://", "https://")):
        url = name_or_url.rstrip("/")
        try:
            known = [d for d in DeploymentStore(project).all() if d.url.rstrip("/") == url]
        except Exception:
            known = []
        if not known:
            return Endpoint(url, api_key=key)
        deployment = known[0]
    else:
        deployment = find(project, name_or_url, target)
    auth = None
    deployer: Deployer | None = None
    if deployment.auth not in ("anonymous", "NONE"):
        deployer = deployer_for(project, deployment)
        auth = deployer.request_auth(deployment)
    where = Endpoint(deployment.url.rstrip("/"), auth, deployment.name, deployment.target, api_key=key)
    if key is None and api_key.VARIABLE in deployment.env_keys:
        try:
            deployer = deployer or deployer_for(project, deployment)
            if not api_key.offered(deployer.settings):  # e.g. local: a key the user set and holds
                return where
            where.api_key = deployer.held_api_key(deployment)
            if where.api_key is None:
                where.key_problem = f"{deployment.target} shows no readable {api_key.VARIABLE} for {deployment.name}"
        except (DeployConfigError, PlatformError) as exc:  # no credentials, SDK or answer: ask without a key
            where.key_problem = str(exc)
    return where


def deployed_api_key(project: Path, name: str, target: str | None = None) -> tuple[Deployment, str]:
    """The API key a deployment's environment holds, read from the platform (``status --show-api-key``)."""
    project = Path(project).resolve()
    deployment = find(project, name, target)
    key = deployer_for(project, deployment).held_api_key(deployment)
    if key is None:
        has = api_key.VARIABLE in deployment.env_keys
        raise DeployConfigError(
            f"{deployment.target}/{name} has no {api_key.VARIABLE} that the platform shows"
            + (
                " (it shows the value masked: read it in the platform's console)"
                if has
                else f"; it has no API key (give it one with [targets.{deployment.target}] api_key = true, or --allow-anonymous)"
            )
        )
    return deployment, key
