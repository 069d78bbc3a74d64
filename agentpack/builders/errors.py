"""The two ways a build can fail, which the CLI maps to exit codes 2 and 1."""


class ProjectError(Exception):
    """The user's input is wrong (config, missing file, bad flag): exit 2, one line naming the fix."""


class BuildError(Exception):
    """The build itself failed (no wheel for the platform, over budget, pip failed): exit 1.

    ``details`` holds rows for a table (e.g. package, version, available tags, what to do).
    """

    def __init__(self, message: str, details: list[dict] | None = None) -> None:
        super().__init__(message)
        self.details = details or []
