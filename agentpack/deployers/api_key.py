"""The API key ``agentpack deploy`` gives a deployment whose URL would otherwise be open.

A public URL (``allow_anonymous`` on FC, AgentRun and Lambda) is checked by no platform, so
the deploy puts a key the app checks itself into the function's environment as
``AGENTPACK_API_KEYS`` — the variable ``AgentApp`` reads (docs/auth.md) — and prints it once.
Where it lives and where it never goes:

* **only the platform's environment.**  The key is made in memory (``secrets.token_urlsafe(32)``,
  256 random bits) and sent with the function's other variables; the state file records the
  variable's *name* only, like every variable; the artifact, progress lines and warnings never
  hold it; the descriptions agentpack writes (how a redeploy tells what changed) digest a
  marker in its place, so even a hash of it is never published.
* **kept across deploys.**  Clients break when the key changes, so a redeploy reads the
  current environment back from the platform (FC GetFunction, Lambda GetFunction, AgentRun
  GetAgentRuntime) and sends the same key again.  Only ``--rotate-api-key`` replaces it.
* **when the platform does not show the value** (a masked ``******`` or Lambda's
  ``Environment.Error``, both possible answers no platform page rules out), the key cannot be
  sent back.  A deploy that writes nothing needs it not at all; one that writes takes it from
  ``AGENTPACK_API_KEY`` in the shell (where the deploy's own instructions put it) and otherwise
  stops with exit 2 naming the three ways on (that variable, ``--rotate-api-key``,
  ``--no-api-key``) instead of silently replacing it.

Who gets one: a deployment with a public URL, unless ``api_key = false`` / ``--no-api-key``;
a signed one only with ``api_key = true`` (a second check behind the platform's signature, for
callers that reach it through a gateway).  A key the user sets (``AGENTPACK_API_KEYS`` in
``env``, ``secrets`` or ``--env``) is theirs: nothing is generated, and it is sent as given.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from agentpack.deployers.errors import DeployConfigError

if TYPE_CHECKING:
    from agentpack.deployers.request import DeployOptions, DeployRequest

#: The variable the app reads its keys from (``agentpack.app.auth.KEYS_ENV``; the deployers never
#: import the runtime they package, so the name is repeated here and a test holds the two equal).
VARIABLE = "AGENTPACK_API_KEYS"
#: The variable ``agentpack invoke`` / ``stop`` / ``run --ask`` read a key from.
CLIENT_VARIABLE = "AGENTPACK_API_KEY"
#: What the configuration digests hold instead of the key's value (a hash of a key is no business
#: of whoever reads a function's description).
DIGEST_MARK = "<api key>"
#: What a deploy did with the key: made one, replaced it, sent the platform's back, sent the
#: shell's ``AGENTPACK_API_KEY`` back (the platform masks its own), sent the user's own, took it
#: away, or nothing at all.
Source = Literal["generated", "rotated", "kept", "given", "yours", "removed", "none"]


def new_key() -> str:
    """A fresh key: 43 URL-safe characters (no comma or space, which the app's list forbids)."""
    return secrets.token_urlsafe(32)


def for_digest(variables: Mapping[str, str]) -> dict[str, str]:
    """``variables`` as the configuration digests take them: the key by name only
    (:data:`DIGEST_MARK` in place of its value, which is compared with what the platform shows)."""
    return {**variables, VARIABLE: DIGEST_MARK} if VARIABLE in variables else dict(variables)


def masked(value: str | None) -> bool:
    """Whether the platform showed a value as a mask (``******``) or not at all (None)."""
    return value is None or (len(value) >= 3 and set(value) == {"*"})


def offered(settings: object) -> bool:
    """Whether the target's settings model takes ``api_key`` (the targets with a public URL to guard)."""
    return "api_key" in getattr(type(settings), "model_fields", {})


def wanted(settings: object, allow_anonymous: bool) -> bool:
    """Whether agentpack gives the deployment a key: the ``api_key`` setting, else only a public URL."""
    setting = getattr(settings, "api_key", None)
    return bool(allow_anonymous if setting is None else setting)


def room(request: DeployRequest) -> dict[str, str]:
    """A stand-in for the key a deploy may generate, as long as one, so that the environment's
    size limit is checked before any call (the key itself is settled after reading the platform)."""
    settings = request.settings
    if offered(settings) and wanted(settings, request.allow_anonymous) and VARIABLE not in request.environment:
        return {VARIABLE: "k" * len(new_key())}
    return {}


def first_key(value: str | None) -> str | None:
    """The first key of a comma-separated ``AGENTPACK_API_KEYS`` value (what a client sends)."""
    if masked(value):
        return None
    assert value is not None
    keys = [k.strip() for k in value.split(",") if k.strip()]
    return keys[0] if keys else None


def check_options(options: DeployOptions, target: str, settings: object, environment: Mapping[str, str]) -> None:
    """Refuse flags that cannot apply, before any call (exit 2, naming the flag)."""
    if not offered(settings):
        for flag, given in (("--no-api-key", options.api_key is False), ("--rotate-api-key", options.rotate_api_key)):
            if given:
                raise DeployConfigError(
                    f"{flag}: agentpack generates no API key for {target} deployments (it does for a public URL on the "
                    "targets that have allow_anonymous); drop the flag"
                )
        return
    if not options.rotate_api_key:
        return
    if getattr(settings, "api_key", None) is False:
        said = "--no-api-key" if options.api_key is False else f"[targets.{target}] api_key = false"
        raise DeployConfigError(f"--rotate-api-key with {said}: choose one (rotate the key, or deploy without one)")
    if VARIABLE in environment:
        raise DeployConfigError(
            f"--rotate-api-key: {VARIABLE} is set by your [targets.{target}] env, secrets or --env, so the key is yours; "
            "change its value there (agentpack generates none)"
        )
    if not wanted(settings, bool(getattr(settings, "allow_anonymous", False))):
        raise DeployConfigError(
            f"--rotate-api-key: this {target} deployment gets no generated API key (its URL takes only signed requests); "
            f"set [targets.{target}] api_key = true to give it one, or deploy with --allow-anonymous"
        )


@dataclass
class KeyPlan:
    """What one deploy does with the key (see the module doc).  ``value`` is secret: never shown
    by ``repr``, never stored; the deploy's output prints it once when ``new``."""

    source: Source
    #: the key this deploy sends (None: none, or the user's own, which is in their variables already)
    value: str | None = field(default=None, repr=False)
    #: the platform shows a key it holds only masked, and no other was given: a deploy that must
    #: write the environment cannot keep it (the pipeline refuses; see ``unreadable_error``)
    unreadable: bool = False
    #: the key's value the platform holds now, when it shows it (to tell a changed key from a kept one)
    held: str | None = field(default=None, repr=False)

    @property
    def new(self) -> bool:
        """Whether this deploy made the key (the output shows it, once)."""
        return self.source in ("generated", "rotated")

    def variables(self) -> dict[str, str]:
        """What the deploy adds to the function's environment for the key (a placeholder when
        unreadable: the pipeline refuses to write it, and no digest contains a key's value)."""
        if self.value is not None:
            return {VARIABLE: self.value}
        if self.unreadable:
            return {VARIABLE: DIGEST_MARK}
        return {}


def settle(
    request: DeployRequest,
    held: Mapping[str, str | None] | None,
    shell: Mapping[str, str],
) -> KeyPlan:
    """Decide the key of this deploy from the request and ``held``, the environment the platform
    reports now (None: nothing of this name yet; a value None or ``******``: not shown)."""
    found = held is not None and VARIABLE in held
    value = held.get(VARIABLE) if held is not None else None
    shown = None if masked(value) else value
    if VARIABLE in request.environment:
        return KeyPlan("yours", held=shown)
    if not wanted(request.settings, request.allow_anonymous):
        # None: not named, or named but not shown (Lambda without Variables): an environment
        # nobody can read is not a key to remove
        return KeyPlan("removed" if value is not None else "none", held=shown)
    if request.options.rotate_api_key or not found:
        return KeyPlan("rotated" if found else "generated", new_key(), held=shown)
    if shown is not None:
        return KeyPlan("kept", shown, held=shown)
    given = (shell.get(CLIENT_VARIABLE) or "").strip()
    if given:
        return KeyPlan("given", given)
    return KeyPlan("kept", unreadable=True)


def unreadable_error(target: str, name: str) -> DeployConfigError:
    """Why a deploy that must write the environment stops when the platform masks the key."""
    return DeployConfigError(
        f"{target}/{name} has an API key ({VARIABLE}) that the platform shows only masked, so this deploy cannot send "
        f"it back unchanged: set {CLIENT_VARIABLE} to the key in the shell and deploy again (it is sent back), or pass "
        "--rotate-api-key to make a new one (clients then need it), or --no-api-key to remove it"
    )


def progress_line(plan: KeyPlan, where: str) -> str | None:
    """The progress line for the key (never its value); None when there is nothing to say."""
    return {
        "generated": f"generated an API key for {where} ({VARIABLE} in its environment; shown once below)",
        "rotated": f"replacing the API key of {where} (--rotate-api-key; the new one is shown once below)",
        "given": f"keeping the API key of {where}: the platform shows it masked, so {CLIENT_VARIABLE} from the shell is sent",
        "removed": f"removing the API key from {where} ({VARIABLE})",
    }.get(plan.source)
