"""agentpack itself, as it goes into an artifact: the package that runs this build, plus a dist-info.

The artifact runs the same agentpack that built it (no index lookup, no version skew), and
the dist-info makes ``importlib.metadata.version("agentpack")`` work inside it.
"""

from __future__ import annotations

from pathlib import Path

from agentpack._version import __version__
from agentpack.builders.requirements import RequirementLine

#: Parts of agentpack that only the command line on a developer's machine uses: they import
#: packages an artifact does not carry (typer, rich, the cloud SDKs) and serve nothing there.
PACKAGER_ONLY = ("__main__.py", "cli/", "builders/", "emulators/", "deployers/")


def agentpack_files(requirements: list[RequirementLine]) -> dict[str, bytes]:
    """``{path in the dependency root: bytes}`` for this installation's ``agentpack`` package.

    ``requirements`` are written into METADATA as its ``Requires-Dist`` (what the artifact
    was built with for agentpack's sake).
    """
    import agentpack

    root = Path(agentpack.__file__).resolve().parent
    files: dict[str, bytes] = {}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative.startswith(PACKAGER_ONLY):
            continue
        files[f"agentpack/{relative}"] = path.read_bytes()
    info = f"agentpack-{__version__}.dist-info"
    requires = "".join(f"Requires-Dist: {line.requirement}\n" for line in requirements)
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: agentpack\nVersion: {__version__}\n{requires}".encode()
    files[f"{info}/top_level.txt"] = b"agentpack\n"
    files[f"{info}/INSTALLER"] = b"agentpack\n"
    record = "".join(f"{name},,\n" for name in sorted(files)) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    return files
