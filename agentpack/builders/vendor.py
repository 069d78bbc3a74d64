"""agentpack itself, as it goes into an artifact: the package that runs this build, plus a dist-info.

The artifact runs the same agentpack that built it (no index lookup, no version skew), and
the dist-info makes ``importlib.metadata.version("agentpack")`` work inside it.
"""

from __future__ import annotations

from pathlib import Path

from agentpack._version import __version__
from agentpack.builders.requirements import RequirementLine


def agentpack_files(requirements: list[RequirementLine]) -> dict[str, bytes]:
    """``{path in the dependency root: bytes}`` for this installation's ``agentpack`` package.

    ``requirements`` are written into METADATA as its ``Requires-Dist`` (what the artifact
    was built with for agentpack's sake).
    """
    import agentpack

    root = Path(agentpack.__file__).resolve().parent
    files: dict[str, bytes] = {}
    for path in sorted(root.rglob("*.py")):
        files[f"agentpack/{path.relative_to(root).as_posix()}"] = path.read_bytes()
    info = f"agentpack-{__version__}.dist-info"
    requires = "".join(f"Requires-Dist: {line.requirement}\n" for line in requirements)
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: agentpack\nVersion: {__version__}\n{requires}".encode()
    files[f"{info}/top_level.txt"] = b"agentpack\n"
    files[f"{info}/INSTALLER"] = b"agentpack\n"
    record = "".join(f"{name},,\n" for name in sorted(files)) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    return files
