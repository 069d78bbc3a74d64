"""What every target's deployer does, and the pieces they share.

A deployer is named by its row in ``agentpack.targets`` (``deployer = "module:Class"``) and
built from that target's settings.  It works create-or-update **by name**: a deploy asks the
platform what is there, uploads the code only when the artifact differs from what the
platform holds, reconfigures only when a setting differs, publishes a version and points a
stable route (FC alias, AgentRun endpoint, Lambda alias, local port) at it.  When neither
code nor configuration differs and the route already serves this artifact, the deploy is
"unchanged" and uploads nothing.  ``rollback`` points the route back at an earlier version;
``destroy`` removes everything the deploys created.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator, Optional

from agentpack import headers
from agentpack.deployers.errors import DeployConfigError, require_modules
from agentpack.deployers.request import DeployRequest, Progress, no_progress
from agentpack.deployers.state import Deployment

#: The header FC's session affinity keys on, which ``agentpack invoke`` / ``stop`` send.
SESSION_HEADER = headers.SESSION_HEADER.lower()  # FC's session affinity keys on this request header
USER_HEADER = headers.USER_HEADER.lower()
#: The stable route each deploy moves: FC and Lambda alias, AgentRun endpoint.
ROUTE = "live"


class NotOffered(DeployConfigError):
    """The platform has no such operation here (e.g. logs of a function without a log store)."""


@dataclass
class DeployOutcome:
    """What a deploy did: ``action`` is created, updated, configured, republished or unchanged."""

    deployment: Deployment
    action: str
    uploaded: bool = False
    previous_version: Optional[str] = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Deployer:
    """Base of the per-target deployers (see the module doc)."""

    target: ClassVar[str] = ""
    #: the settings field that names the resource (None: any name, e.g. local)
    name_setting: ClassVar[Optional[str]] = None
    #: whether the platform may run more than one instance (then stops need Redis)
    scales_out: ClassVar[bool] = True
    #: the top-level modules of the SDK this deployer drives (installed by ``agentpack[<target>]``)
    sdk_modules: ClassVar[tuple[str, ...]] = ()
    #: what the platform calls the thing (for messages)

    def __init__(self, settings: Any, *, region: Optional[str] = None, progress: Progress = no_progress,
                 project: Optional[Path] = None) -> None:
        require_modules(self.sdk_modules, f"the {self.target} deployer", self.target)
        self.settings = settings
        self.region = region or getattr(settings, "region", None)
        self.progress = progress
        self.project = Path(project or ".").resolve()

    # -- what each deployer implements -----------------------------------------------------------
    def deploy(self, request: DeployRequest, previous: Optional[Deployment]) -> DeployOutcome:
        raise NotImplementedError

    def status(self, deployment: Deployment) -> dict[str, Any]:
        """What the platform says about the deployment now (raises PlatformError if it cannot tell)."""
        raise NotImplementedError

    def rollback(self, deployment: Deployment, version: str) -> Deployment:
        raise NotImplementedError

    def destroy(self, deployment: Deployment) -> bool:
        """Remove what the deploys created; False when there was nothing left to remove."""
        raise NotImplementedError

    def logs(self, deployment: Deployment, *, since_seconds: float = 3600, follow: bool = False) -> Iterator[str]:
        raise NotOffered(f"{self.target} keeps no logs agentpack can read; see them in the platform's console")

    def request_auth(self, deployment: Deployment) -> Any:
        """An ``httpx.Auth`` that signs requests to ``deployment.url``, or None when none is needed."""
        return None

    def console_url(self, deployment: Deployment) -> Optional[str]:
        return None

    # -- shared helpers ----------------------------------------------------------------------------
    def variables(self, request: DeployRequest, extra: dict[str, str]) -> dict[str, str]:
        """The request's environment plus the deployer's own variables, within the platform's limit."""
        values = {**request.environment}
        for key, value in extra.items():
            values.setdefault(key, value)
        limit = getattr(type(self.settings), "env_limit_bytes", None)
        size = sum(len(k.encode()) + len(v.encode()) for k, v in values.items())
        if limit is not None and size > limit:
            own = ", ".join(sorted(extra))
            raise DeployConfigError(
                f"[targets.{self.target}]: env and secrets hold {size} bytes with the variables agentpack sets ({own}), "
                f"over the platform's {limit // 1024} KB; shorten the values or move large ones into files"
            )
        return values

    def reused_version(self, previous: Optional[Deployment], sha256: str) -> Optional[str]:
        """A version this project already published from this artifact (after a rollback, say)."""
        if previous is None:
            return None
        for release in reversed(previous.releases):
            if release.sha256 == sha256:
                return release.version
        return None


def same(desired: Any, current: Any, exact: frozenset[str] = frozenset()) -> bool:
    """Whether ``current`` (what the platform reports) already has every value of ``desired``.

    Keys ``desired`` does not name are the platform's business; maps named in ``exact`` must
    match as a whole (a variable removed from ``env`` is a change); JSON strings are compared
    by content and numbers by value (the platform may answer 1 for 1.0).
    """
    if isinstance(desired, dict):
        if not isinstance(current, dict):
            return False
        for key, want in desired.items():
            have = current.get(key)
            if key in exact:
                if (want or {}) != (have or {}):
                    return False
            elif not same(want, have, exact):
                return False
        return True
    if isinstance(desired, str) and isinstance(current, str) and desired[:1] in "{[" and current[:1] in "{[":
        try:
            return same(json.loads(desired), json.loads(current), exact)
        except ValueError:
            return desired == current
    if isinstance(desired, bool) or isinstance(current, bool):
        return desired == current
    if isinstance(desired, (int, float)) and isinstance(current, (int, float)):
        return math.isclose(float(desired), float(current), rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(desired, list) and isinstance(current, list):
        return len(desired) == len(current) and all(same(a, b, exact) for a, b in zip(desired, current))
    return desired == current
