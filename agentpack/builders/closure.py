"""Which installed distributions the target needs, judged by the target's environment markers.

pip decides which dependencies to install by evaluating markers (``exceptiongroup;
python_version < "3.11"``) for the interpreter running pip, and always for this machine's CPU.
After it ran, this module walks the installed metadata (``importlib.metadata``) from the
project's requirements, evaluating every ``Requires-Dist`` marker for the *target*:
what is needed but absent (or at a version that does not satisfy) goes back to pip as an
explicit requirement; what was installed but is not needed is removed.
"""

from __future__ import annotations

import shutil
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from agentpack.builders.requirements import applies, without_marker

#: never installed: the build packs the agentpack running it
VENDORED = frozenset({"agentpack"})


def installed(layer: Path) -> dict[str, metadata.Distribution]:
    """The distributions in ``layer`` by canonical name."""
    found: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions(path=[str(layer)]):
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonicalize_name(name), dist)
    return found


@dataclass
class Closure:
    needed: dict[str, str] = field(default_factory=dict)  # canonical name -> installed version
    missing: list[Requirement] = field(default_factory=list)  # needed, absent or at a version that does not satisfy
    unneeded: list[str] = field(default_factory=list)  # installed, needed by nothing on the target

    @property
    def complete(self) -> bool:
        return not self.missing


def walk(layer: Path, roots: Iterable[Requirement], environment: Mapping[str, str]) -> Closure:
    """Follow ``roots`` (already filtered for the target) through the metadata in ``layer``."""
    dists = installed(layer)
    result = Closure()
    queue = deque(roots)
    expanded: set[tuple[str, frozenset[str]]] = set()
    missing: dict[str, Requirement] = {}
    while queue:
        requirement = queue.popleft()
        name = canonicalize_name(requirement.name)
        if name in VENDORED:
            continue
        dist = dists.get(name)
        if dist is None or (
            requirement.specifier and not requirement.specifier.contains(dist.version, prereleases=True)
        ):
            missing.setdefault(str(requirement), requirement)
            continue
        result.needed[name] = dist.version
        extras = frozenset(canonicalize_name(extra) for extra in requirement.extras)
        if (name, extras) in expanded:
            continue
        expanded.add((name, extras))
        for text in dist.requires or []:
            try:
                dependency = Requirement(text)
            except InvalidRequirement:  # metadata a newer parser rejects: pip did not act on it either
                continue
            if any(applies(dependency, environment, extra) for extra in ("", *sorted(extras))):
                queue.append(without_marker(dependency))
    result.missing = list(missing.values())
    result.unneeded = sorted(set(dists) - set(result.needed))
    return result


def remove(layer: Path, names: Iterable[str]) -> None:
    """Delete the files of distributions ``names`` (from their RECORD) and their metadata."""
    dists = installed(layer)
    root = layer.resolve()
    for name in names:
        dist = dists.get(name)
        if dist is None:
            continue
        for entry in dist.files or []:
            path = Path(str(dist.locate_file(entry))).resolve()
            if path.is_relative_to(root) and path.is_file():
                path.unlink()
        for info in layer.glob("*.dist-info"):  # what RECORD did not list (or no RECORD at all)
            if canonicalize_name(info.name[: -len(".dist-info")].rsplit("-", 1)[0]) == name:
                shutil.rmtree(info)
    _prune_empty_dirs(root)


def _prune_empty_dirs(root: Path) -> None:
    for directory in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()
