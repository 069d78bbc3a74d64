"""``build()``: project directory + target -> one reproducible artifact, or a clear failure.

Plan, then write.  ``plan_build`` works out everything the artifact will hold — config,
target, arch, python, requirements, the dependency layer (installed into the cache), bytecode,
every file with its hash, the generated entry files, the manifest — and raises every user
error on the way, before anything is written to the output directory.  ``write_artifact``
then writes the zip from the plan: into a temporary file, checked (size budget, imports) and
renamed into place, so nothing half-written is ever left behind.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agentpack._version import __version__
from agentpack.builders import bytecode, zipper
from agentpack.builders.artifact import MANIFEST
from agentpack.builders.cache import cache_root, file_sha256
from agentpack.builders.config import ProjectConfig, load_target
from agentpack.builders.dependencies import DependencyLayer, Pip, PipRequest, dependency_layer
from agentpack.builders.errors import BuildError, ProjectError
from agentpack.builders.files import project_files
from agentpack.builders.import_check import check_artifact, why_not_checked
from agentpack.builders.interpreters import Interpreter, find_target_python
from agentpack.builders.layer_zip import LayerZip, layer_zip
from agentpack.builders.requirements import (
    Requirements,
    agentpack_extra,
    agentpack_requirements,
    extra_requirements,
    for_environment,
    project_requirements,
)
from agentpack.builders.target_platform import Platform, platform_python
from agentpack.builders.vendor import agentpack_files
from agentpack.target_settings import TargetSettings
from agentpack.targets import MB, EntryContext, EntryFile, Target

__all__ = ["MANIFEST", "BuildOptions", "BuildPlan", "BuildResult", "build", "plan_build", "write_artifact"]

#: Called with a step name ("resolve", "download", "compile", "layout", "zip", "check") as the build moves on.
Progress = Callable[[str], None]


def no_progress(step: str) -> None:
    """The default :data:`Progress`: says nothing."""


@dataclass(frozen=True)
class BuildOptions:
    """What one build asks for beyond the project's config: the ``agentpack build`` flags.

    The command line fills one, :func:`build` and :func:`plan_build` read it — a new build
    option is a field here (and its flag), nothing in between.  ``None`` means "as the config
    (or the target) says".
    """

    #: where the artifact goes (default: the project's ``dist/``)
    out_dir: Path | None = None
    #: CPU architecture (default: ``[targets.<t>] arch``, else the target's)
    arch: str | None = None
    #: Python version (default: ``[targets.<t>] python``, else ``python``, else the target's)
    python: str | None = None
    #: strip caches, tests and docs of the dependencies
    slim: bool = False
    #: ship ``.pyc`` compiled by the target's Python (default: the config's ``bytecode``, on)
    bytecode_enabled: bool | None = None
    #: pack agentpack's chat page (default: the config's ``ui``, off)
    ui: bool | None = None


@dataclass
class BuildResult:
    artifact: str
    sha256: str
    size_bytes: int
    unpacked_bytes: int
    target: str
    arch: str
    python: str
    unchanged: bool = False
    cached_dependencies: bool = False
    import_check: str = "skipped"
    largest_packages: list[dict[str, Any]] = field(default_factory=list)
    dependencies: int = 0
    #: which pip resolved the dependencies and what the target's markers changed
    resolver: str = ""
    #: the shipped bytecode ("cpython-312 ...") or why there is none ("none (...)")
    bytecode: str = ""
    #: whether agentpack's chat page is packed (``--ui`` / ``ui = true``)
    ui: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Entry:
    """A file of the artifact beyond the dependency layer: its path, bytes and executable bit."""

    path: str
    data: bytes
    executable: bool = False


@dataclass
class BuildPlan:
    """Everything an artifact will hold, worked out before any of it is written."""

    project: Path
    config: ProjectConfig
    target: Target
    settings: TargetSettings
    arch: str
    python: str
    platform: Platform
    interpreter: Interpreter | None
    requirements: Requirements
    request: PipRequest
    layer: DependencyLayer
    layer_zip: LayerZip
    bytecode: str
    generated: list[EntryFile]
    entries: list[Entry]
    manifest: dict[str, Any]
    manifest_bytes: bytes
    artifact: Path
    unpacked_bytes: int

    @property
    def files(self) -> dict[str, str]:
        """Every file of the artifact (but the manifest) with its sha256."""
        files: dict[str, str] = self.manifest["files"]
        return files


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_app(project: Path, spec: str) -> None:
    """The app file and attribute exist and name an ASGI app — without importing dependencies we may lack.

    A file spec is checked by reading the file (the attribute must be assigned at top level);
    a module spec must be a file or package inside the project.
    """
    target, _, attr = spec.partition(":")
    if target.endswith(".py"):
        path = project / target
        module_text = path.read_text(encoding="utf-8") if path.is_file() else None
        where = target
    else:
        candidates = [project / (target.replace(".", "/") + ".py"), project / target.replace(".", "/") / "__init__.py"]
        found = next((p for p in candidates if p.is_file()), None)
        module_text = found.read_text(encoding="utf-8") if found else None
        where = f"module {target}"
    if module_text is None:
        raise ProjectError(f'app = "{spec}": {where} is not in {project}; fix `app` in agentpack.toml')
    try:
        tree = ast.parse(module_text)
    except SyntaxError as exc:
        raise ProjectError(f"{where}: line {exc.lineno}: {exc.msg}; fix the syntax") from None
    assigned: dict[str, ast.AST] = {}
    for node in tree.body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        value = getattr(node, "value", None)
        for name in targets:
            if isinstance(name, ast.Name) and value is not None:
                assigned[name.id] = value
    attr = attr or next((a for a in ("app", "agent_app", "application") if a in assigned), "")
    if not attr or attr not in assigned:
        raise ProjectError(
            f'app = "{spec}": {where} assigns no {attr or "app"!r} at top level; name the variable that holds the app'
        )
    value = assigned[attr]
    if isinstance(value, (ast.Constant, ast.List, ast.Dict, ast.Tuple, ast.Set)):
        raise ProjectError(
            f'app = "{spec}": {attr} is a {type(getattr(value, "value", value)).__name__}, not an ASGI app such as AgentApp()'
        )


# -- planning ---------------------------------------------------------------------------------------
def _choose_arch(target: Target, settings: TargetSettings, flag: str | None) -> str:
    configured = getattr(settings, "arch", None)
    arch = flag or configured or target.default_arch
    if arch not in target.archs:
        where = f"--arch {arch}" if flag else f"[targets.{target.name}] arch = {arch!r}"
        raise ProjectError(f"{where}: target {target.name} runs on {', '.join(target.archs)}")
    return arch


def _choose_python(target: Target, config: ProjectConfig, settings: TargetSettings, flag: str | None) -> str:
    """``--python``, else ``[targets.<t>] python``, else the top-level ``python``, else the target's default."""
    if flag is not None:
        if flag not in target.pythons:
            raise ProjectError(f"--python {flag}: target {target.name} offers Python {', '.join(target.pythons)}")
        return flag
    if settings.python is not None:
        return settings.python  # validated against the row with the config
    if config.python is not None:
        if config.python not in target.pythons:
            raise ProjectError(
                f'python = "{config.python}" ({config.source}): target {target.name} offers Python {", ".join(target.pythons)}; '
                f'set [targets.{target.name}] python = "{target.default_python}" or pass --python'
            )
        return config.python
    return target.default_python


def _bytecode_off_reason(config: ProjectConfig, requested: bool | None) -> str | None:
    if requested is False:
        return "none (turned off for this build)"
    if requested is None and not config.bytecode:
        return "none (bytecode = false in the config)"
    return None


def plan_build(
    project_dir: Path, target_name: str, options: BuildOptions = BuildOptions(), progress: Progress = no_progress
) -> BuildPlan:
    """Work out the artifact; every user error is raised here, and nothing is written but the cache."""
    project = Path(project_dir).resolve()
    config, target, settings = load_target(project, target_name)
    arch = _choose_arch(target, settings, options.arch)
    python = _choose_python(target, config, settings, options.python)
    check_app(project, config.app)
    out = (Path(options.out_dir) if options.out_dir else project / "dist").resolve()
    artifact = out / f"{config.name or project.name}-{target.name}-{python}-{arch}.zip"
    requirements = project_requirements(project, config.requirements)
    code_paths = project_files(project, config.include, config.exclude, out)
    port = getattr(settings, "port", None)
    streaming = bool(getattr(settings, "streaming", False))
    generated = target.entry_files(EntryContext(config.app, python, port, target.deps_dir, streaming))

    # -- dependencies, for the target's platform and markers ----------------------------------
    interpreter = find_target_python(python)
    plat = Platform(
        target, arch, python, platform_python(target, python, interpreter.full_version if interpreter else None)
    )
    markers = plat.markers()
    own = agentpack_requirements()
    if getattr(settings, "redis_url", None):  # the app will run on the Redis interrupt backend
        own += agentpack_extra("redis")
    wanted = [
        *requirements.requirements,
        *own,
        *extra_requirements(target.extra_requirements, f"the {target.name} target"),
    ]
    request = PipRequest(
        tuple(for_environment(wanted, markers)),
        tuple(for_environment(requirements.constraints, markers)),
        requirements.options,
    )
    progress("resolve")
    cache = cache_root()
    layer = dependency_layer(
        request, plat, Pip.for_target(plat, interpreter), cache, on_download=lambda: progress("download")
    )

    # -- files: agentpack, the project's code, generated entry points, and their bytecode ---------
    prefix = f"{target.deps_dir}/" if target.deps_dir else ""
    with_ui = config.ui if options.ui is None else options.ui
    own_files = agentpack_files(for_environment(own, markers), ui=with_ui)
    code = {rel: (project / rel).read_bytes() for rel in code_paths}
    executable = {rel for rel in code_paths if os.access(project / rel, os.X_OK)}
    off = _bytecode_off_reason(config, options.bytecode_enabled)
    compiled_layer: Path | None = None
    own_pyc = code_pyc = bytecode.Compiled()
    if off is not None:
        bytecode_note = off
    elif interpreter is None:
        bytecode_note = f"none (python{python} not found on this host)"
    else:
        progress("compile")
        compiled_layer = bytecode.compile_layer(interpreter, layer.path, layer.key, cache)
        own_pyc = bytecode.compile_sources(
            interpreter, {r: d for r, d in own_files.items() if r.endswith(".py")}, cache
        )
        sources = {r: d for r, d in code.items() if r.endswith(".py")}
        sources.update({e.path: e.text.encode() for e in generated if e.path.endswith(".py")})
        code_pyc = bytecode.compile_sources(interpreter, sources, cache)
        bytecode_note = _describe_bytecode(interpreter, compiled_layer, own_pyc, code_pyc)

    progress("layout")
    deps_zip = layer_zip(layer.path, target.deps_dir, options.slim, cache, compiled_layer)
    entries: dict[str, Entry] = {}
    for rel, data in [*own_files.items(), *own_pyc.files.items()]:
        entries[prefix + rel] = Entry(prefix + rel, data)
    taken = set(deps_zip.hashes) | set(entries) | {e.path for e in generated}
    clashes = sorted(set(code) & taken)
    if clashes:
        raise ProjectError(
            f"project files clash with packed dependencies or generated files: {', '.join(clashes[:5])}; rename or exclude them"
        )
    for rel, data in code.items():
        entries[rel] = Entry(rel, data, rel in executable)
    for rel, data in code_pyc.files.items():
        entries[rel] = Entry(rel, data)
    for entry in generated:
        entries[entry.path] = Entry(entry.path, entry.text.encode(), entry.executable)
    ordered = [entries[path] for path in sorted(entries)]

    hashes = {**deps_zip.hashes, **{e.path: _sha256(e.data) for e in ordered}}
    unpacked = sum(deps_zip.sizes.values()) + sum(len(e.data) for e in ordered)
    manifest = {
        "agentpack_version": __version__,
        "target": target.name,
        "arch": arch,
        "python": python,
        "platform_tags": list(plat.tags),
        "entry": [e.path for e in generated],
        "app": config.app,
        "port": port,
        "streaming": streaming,
        "dependencies": [{"name": n, "version": v} for n, v in layer.resolved]
        + [{"name": "agentpack", "version": __version__}],
        "bytecode": {"cache_tag": interpreter.cache_tag, "compiled_with": interpreter.full_version}
        if compiled_layer and interpreter
        else None,
        "files": dict(sorted(hashes.items())),
        "slim": options.slim,
        "ui": with_ui,
    }
    if target.unpacked_limit is not None and unpacked > target.unpacked_limit:
        raise _over_budget(
            f"{unpacked / MB:.1f} MB unpacked is over the {target.name} limit of {target.unpacked_limit // MB} MB",
            deps_zip,
        )
    return BuildPlan(
        project=project,
        config=config,
        target=target,
        settings=settings,
        arch=arch,
        python=python,
        platform=plat,
        interpreter=interpreter,
        requirements=requirements,
        request=request,
        layer=layer,
        layer_zip=deps_zip,
        bytecode=bytecode_note,
        generated=generated,
        entries=ordered,
        manifest=manifest,
        manifest_bytes=json.dumps(manifest, indent=1, sort_keys=True).encode(),
        artifact=artifact,
        unpacked_bytes=unpacked,
    )


def _describe_bytecode(
    interpreter: Interpreter, compiled_layer: Path, own: bytecode.Compiled, code: bytecode.Compiled
) -> str:
    layer_failed = bytecode.layer_failures(compiled_layer)
    note = f"{interpreter.cache_tag} (unchecked-hash, compiled by python {interpreter.full_version})"
    left = []
    if code.failed:
        left.append(
            f"project files {', '.join(code.failed[:3])}{' ...' if len(code.failed) > 3 else ''} do not compile with python{interpreter.version}"
        )
    if layer_failed or own.failed:
        left.append(
            f"{len(layer_failed) + len(own.failed)} dependency modules stay source only (not valid python{interpreter.version})"
        )
    return note + (f"; {'; '.join(left)}" if left else "")


# -- writing ------------------------------------------------------------------------------------------
def write_artifact(plan: BuildPlan, progress: Progress = no_progress) -> BuildResult:
    """Write ``plan`` as a zip: to a temporary file, checked, then renamed into place."""
    artifact = plan.artifact
    if artifact.is_file():
        try:
            with zipfile.ZipFile(artifact) as existing:
                same = existing.read(MANIFEST) == plan.manifest_bytes
        except (zipfile.BadZipFile, KeyError, OSError):
            same = False
        if same:
            return _result(plan, unchanged=True, import_check=plan.layer_zip.import_check or "skipped")
    progress("zip")
    artifact.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=artifact.parent, prefix=f".{artifact.name}.", suffix=".tmp")
    os.close(handle)
    temp = Path(temp_name)
    try:
        shutil.copyfile(plan.layer_zip.path, temp)
        zipper.append_zip(
            temp, [*((e.path, e.data, e.executable) for e in plan.entries), (MANIFEST, plan.manifest_bytes, False)]
        )
        size = temp.stat().st_size
        target = plan.target
        if size > target.zip_limit:
            raise _over_budget(
                f"{size / MB:.1f} MB zipped is over the {target.name} limit of {target.zip_limit // MB} MB ({target.limit_note})",
                plan.layer_zip,
            )
        outcome = _import_check(temp, plan, progress)
        os.replace(temp, artifact)
    finally:
        temp.unlink(missing_ok=True)
    return _result(plan, unchanged=False, import_check=outcome)


def _import_check(zip_path: Path, plan: BuildPlan, progress: Progress) -> str:
    """Import every packed distribution with the target's interpreter, when this host can run it (cached per layer zip)."""
    if plan.layer_zip.import_check is not None:
        return plan.layer_zip.import_check
    skipped = why_not_checked(plan.arch, plan.python, plan.interpreter)
    if skipped is not None or plan.interpreter is None:
        return skipped or "skipped"
    progress("check")
    outcome = check_artifact(zip_path, plan.target, plan.python, plan.interpreter)
    plan.layer_zip.record_import_check(outcome)
    return outcome


def build(
    project_dir: Path,
    target_name: str,
    out_dir: Path | None = None,
    *,
    options: BuildOptions | None = None,
    progress: Progress = no_progress,
    **choices: Any,
) -> BuildResult:
    """Plan the artifact, then write it.

    ``options`` holds the build's choices; ``out_dir`` and ``choices`` (any other field of
    :class:`BuildOptions`: ``build(project, "fc", slim=True, ui=True)``; another name is a
    TypeError) are added over them.
    """
    if out_dir is not None:
        choices["out_dir"] = out_dir
    plan = plan_build(project_dir, target_name, dataclasses.replace(options or BuildOptions(), **choices), progress)
    return write_artifact(plan, progress)


def _over_budget(message: str, deps_zip: LayerZip) -> BuildError:
    rows = [{"package": row["package"], "MB": f"{row['bytes'] / MB:.1f}"} for row in deps_zip.largest[:10]]
    return BuildError(f"{message}; biggest packages below (try --slim, or drop some)", rows)


def _result(plan: BuildPlan, unchanged: bool, import_check: str) -> BuildResult:
    return BuildResult(
        artifact=str(plan.artifact),
        sha256=file_sha256(plan.artifact),  # read in blocks: artifacts can be large
        size_bytes=plan.artifact.stat().st_size,
        unpacked_bytes=plan.unpacked_bytes,
        target=plan.target.name,
        arch=plan.arch,
        python=plan.python,
        unchanged=unchanged,
        cached_dependencies=plan.layer.cached,
        import_check=import_check,
        largest_packages=plan.layer_zip.largest[:5],
        dependencies=len(plan.layer.resolved),
        resolver=plan.layer.resolver,
        bytecode=plan.bytecode,
        ui=bool(plan.manifest.get("ui")),
    )
