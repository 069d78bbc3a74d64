"""The two ways a build can fail, on the two branches of :mod:`agentpack.errors` (exit codes 2 and 1)."""

from typing import Any

from agentpack.errors import OperationFailed, UserError


class ProjectError(UserError):
    """The user's input is wrong (config, missing file, bad flag): exit 2, one line naming the fix."""


class BuildError(OperationFailed):
    """The build itself failed (no wheel for the platform, over budget, pip failed): exit 1.

    ``details`` holds rows for a table (e.g. package, version, available tags, what to do).
    """

    label = "build failed"
    code = "BuildFailed"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.details = details or []
