"""The one deploy pipeline every target runs, and what its per-target hooks share.

``agentpack deploy`` (``service.deploy``) checks the request, builds the artifact and hands both
to the target's deployer — the class the target's row in ``agentpack.targets`` names, one of
``deployers/platforms``.  Its ``deploy()`` is :meth:`Deployer.deploy` below, the same seven
steps for every target; a target fills in hooks and never changes the order.  Work is
create-or-update **by name**, so a deploy can be repeated, interrupted and run again.

Check
    ``check`` refuses what cannot work before any call: an artifact FC cannot take inline
    without a bucket, a Python the platform does not run.  The environment is held against the
    platform's size limit — with room for a key that may be generated — still before any call.
    Then the API key is settled
    (``deployers/api_key.py``: on a target that offers one, ``held_variables`` reads the
    environment the platform holds so that a key made before is sent back, not replaced), the
    environment the platform will get (the request's variables plus the target's own,
    ``own_variables``, and the key) is held against the platform's size limit, and ``desired``
    says the configuration agentpack wants, in the platform's own field names.

Find
    ``find`` asks the platform what it holds under this name: the function, the agent runtime,
    the process.  None means nothing: a first deploy, or a resource deleted outside agentpack —
    then the versions recorded for it are forgotten, as the platform forgot them.

Decide
    Nothing is changed yet.  The code is needed when ``--force`` asks, when nothing exists, or
    when the platform's code is not this artifact (``code_differs``).  The configuration
    changed when what the platform reports differs from ``desired`` (:func:`same`: keys agentpack
    does not send are the platform's business) or the API key does (its value is in no digest,
    so it is compared with the value the platform showed).  When neither, and the route already
    serves this artifact (``serving_url``), the deploy is **unchanged**: it writes nothing and
    says so.  A deploy that must write the environment while the platform shows the key only
    masked stops here (exit 2, nothing written) rather than replace the key.

Upload
    ``upload`` creates or updates the resource, with the code only when it is needed; it answers
    created, updated (new code) or configured (settings only).

Wait
    ``wait`` returns once the platform reports the resource ready (AgentRun's READY); a resource
    that fails says the platform's reason.  Lambda awaits each update inside ``upload``, because
    its next call needs it.

Publish
    ``publish`` makes the uploaded code a version.  When nothing needed uploading but the route
    serves something else (after a rollback, or a change in the console), a version this project
    already published from this artifact is reused — the deploy is **republished**.

Route
    ``route`` points the stable route at the version — FC's alias ``live`` and its HTTP trigger,
    AgentRun's endpoint ``live``, Lambda's alias and function URL, the local process's port — and
    returns the URL where the agent answers.

Record
    :meth:`Deployer.record` writes down what serves now — URL, region, auth, the variables'
    names, the version and the artifact's sha256, the platform's ids (``resource``) — in the
    Deployment ``service.deploy`` stores in ``.agentpack/deployments.json``.

The steps talk to the platform only through the target's cloud client (``deployers/clients``),
carry what they learn in a :class:`Plan`, and report progress through ``progress(step, detail)``.
``service.deploy`` times the whole command once (build included).  ``rollback`` points the route
back at an earlier version; ``destroy`` removes everything the deploys created.
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from agentpack.deployers import api_key
from agentpack.deployers.api_key import KeyPlan
from agentpack.deployers.errors import DeployConfigError, NotOffered, require_modules
from agentpack.deployers.request import DeployRequest, Progress, no_progress
from agentpack.deployers.state import Deployment, DeploymentStore, now

if TYPE_CHECKING:
    import httpx

    from agentpack.target_settings import TargetSettings
    from agentpack.targets import Target

#: The stable route each deploy moves: FC and Lambda alias, AgentRun endpoint.
ROUTE = "live"


@dataclass
class DeployOutcome:
    """What a deploy did: ``action`` is created, updated, configured, republished, restarted or
    unchanged; ``seconds`` is the whole command's time (``service.deploy`` measures it)."""

    deployment: Deployment
    action: str
    uploaded: bool = False
    previous_version: str | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: what the deploy did with the API key; holds a new key's value (printed once, never stored)
    api_key: KeyPlan = field(default_factory=lambda: KeyPlan("none"))


@dataclass
class Plan:
    """What one deploy learns on its way through the steps (see the module doc)."""

    request: DeployRequest
    #: this project's record of the deployment (None: never deployed from here)
    previous: Deployment | None
    #: the environment the platform gets; holds secret values, so it is never shown or stored
    variables: dict[str, str] = field(default_factory=dict, repr=False)
    #: the configuration agentpack wants, in the platform's field names (``desired``)
    desired: dict[str, Any] = field(default_factory=dict, repr=False)
    #: what the platform reports now, comparable with ``desired`` (None: nothing of that name)
    current: dict[str, Any] | None = None
    code_needed: bool = False
    config_changed: bool = False
    #: whether this deploy sent code (``upload`` may say otherwise, e.g. code already unpacked)
    uploaded: bool = False
    #: the target's own findings on the way (a runtime id, an OSS object, a process), for later steps
    facts: dict[str, Any] = field(default_factory=dict)
    #: what this deploy does with the API key (``deployers/api_key.py``)
    key: KeyPlan = field(default_factory=lambda: KeyPlan("none"))

    @property
    def known(self) -> dict[str, Any]:
        """The platform ids and facts recorded by the last deploy from this project."""
        return self.previous.resource if self.previous is not None else {}


class Deployer:
    """Base of the per-target deployers: the template :meth:`deploy` and its hooks (see the module doc)."""

    target: ClassVar[str] = ""
    #: the settings field that names the resource (None: any name, e.g. local)
    name_setting: ClassVar[str | None] = None
    #: whether the platform may run more than one instance (then stops need Redis)
    scales_out: ClassVar[bool] = True
    #: the top-level modules of the SDK this deployer drives (installed by ``agentpack[<target>]``)
    sdk_modules: ClassVar[tuple[str, ...]] = ()
    #: ``module:Class`` of its cloud client (``deployers/clients``), made from the region, the
    #: settings' ``endpoint`` and the environment ("": the target has no control plane)
    client: ClassVar[str] = ""
    #: maps in ``desired`` that must match as a whole (a variable removed is a change)
    exact: ClassVar[frozenset[str]] = frozenset()
    #: whether ``publish`` makes a version on the platform, announced as the step "publish" (the
    #: local target's version is the unpacked artifact: nothing to announce)
    publishes: ClassVar[bool] = True
    #: whether a resource is recorded the moment ``upload`` creates it (before it is ready), so a
    #: first deploy that fails or times out afterwards leaves a deployment that ``status``,
    #: ``destroy`` and ``list`` can see (AgentRun: a runtime can stay CREATING for minutes, billed)
    record_on_create: ClassVar[bool] = False

    def __init__(
        self,
        settings: TargetSettings,
        *,
        region: str | None = None,
        progress: Progress = no_progress,
        project: Path | None = None,
        environ: dict[str, str] | None = None,
        api: Any = None,
    ) -> None:
        """``environ``: where credentials, region and endpoint overrides are read (default: this
        process's environment); ``api``: a client to use instead of making one."""
        require_modules(self.sdk_modules, f"the {self.target} deployer", self.target)
        self.settings = settings
        self.region = region or getattr(settings, "region", None)
        self.progress = progress
        self.project = Path(project or ".").resolve()
        self.environ = environ
        if api is None and self.client:
            module, _, name = self.client.partition(":")
            api = getattr(importlib.import_module(module), name)(
                region=self.region, endpoint=getattr(settings, "endpoint", None), environ=environ
            )
        self.api = api
        self.region = getattr(api, "region", None) or self.region

    @property
    def row(self) -> Target:
        """This target's row of ``agentpack.targets``: the platform facts the deployer configures
        (adapter, lifecycle hooks, health check, session affinity)."""
        from agentpack.targets import get_target

        return get_target(self.target)

    # == the pipeline ===================================================================================
    def deploy(self, request: DeployRequest, previous: Deployment | None) -> DeployOutcome:
        """Check, find, decide, upload, wait, publish, route, record (see the module doc)."""
        plan = Plan(request, previous)
        self.check(plan)
        own = self.own_variables(request)
        self.variables(request, {**own, **api_key.room(request)})  # the size limit, before any call
        plan.key = self.settle_key(plan)
        plan.variables = self.variables(request, {**own, **plan.key.variables()})
        plan.desired = self.desired(plan)

        plan.current = self.find(plan)

        plan.code_needed = request.force or plan.current is None or self.code_differs(plan)
        plan.config_changed = (
            plan.current is None or not same(plan.desired, plan.current, self.exact) or key_changed(plan)
        )
        if not (plan.code_needed or plan.config_changed) and previous is not None and previous.sha256 == request.sha256:
            url = self.serving_url(plan)
            if url:
                previous.url = url
                return DeployOutcome(previous, "unchanged", api_key=plan.key)
        if plan.key.unreadable and self.sends_variables(plan):
            raise api_key.unreadable_error(self.target, request.name)
        said = api_key.progress_line(plan.key, f"{self.target}/{request.name}")
        if said:
            self.progress("key", said)
        previous_version = previous.version if previous is not None else None
        if plan.current is None and previous is not None:  # deleted outside agentpack: its versions went with it
            previous.releases = []

        if plan.code_needed or plan.config_changed:
            plan.uploaded = plan.code_needed
            action = self.upload(plan)
            if plan.current is None:
                self.created(plan)
            self.wait(plan)
            version = self.publish(plan)
            if self.publishes:
                self.progress("publish", f"version {version}")
        else:
            action = "republished"
            version = self.reused_version(previous, request.sha256) or self.publish(plan)

        url = self.route(plan, version)

        deployment = self.record(plan, version, url)
        return DeployOutcome(deployment, action, plan.uploaded, previous_version, api_key=plan.key)

    def settle_key(self, plan: Plan) -> KeyPlan:
        """The API key of this deploy (``deployers/api_key.py``), from what the platform holds now."""
        request = plan.request
        if not api_key.offered(request.settings):
            return KeyPlan("none")
        import os

        held = self.held_variables(plan)
        return api_key.settle(request, held, self.environ if self.environ is not None else os.environ)

    def sends_variables(self, plan: Plan) -> bool:
        """Whether this deploy writes the function's environment (then the key must be known)."""
        return plan.code_needed or plan.config_changed

    def held_api_key(self, deployment: Deployment) -> str | None:
        """The API key the deployment's environment holds (the first of ``AGENTPACK_API_KEYS``), for
        ``invoke`` and ``stop`` when the user gave none; None when there is none or it is masked."""
        held = self.deployed_variables(deployment)
        return api_key.first_key((held or {}).get(api_key.VARIABLE))

    def record(self, plan: Plan, version: str, url: str) -> Deployment:
        """The deployment as it serves now: the previous record updated, or a new one."""
        request, previous = plan.request, plan.previous
        deployment = previous if previous is not None else Deployment(target=self.target, name=request.name)
        deployment.url = url
        deployment.region = self.region
        deployment.auth = self.auth(request)
        deployment.env_keys = sorted(plan.variables)
        deployment.python, deployment.arch = request.python, request.arch
        deployment.status = "deployed"
        deployment.resource = {**plan.known, **self.resource(plan)}
        deployment.remember(version, request.sha256)
        deployment.deployed_at = now()
        return deployment

    def created(self, plan: Plan) -> None:
        """Called once ``upload`` created the resource: with ``record_on_create``, record it at once
        (status "creating", no URL or version yet); the record step completes it later."""
        if not self.record_on_create:
            return
        request = plan.request
        deployment = Deployment(target=self.target, name=request.name, region=self.region, status="creating")
        deployment.auth = self.auth(request)
        deployment.env_keys = sorted(plan.variables)
        deployment.python, deployment.arch = request.python, request.arch
        deployment.resource = {**plan.known, **self.resource(plan)}
        DeploymentStore(self.project).put(deployment)

    # == the hooks each target fills in ==================================================================
    def check(self, plan: Plan) -> None:
        """Refuse, before any call, what cannot work (raise DeployConfigError naming the fix)."""

    def held_variables(self, plan: Plan) -> dict[str, str | None] | None:
        """The environment the platform holds under ``plan.request.name`` now, as it shows it (a
        value None or ``******``: not shown); None when there is nothing of that name.  Called
        before ``find`` on targets that offer an API key; ``find`` may reuse what it read."""
        return None

    def deployed_variables(self, deployment: Deployment) -> dict[str, str | None] | None:
        """The environment of a recorded deployment as the platform shows it (None: not found)."""
        return None

    def own_variables(self, request: DeployRequest) -> dict[str, str]:
        """The variables the target sets itself (the request's own win over them)."""
        return {}

    def desired(self, plan: Plan) -> dict[str, Any]:
        """The configuration agentpack wants, as the platform reports it (without code)."""
        raise NotImplementedError

    def find(self, plan: Plan) -> dict[str, Any] | None:
        """What the platform holds under ``plan.request.name``, comparable with ``desired``; None: nothing."""
        raise NotImplementedError

    def code_differs(self, plan: Plan) -> bool:
        """Whether the code ``plan.current`` runs is not this artifact."""
        raise NotImplementedError

    def serving_url(self, plan: Plan) -> str | None:
        """The URL, when the route serves the previous version exactly as wanted; else None."""
        raise NotImplementedError

    def upload(self, plan: Plan) -> str:
        """Create or update the resource; "created", "updated" or "configured"."""
        raise NotImplementedError

    def wait(self, plan: Plan) -> None:
        """Return once the resource is ready (raise PlatformError when it failed or the deadline passed)."""

    def publish(self, plan: Plan) -> str:
        """Make what the resource runs now a version; its id."""
        raise NotImplementedError

    def route(self, plan: Plan, version: str) -> str:
        """Point the stable route at ``version``; the URL where the agent answers."""
        raise NotImplementedError

    def auth(self, request: DeployRequest) -> str:
        """How requests to the URL authenticate: "anonymous", "function" (FC signature), "AWS_IAM", …"""
        return "anonymous"

    def resource(self, plan: Plan) -> dict[str, Any]:
        """The platform's ids and facts a later command needs (merged over the recorded ones)."""
        return {}

    # == the other commands ===============================================================================
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

    def request_auth(self, deployment: Deployment) -> httpx.Auth | None:
        """An ``httpx.Auth`` that signs requests to ``deployment.url``, or None when none is needed."""
        return None

    def console_url(self, deployment: Deployment) -> str | None:
        return None

    # == shared helpers ===================================================================================
    def variables(self, request: DeployRequest, extra: dict[str, str]) -> dict[str, str]:
        """The request's environment plus the deployer's own variables, within the platform's limit."""
        values = {**request.environment}
        for key, value in extra.items():
            values.setdefault(key, value)
        size = self.settings.env_size_over_limit(values)
        if size is not None:
            own = ", ".join(sorted(extra))
            raise DeployConfigError(
                f"[targets.{self.target}]: env and secrets hold {size} bytes with the variables agentpack sets ({own}), "
                f"over the platform's {self.settings.env_limit_kb()} KB; shorten the values or move large ones into files"
            )
        return values

    def reused_version(self, previous: Deployment | None, sha256: str) -> str | None:
        """A version this project already published from this artifact (after a rollback, say)."""
        if previous is None:
            return None
        for release in reversed(previous.releases):
            if release.sha256 == sha256:
                return release.version
        return None


def key_changed(plan: Plan) -> bool:
    """Whether the API key this deploy sends differs from the platform's: replaced now, or a key of
    the user's that changed.  The digests agentpack writes say whether the variable is there (so a
    key made or removed is a change) but hold no key's value, so values are compared here."""
    key = plan.key
    if key.source == "rotated":  # whether the name is there is in the digests; a new value is not
        return True
    sent = plan.variables.get(api_key.VARIABLE)
    return key.held is not None and sent is not None and sent != key.held


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
        return bool(desired == current)
    if isinstance(desired, (int, float)) and isinstance(current, (int, float)):
        return math.isclose(float(desired), float(current), rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(desired, list) and isinstance(current, list):
        return len(desired) == len(current) and all(same(a, b, exact) for a, b in zip(desired, current, strict=True))
    return bool(desired == current)
