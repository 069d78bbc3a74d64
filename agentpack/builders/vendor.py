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
PACKAGER_ONLY = ("__main__.py", "cli/", "builders/", "emulators/", "deployers/", "processes.py")

#: The chat page's package (its module and its HTML file): packed only when the build asks for it.
UI_PACKAGE = "frontends/ui/"
#: The files of that package an artifact carries (Python modules, and the page).
UI_FILES = ("*.py", "*.html")


def agentpack_files(requirements: list[RequirementLine], ui: bool = False) -> dict[str, bytes]:
    """``{path in the dependency root: bytes}`` for this installation's ``agentpack`` package.

    ``requirements`` are written into METADATA as its ``Requires-Dist`` (what the artifact
    was built with for agentpack's sake).  ``ui`` packs the chat page (``frontends/ui/``),
    which is left out otherwise.
    """
    import agentpack

    root = Path(agentpack.__file__).resolve().parent
    files: dict[str, bytes] = {}
    paths = set(root.rglob("*.py"))
    if ui:
        for pattern in UI_FILES:
            paths.update((root / UI_PACKAGE).glob(pattern))
    for path in sorted(paths):
        relative = path.relative_to(root).as_posix()
        if relative.startswith(PACKAGER_ONLY) or (relative.startswith(UI_PACKAGE) and not ui):
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
