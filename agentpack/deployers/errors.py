"""The deployers' two errors, on the two branches of :mod:`agentpack.errors`.

``DeployConfigError`` is the user's to fix (a bad setting, a missing credential or secret, a
name the platform refuses): one line that says what to set, exit 2.  ``PlatformError`` is a
failure reported by the platform (or by the local process standing in for one): its own code
and message, and the request id its support asks for, exit 1.  Both are raised by the cloud
clients (``deployers/clients``) and by the deployers, so they live below both.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from agentpack.errors import OperationFailed, UserError


class DeployConfigError(UserError):
    """The user's setup is wrong or incomplete (the CLI reports it and exits 2)."""


class NotOffered(DeployConfigError):
    """The platform has no such operation here (e.g. logs of a function without a log store)."""


def require_modules(modules: tuple[str, ...], needed_by: str, extra: str) -> None:
    """Fail with the install command, not a traceback, when a cloud SDK is missing: the SDKs are
    extras (``agentpack[fc]``, ``[agentrun]``, ``[lambda]``), so a plain install lacks them."""
    missing = [module for module in modules if importlib.util.find_spec(module) is None]
    if missing:
        which = "which is not installed; install it" if len(missing) == 1 else "which are not installed; install them"
        raise DeployConfigError(
            f"{needed_by} needs {', '.join(missing)}, {which} with: pip install 'agentpack[{extra}]'"
        )


class PlatformError(OperationFailed):
    """The control plane refused or failed a call (the CLI reports it and exits 1).

    ``code``/``message`` are the platform's own; ``request_id`` is what its support asks for;
    ``status`` is the HTTP status (None when the request never got an answer).  Whether a call
    that failed so is worth retrying is each client's rule (Alibaba's throttling codes are not
    AWS's), so it lives with the client.
    """

    def __init__(
        self,
        code: str,
        message: str,
        request_id: str | None = None,
        status: int | None = None,
        action: str | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.request_id = request_id
        self.status = status
        self.action = action
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.action} failed: " if self.action else ""
        details = [
            f"HTTP {self.status}" if self.status else None,
            f"request id {self.request_id}" if self.request_id else None,
        ]
        suffix = ", ".join(part for part in details if part)
        return f"{where}{self.code}: {self.message}" + (f" ({suffix})" if suffix else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "request_id": self.request_id,
            "status": self.status,
            "action": self.action,
        }
