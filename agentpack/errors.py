"""Every error agentpack raises on purpose, in one tree with two branches.

A command fails for one of two reasons, and the command line says which with its exit code:
the user's input or setup is wrong (exit 2: one line that names the fix, never a traceback), or
an operation was tried and failed (exit 1: what failed, with the platform's own code, message
and request id when a platform said no).  Anything else that escapes is a bug, and is reported
as one — a ``ValueError`` raised by mistake is not "your input is wrong"::

    AgentpackError                  agentpack.errors: catch this to catch any of them
    ├── UserError                   exit 2, one line naming the fix
    │   ├── ProjectError            agentpack.builders.errors: agentpack.toml, requirements, a build flag
    │   ├── AppLoadError            agentpack.loader: "path.py:attr" leads to no app
    │   ├── EmulationError          agentpack.emulators.background: not an artifact, no such Python
    │   ├── FlagError               agentpack.cli.errors: a malformed flag (KEY=VALUE)
    │   ├── StateError              agentpack.deployers.state: .agentpack/deployments.json unreadable
    │   └── DeployConfigError       agentpack.deployers.errors: a setting, credential, region, secret or name
    │       ├── NotOffered          the platform has no such operation (logs without a log store)
    │       └── AlibabaConfigError  agentpack.deployers.clients.alibaba: no region, a bad endpoint
    │           ├── CredentialsError    no usable Alibaba Cloud credentials
    │           └── MissingBucket       agentpack.deployers.clients.oss: oss_bucket names no bucket
    └── OperationFailed             exit 1: code, message, request id, HTTP status, the call
        ├── BuildError              agentpack.builders.errors: no wheel, over the size limit, pip failed
        ├── EmulatorStartError      agentpack.emulators.background: the artifact did not start
        ├── DeployError             agentpack.deployers.local: LocalDeployManager's server (also a RuntimeError)
        └── PlatformError           agentpack.deployers.errors: a control plane refused or failed a call
            ├── ResourceFailed      agentpack.deployers.clients.alibaba: it ended FAILED (the platform's reason)
            └── WaitTimeout         agentpack.deployers.clients.alibaba: not ready by the deadline

The runtime's errors are answers, not exits, and stay where they are raised (the runtime never
imports the packager): ``SessionBusy`` (409) and ``BackendUnavailable`` (503) in
``agentpack.interrupt``, ``BrokerUnavailable`` (503) in ``agentpack.tasks``; ``app/errors.py``
turns each into its HTTP answer.  They are ``RuntimeError``\\ s, as in AgentScope Runtime.

This module imports nothing but the standard library, so every layer may import it.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = ["AgentpackError", "UserError", "OperationFailed", "EXIT_USER", "EXIT_FAILED"]

#: The command line's exit codes (docs/deploy.md, docs/build.md): the two branches of the tree.
EXIT_FAILED = 1
EXIT_USER = 2


class AgentpackError(Exception):
    """Base of every error agentpack raises on purpose (see the module doc)."""

    #: the command line's exit code for this branch of the tree
    exit_code: ClassVar[int] = EXIT_FAILED


class UserError(AgentpackError):
    """The user's input or setup is wrong; the message is one line that names the fix (exit 2)."""

    exit_code: ClassVar[int] = EXIT_USER

    def to_json(self) -> dict[str, Any]:
        """What ``--json`` prints as ``{"error": ...}``."""
        return {"code": "UserError", "message": str(self)}


class OperationFailed(AgentpackError):
    """An operation was tried and failed (exit 1).

    ``code`` is the platform's error code when a platform said no (else what failed, e.g.
    ``BuildFailed``), ``request_id`` what its support asks for, ``status`` the HTTP status
    (None when no answer came), ``action`` the call that failed.  ``label`` is how the command
    line introduces the message ("failed: …", "build failed: …").
    """

    label: ClassVar[str] = "failed"
    code: str | None = None
    request_id: str | None = None
    status: int | None = None
    action: str | None = None

    def to_json(self) -> dict[str, Any]:
        """What ``--json`` prints as ``{"error": ...}``."""
        return {"code": self.code or type(self).__name__, "message": str(self)}
