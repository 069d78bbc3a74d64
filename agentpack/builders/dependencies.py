"""The dependency layer: pip resolves and installs the requirements for a target platform — never Docker.

pip runs under the target's own Python when this host has it (``--python-version`` does not
change how pip evaluates environment markers; the interpreter running it does), else under
this one.  Either way the result is then checked against the target's markers (``closure``):
what the target needs and pip left out is installed, what it does not need is removed.

Two cache levels make rebuilds cheap:

1. *resolution*: (requirements for the target, constraints, pip options, platform tags, marker
   environment) -> the exact ``name==version`` set (from ``pip install --report``);
2. *layer*: (that exact set, platform tags, python, pip options) -> the installed tree.

A code-only change hits both, so it never talks to an index.  A package without a wheel for
the platform fails the build with a table: what exists, and what to do.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from agentpack.builders import closure
from agentpack.builders.cache import digest, publish_dir, write_atomic
from agentpack.builders.errors import BuildError, ProjectError
from agentpack.builders.interpreters import Interpreter
from agentpack.builders.requirements import PipOptions, RequirementLine, redact
from agentpack.builders.target_platform import Platform

#: How many times pip is re-run with what the target's markers add before giving up.
_MAX_ROUNDS = 4
#: How many sdist-only packages one build may turn into wheels before giving up.
_MAX_BUILT_WHEELS = 10


@dataclass(frozen=True)
class PipRequest:
    """What to install: requirements and constraints already filtered for the target (no markers)."""

    requirements: tuple[RequirementLine, ...]
    constraints: tuple[RequirementLine, ...]
    options: PipOptions

    def key(self) -> list[object]:
        return [
            sorted(str(line.requirement) for line in self.requirements),
            sorted(str(line.requirement) for line in self.constraints),
            sorted((line.name, sorted(line.hashes)) for line in self.requirements if line.hashes),
            self.options.identity(),
        ]


@dataclass(frozen=True)
class Pip:
    """The interpreter pip runs under, and how the build summary names that choice."""

    python: str
    description: str
    runs_as_target: bool

    @classmethod
    def for_target(cls, plat: Platform, interpreter: Interpreter | None) -> Pip:
        if interpreter is not None and interpreter.pip_usable:
            return cls(interpreter.path, f"pip {interpreter.pip} under python{plat.python} ({interpreter.path})", True)
        host = f"{sys.version_info.major}.{sys.version_info.minor}"
        why = (
            "not found on this host"
            if interpreter is None
            else f"has no pip 22.2 or later ({interpreter.pip or 'no pip'})"
        )
        return cls(
            sys.executable,
            f"host pip (python {host}), markers evaluated for the target: python{plat.python} {why}",
            False,
        )


@dataclass(frozen=True)
class DependencyLayer:
    resolved: list[tuple[str, str]]  # (name, version), sorted
    path: Path  # the installed tree (read-only: shared by every build that resolves the same)
    key: str  # the layer's cache key (its directory name)
    cached: bool  # True when no pip ran
    resolver: str  # which pip ran and what the target's markers changed


def dependency_layer(
    request: PipRequest, plat: Platform, pip: Pip, cache: Path, on_download: Callable[[], None] = lambda: None
) -> DependencyLayer:
    """The exact distributions for ``request`` on ``plat``, installed (from the cache when it has them)."""
    request_key = digest(request.key(), plat.tags, plat.markers(), "resolve-3")
    record = cache / "resolved" / f"{request_key}.json"
    if record.is_file():
        saved = json.loads(record.read_text())
        layer = cache / "layers" / saved["layer"]
        if (layer / ".complete").is_file():
            return DependencyLayer(
                [tuple(item) for item in saved["resolved"]], layer, saved["layer"], True, saved["resolver"]
            )
    on_download()
    (cache / "layers").mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="staging-", dir=cache / "layers"))
    try:
        resolved, changes = _install(request, plat, pip, staging)
        key = digest(resolved, plat.tags, plat.python, request.options.identity(), "layer-3")
        layer = cache / "layers" / key
        if not (layer / ".complete").is_file():
            shutil.rmtree(staging / "bin", ignore_errors=True)  # console scripts point at the build host
            (staging / ".complete").write_text("")
            publish_dir(staging, layer)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    resolver = pip.description + (f"; target markers: {changes}" if changes else "")
    write_atomic(record, json.dumps({"resolved": resolved, "layer": key, "resolver": resolver}))
    return DependencyLayer(resolved, layer, key, False, resolver)


def _install(request: PipRequest, plat: Platform, pip: Pip, target_dir: Path) -> tuple[list[tuple[str, str]], str]:
    """pip-install ``request`` into ``target_dir``, then make it right for the target's markers.

    Returns what is installed and a note of what the markers changed ("" when nothing).
    """
    if not request.requirements:
        return [], ""
    environment = plat.markers()
    roots = [line.requirement for line in request.requirements]
    added: list[Requirement] = []
    with tempfile.TemporaryDirectory(prefix="agentpack-pip-") as scratch:
        constraints = Path(scratch) / "constraints.txt"
        constraints.write_text("".join(f"{line.requirement}\n" for line in request.constraints))
        for _ in range(_MAX_ROUNDS):
            _empty(target_dir)
            report = _pip_install(
                pip, plat, [*map(str, roots), *map(str, added)], constraints, request.options, target_dir, Path(scratch)
            )
            walked = closure.walk(target_dir, [*roots, *added], environment)
            if walked.complete:
                break
            new = [r for r in walked.missing if str(r) not in {str(a) for a in added}]
            if not new:
                raise BuildError(
                    f"pip's choice does not satisfy {walked.missing[0]} on python{plat.python}; pin a version that does"
                )
            added += new
        else:
            raise BuildError(
                f"the target's markers kept adding requirements after {_MAX_ROUNDS} pip runs: {', '.join(map(str, added))}"
            )
    _check_hashes(report, request)
    closure.remove(target_dir, walked.unneeded)
    dists = closure.installed(target_dir)
    resolved = sorted((dist.metadata["Name"], dist.version) for dist in dists.values())
    changes = ", ".join([*(f"+{r.name}" for r in added), *(f"-{name}" for name in walked.unneeded)])
    return resolved, changes


def _empty(directory: Path) -> None:
    for child in directory.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()


def run_pip(python: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    """``python -m pip <args>``, isolated from the user's site and never prompting (output captured).

    Every pip agentpack runs goes through here: the build's, and the Lambda emulator's install
    of the runtime client."""
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1", "PIP_REQUIRE_VIRTUALENV": "0"}
    return subprocess.run([python, "-I", "-m", "pip", *args], capture_output=True, text=True, env=env)


def _pip_install(
    pip: Pip,
    plat: Platform,
    requirements: list[str],
    constraints: Path,
    options: PipOptions,
    target_dir: Path,
    scratch: Path,
) -> dict[str, Any]:
    """One ``pip install --target`` for the platform; returns pip's report of what it chose.

    A package with no wheel for the platform but a pure-Python sdist is built into a
    ``py3-none-any`` wheel on this host (any platform can run those) and offered to pip;
    one with compiled code fails the build with the table of what exists.
    """
    report = scratch / "report.json"
    wheels = scratch / "built-wheels"
    wheels.mkdir(exist_ok=True)
    args = [
        "install",
        "--ignore-installed",
        "--no-compile",
        "--quiet",
        "--report",
        str(report),
        "--target",
        str(target_dir),
    ]
    args += [*options.args(), "--find-links", str(wheels), "-c", str(constraints), *plat.pip_flags()]
    for _ in range(_MAX_BUILT_WHEELS + 1):
        result = run_pip(pip.python, [*args, *requirements])
        if result.returncode == 0:
            reported: dict[str, Any] = json.loads(report.read_text())
            return reported
        if "No matching distribution" not in result.stderr and "Could not find a version" not in result.stderr:
            raise BuildError(f"pip could not install the requirements: {pip_error(result.stderr)}")
        missing = re.findall(r"No matching distribution found for ([^\s]+)", result.stderr)
        if not missing or not _build_pure_wheel(pip, missing[0], options, wheels):
            raise _no_wheel(result.stderr, plat, options, pip.python)
        _empty(target_dir)
    raise BuildError(f"more than {_MAX_BUILT_WHEELS} packages need wheels built from source; pin ones that ship wheels")


def _build_pure_wheel(pip: Pip, spec: str, options: PipOptions, wheels: Path) -> bool:
    """Build ``spec`` from its sdist; keep the wheel only if it is pure Python (``none-any``)."""
    with tempfile.TemporaryDirectory(prefix="agentpack-sdist-") as scratch:
        result = run_pip(
            pip.python,
            ["wheel", "--no-deps", "--no-binary", ":all:", "--quiet", "--wheel-dir", scratch, *options.args(), spec],
        )
        built = list(Path(scratch).glob("*.whl"))
        if result.returncode != 0 or len(built) != 1 or not built[0].name.endswith("-none-any.whl"):
            return False
        shutil.move(str(built[0]), wheels / built[0].name)
    return True


def _check_hashes(report: dict[str, Any], request: PipRequest) -> None:
    """Every requirement written with ``--hash`` got a file with one of those hashes."""
    wanted = {line.name: line for line in request.requirements if line.hashes}
    if not wanted:
        return
    for item in report.get("install", []):
        line = wanted.pop(canonicalize_name(item["metadata"]["name"]), None)
        if line is None:
            continue
        archive = item.get("download_info", {}).get("archive_info", {})
        got = {f"{algorithm}:{value}" for algorithm, value in archive.get("hashes", {}).items()}
        if archive.get("hash"):
            algorithm, _, value = archive["hash"].partition("=")
            got.add(f"{algorithm}:{value}")
        if not got & line.hashes:
            shown = next((h for h in sorted(got) if h.startswith("sha256:")), "no sha256 reported")
            url = redact(item.get("download_info", {}).get("url", "?"))
            raise BuildError(
                f"{line.origin}: {item['metadata']['name']} {item['metadata']['version']} from {url} has {shown}, "
                "which is not among its --hash values; regenerate the hashes for this platform's wheel, or check the index"
            )


def pip_error(stderr: str) -> str:
    """The line of pip's error output that says what went wrong."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip() and not line.startswith("WARNING")]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return (errors[0] if errors else lines[-1] if lines else "pip failed without a message").removeprefix("ERROR: ")


def _name(spec: str) -> str:
    try:
        return Requirement(spec).name
    except InvalidRequirement:
        return re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0]


def _no_wheel(stderr: str, plat: Platform, options: PipOptions, python: str = sys.executable) -> Exception:
    """Turn pip's "no matching distribution" into a table of what exists and what to do."""
    missing = re.findall(r"No matching distribution found for ([^\s]+)", stderr)
    on_pypi = options.index_url is None and not options.no_index
    rows = []
    for spec in missing:
        absent = _absent_version(spec, options, python)
        if absent is not None:
            return absent
    for spec in missing or ["?"]:
        name = _name(spec)
        version, tags = _published_tags(name) if on_pypi else (None, [])
        if version == "":
            return ProjectError(f"requirements: no package named {name!r} exists on the index; fix its name")
        rows.append(
            {
                "package": name,
                "version": version or "?",
                "wheel tags that exist": ", ".join(tags) if tags else "none (sdist only, or not found)",
                "what to do": (
                    "pin a version that has a wheel for this platform, choose another --python, or replace the package"
                    if tags
                    else "it has no wheel: use a package that ships wheels, or build one and list its path"
                ),
            }
        )
    names = ", ".join(r["package"] for r in rows)
    where = (
        ""
        if on_pypi
        else f" (looked in: {', '.join(redact(u) for u in [options.index_url or 'no index', *options.extra_index_urls, *options.find_links])})"
    )
    return BuildError(f"no wheel of {names} fits {plat.describe()}{where}", rows)


#: How many of the newest versions a "no such version" message lists.
_VERSIONS_SHOWN = 8


def _absent_version(spec: str, options: PipOptions, python: str) -> ProjectError | None:
    """A ProjectError naming the versions that exist when no published version of ``spec``'s
    package satisfies it (``requests==99.0``) -- a typo in the requirement, not a missing wheel.

    The index is asked through pip itself (``pip index versions`` with the requirement files'
    index options), so a private index, ``--find-links`` and ``--no-index`` answer as they do
    for the install; None when the index cannot say or some version fits (then it is the wheel)."""
    try:
        requirement = Requirement(spec)
    except InvalidRequirement:
        return None
    if not requirement.specifier:
        return None
    result = run_pip(python, ["index", "versions", requirement.name, "--pre", *options.args()])
    found = re.search(r"^Available versions: (.+)$", result.stdout, re.MULTILINE)
    if result.returncode != 0 or found is None:
        return None
    versions = [v.strip() for v in found.group(1).split(",") if v.strip()]
    if any(requirement.specifier.contains(v, prereleases=True) for v in versions):
        return None
    shown = ", ".join(versions[:_VERSIONS_SHOWN]) + (
        f" (and {len(versions) - _VERSIONS_SHOWN} older)" if len(versions) > _VERSIONS_SHOWN else ""
    )
    return ProjectError(
        f"requirements: no version of {requirement.name} matches {requirement.specifier} on the index; "
        f"versions that exist: {shown}; fix the version"
    )


def _published_tags(name: str) -> tuple[str | None, list[str]]:
    """The latest version on PyPI and its wheel tags; ``("", [])`` if no such project, ``(None, [])`` if unknown."""
    try:
        import httpx

        response = httpx.get(f"https://pypi.org/pypi/{name}/json", timeout=5)
        if response.status_code == 404:
            return "", []
        if response.status_code != 200:
            return None, []
        data = response.json()
    except Exception:
        return None, []
    tags = sorted(
        {"-".join(f["filename"][:-4].split("-")[-3:]) for f in data.get("urls", []) if f["filename"].endswith(".whl")}
    )
    return data.get("info", {}).get("version"), tags
