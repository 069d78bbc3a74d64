"""Dependencies for a target platform, resolved and installed with pip — never Docker.

Two cache levels make rebuilds cheap:

1. *resolution*: (requirement lines, platform tags, python, agentpack version) -> the exact
   ``name==version`` set pip chose (from ``pip install --report``);
2. *layer*: (that exact set, platform tags, python, agentpack version) -> the installed tree
   (``pip install --target --platform … --only-binary=:all:``).

A code-only change hits both, so it never talks to an index.  A package without a wheel
for the platform fails the build with a table: what exists, and what to do.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Optional

from agentpack._version import __version__
from agentpack.builders.errors import BuildError, ProjectError
from agentpack.targets import Target

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def cache_root() -> Path:
    """``$AGENTPACK_CACHE_DIR``, else ``$XDG_CACHE_HOME/agentpack``, else ``~/.cache/agentpack``."""
    explicit = os.environ.get("AGENTPACK_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "agentpack"


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Platform:
    """What pip must target: platform tags and interpreter version."""

    target: Target
    arch: str
    python: str

    @property
    def tags(self) -> tuple[str, ...]:
        return self.target.platform_tags(self.arch, self.python)

    def pip_flags(self) -> list[str]:
        flags = ["--only-binary=:all:", "--implementation", "cp", "--python-version", self.python]
        for tag in self.tags:
            flags += ["--platform", tag]
        return flags

    def describe(self) -> str:
        return f"cp{self.python.replace('.', '')}-{self.tags[0]}"


# -- requirements ------------------------------------------------------------------------
#: agentpack dependencies only its command line uses; an artifact serves, it runs no CLI.
CLI_ONLY = {"typer", "rich", "httpx", "tomli"}


def agentpack_requirements() -> list[str]:
    """agentpack's runtime dependencies (agentpack itself is vendored from this installation)."""
    try:
        declared = metadata.requires("agentpack") or []
    except metadata.PackageNotFoundError:  # running from a source tree without metadata
        return ["fastapi>=0.110", "starlette>=0.37", "pydantic>=2.5", "uvicorn>=0.29", "sse-starlette>=2.1", "anyio>=4.1"]
    return [
        line
        for line in declared
        if "extra ==" not in line and normalize(_NAME.match(line).group(1)) not in CLI_ONLY  # type: ignore[union-attr]
    ]


def project_requirements(project: Path, requirements: Optional[str]) -> tuple[list[str], str]:
    """The project's requirement lines and where they came from; ``agentpack`` itself is left out."""
    if requirements is not None:
        path = project / requirements
        if not path.is_file():
            raise ProjectError(f"requirements = {requirements!r}: {path} does not exist; fix the path in agentpack.toml")
        lines = _read_requirements(path)
        source = requirements
    elif (project / "requirements.txt").is_file():
        lines, source = _read_requirements(project / "requirements.txt"), "requirements.txt"
    elif (project / "pyproject.toml").is_file():
        from agentpack.builders.config import tomllib

        data = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
        lines, source = list(data.get("project", {}).get("dependencies", [])), "pyproject.toml [project].dependencies"
    else:
        lines, source = [], "none"
    return [line for line in lines if not _is_agentpack(line)], source


def _is_agentpack(line: str) -> bool:
    match = _NAME.match(line)
    return bool(match) and normalize(match.group(1)) == "agentpack"


def _read_requirements(path: Path, seen: Optional[set[Path]] = None) -> list[str]:
    seen = seen or set()
    if path in seen:
        return []
    seen.add(path)
    lines: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-r ", "--requirement ")):
            lines += _read_requirements(path.parent / line.split(maxsplit=1)[1], seen)
        elif line.startswith("-"):
            raise ProjectError(f"{path}: option lines such as {line.split()[0]!r} are not supported; list packages only")
        else:
            lines.append(line)
    return lines


# -- pip ---------------------------------------------------------------------------------
def _pip(args: list[str], python: Optional[str] = None) -> subprocess.CompletedProcess:
    command = [python or sys.executable, "-m", "pip", *args]
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env)


def _no_wheel(stderr: str, plat: Platform, requirements: list[str]) -> Exception:
    """Turn pip's "no matching distribution" into a table of what exists and what to do."""
    missing = re.findall(r"No matching distribution found for ([^\s]+)", stderr)
    rows = []
    for spec in missing or ["?"]:
        name = _NAME.match(spec).group(1) if _NAME.match(spec) else spec
        version, tags = _published_tags(name)
        if version == "":
            return ProjectError(f"requirements: no package named {name!r} exists on the index; fix its name")  # type: ignore[return-value]
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
    return BuildError(f"no wheel of {names} fits {plat.describe()} (requirements: {len(requirements)} lines)", rows)


def _published_tags(name: str) -> tuple[Optional[str], list[str]]:
    """The latest version on PyPI and its wheel tags; ``("", [])`` if no such project, ``(None, [])`` if unknown."""
    try:
        import httpx

        response = httpx.get(f"https://pypi.org/pypi/{name}/json", timeout=5)
        if response.status_code == 404:
            return "", []  # no such project
        if response.status_code != 200:
            return None, []
        data = response.json()
    except Exception:
        return None, []
    tags = sorted({"-".join(f["filename"][:-4].split("-")[-3:]) for f in data.get("urls", []) if f["filename"].endswith(".whl")})
    return data.get("info", {}).get("version"), tags


def _last_error(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip() and not line.startswith("WARNING")]
    return lines[-1].strip() if lines else "pip failed without a message"


def dependencies(requirements: list[str], plat: Platform, cache: Path, on_download: Callable[[], None] = lambda: None) -> tuple[list[tuple[str, str]], Path, bool]:
    """The exact distributions for ``requirements`` on ``plat``, installed; (resolved, layer, cached).

    A miss costs one pip run, which resolves and installs at once (``--report`` tells what
    it chose); the choice and the installed tree are then cached under their own keys.
    """
    request_key = _digest(sorted(requirements), plat.tags, plat.python, __version__, "resolve-2")
    record = cache / "resolved" / f"{request_key}.json"
    if record.is_file():
        resolved = [tuple(item) for item in json.loads(record.read_text())]
        layer = _layer_path(resolved, plat, cache)  # type: ignore[arg-type]
        if (layer / ".complete").is_file():
            return resolved, layer, True  # type: ignore[return-value]
    on_download()
    (cache / "layers").mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="staging-", dir=cache / "layers"))
    try:
        resolved = _install(requirements, plat, staging)
        layer = _layer_path(resolved, plat, cache)
        if not (layer / ".complete").is_file():
            shutil.rmtree(staging / "bin", ignore_errors=True)  # console scripts point at the build host
            (staging / ".complete").write_text("")
            if layer.exists():
                shutil.rmtree(layer)
            staging.rename(layer)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    record.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(record, json.dumps(resolved))
    return resolved, layer, False


def _layer_path(resolved: list[tuple[str, str]], plat: Platform, cache: Path) -> Path:
    return cache / "layers" / _digest(resolved, plat.tags, plat.python, __version__, "layer-2")


#: How many sdist-only packages one build may turn into wheels before giving up.
_MAX_BUILT_WHEELS = 10


def _install(requirements: list[str], plat: Platform, target_dir: Path) -> list[tuple[str, str]]:
    """pip-install ``requirements`` for ``plat`` into ``target_dir``; returns what pip chose.

    A package with no wheel for the platform but a pure-Python sdist is built into a
    ``py3-none-any`` wheel on this host (any platform can run those) and offered to pip;
    one with compiled code fails the build with the table of what exists.
    """
    if not requirements:
        return []
    report = target_dir / ".report.json"
    args = ["install", "--ignore-installed", "--no-compile", "--quiet", "--report", str(report), "--target", str(target_dir)]
    with tempfile.TemporaryDirectory(prefix="agentpack-wheels-") as wheels:
        links = ["--find-links", wheels]
        for _ in range(_MAX_BUILT_WHEELS + 1):
            result = _pip([*args, *links, *plat.pip_flags(), *requirements])
            if result.returncode == 0:
                break
            if "No matching distribution" not in result.stderr and "Could not find a version" not in result.stderr:
                raise BuildError(f"pip could not install the requirements: {_last_error(result.stderr)}")
            missing = re.findall(r"No matching distribution found for ([^\s]+)", result.stderr)
            if not missing or not _build_pure_wheel(missing[0], Path(wheels)):
                raise _no_wheel(result.stderr, plat, requirements)
        else:
            raise BuildError(f"more than {_MAX_BUILT_WHEELS} packages need wheels built from source; pin ones that ship wheels")
    chosen = json.loads(report.read_text())["install"]
    report.unlink()
    return sorted((item["metadata"]["name"], item["metadata"]["version"]) for item in chosen)


def _build_pure_wheel(spec: str, wheels: Path) -> bool:
    """Build ``spec`` from its sdist; keep the wheel only if it is pure Python (``none-any``)."""
    with tempfile.TemporaryDirectory(prefix="agentpack-sdist-") as scratch:
        result = _pip(["wheel", "--no-deps", "--no-binary", ":all:", "--quiet", "--wheel-dir", scratch, spec])
        built = list(Path(scratch).glob("*.whl"))
        if result.returncode != 0 or len(built) != 1 or not built[0].name.endswith("-none-any.whl"):
            return False
        shutil.move(str(built[0]), wheels / built[0].name)
    return True


def _write_atomic(path: Path, text: str) -> None:
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=path.name)
    with os.fdopen(handle, "w") as out:
        out.write(text)
    os.replace(temp, path)


# -- agentpack itself ----------------------------------------------------------------------
def agentpack_files() -> dict[str, bytes]:
    """This installation's ``agentpack`` package plus a dist-info, as they go into an artifact."""
    import agentpack

    root = Path(agentpack.__file__).resolve().parent
    files: dict[str, bytes] = {}
    for path in sorted(root.rglob("*.py")):
        files[f"agentpack/{path.relative_to(root).as_posix()}"] = path.read_bytes()
    info = f"agentpack-{__version__}.dist-info"
    requires = "".join(f"Requires-Dist: {line}\n" for line in agentpack_requirements())
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: agentpack\nVersion: {__version__}\n{requires}".encode()
    files[f"{info}/top_level.txt"] = b"agentpack\n"
    files[f"{info}/INSTALLER"] = b"agentpack\n"
    record = "".join(f"{name},,\n" for name in sorted(files)) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    return files


# -- slimming and checking -----------------------------------------------------------------
_SLIM_DIRS = {"__pycache__", "tests", "test", "testing", "docs", "doc", "examples", "benchmarks"}
_SLIM_FILES = (".pyc", ".pyo", ".pyi", ".c", ".h", ".pxd", ".pyx")


def slim_away(relative: str) -> bool:
    """Whether ``--slim`` drops this dependency file; ``*.dist-info`` always stays (importlib.metadata)."""
    parts = relative.split("/")
    if any(p.endswith(".dist-info") for p in parts[:1]):
        return False
    return any(p in _SLIM_DIRS for p in parts[1:-1]) or relative.endswith(_SLIM_FILES)


def top_level_modules(layer: Path) -> list[str]:
    """Importable top-level names of the distributions in ``layer`` (top_level.txt, else RECORD)."""
    names: set[str] = set()
    for info in layer.glob("*.dist-info"):
        top_level = info / "top_level.txt"
        if top_level.is_file():
            names.update(n.strip() for n in top_level.read_text().splitlines())
            continue
        record = info / "RECORD"
        for line in record.read_text().splitlines() if record.is_file() else []:
            first = line.split(",", 1)[0].split("/", 1)[0]
            if first.endswith((".dist-info", ".data")) or first.startswith(("_", "..")):
                continue
            names.add(first.split(".", 1)[0])
    return sorted(n for n in names if n.isidentifier() and ((layer / n).exists() or any(layer.glob(f"{n}.*"))))


def find_interpreter(python: str) -> Optional[str]:
    """A working ``pythonX.Y`` on this host: on PATH (pyenv shims included) or in pyenv's versions."""
    candidates = [shutil.which(f"python{python}")]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if pyenv_root.is_dir():
        candidates += [str(p / "bin" / f"python{python}") for p in sorted(pyenv_root.glob(f"{python}.*"), reverse=True)]
    for candidate in candidates:
        if not candidate or not Path(candidate).exists():
            continue
        probe = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == python:
            return candidate
    return None


def import_check(unpacked: Path, deps_dir: str, modules: list[str], interpreter: str) -> Optional[str]:
    """Import every module with the target's interpreter; ``None`` if it passed, else the failure."""
    code = (
        "import importlib, sys, json\n"
        f"failed = {{}}\nfor name in {modules!r}:\n"
        "    try:\n        importlib.import_module(name)\n"
        "    except Exception as exc:\n        failed[name] = f'{type(exc).__name__}: {exc}'\n"
        "print(json.dumps(failed))\n"
    )
    paths = [str(unpacked / deps_dir) if deps_dir else str(unpacked), str(unpacked)]
    env = {"PYTHONPATH": os.pathsep.join(paths), "PYTHONDONTWRITEBYTECODE": "1", "PATH": os.environ.get("PATH", "")}
    result = subprocess.run([interpreter, "-I", "-c", f"import sys; sys.path[:0] = {paths!r}\n" + code], capture_output=True, text=True, env=env, cwd=unpacked)
    if result.returncode != 0:
        return _last_error(result.stderr)
    failed = json.loads(result.stdout.strip().splitlines()[-1])
    if failed:
        return "; ".join(f"{name}: {error}" for name, error in sorted(failed.items()))
    return None
