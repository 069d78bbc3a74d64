"""``build()``: project directory + target -> one reproducible artifact, or a clear failure.

Steps: read the config and check the app (user errors stop here, before any work);
resolve and install dependencies for the target platform (cached); lay out code,
dependencies, agentpack itself and the generated entry point as the target's row says;
check size budgets; write the zip atomically (nothing half-written is ever left behind);
run the import check where this host can run the target.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

from agentpack._version import __version__
from agentpack.builders import deps, zipper
from agentpack.builders.config import load_config
from agentpack.builders.errors import BuildError, ProjectError
from agentpack.builders.files import project_files
from agentpack.targets import MB, EntryContext, Target, get_target, host_arch

MANIFEST = "agentpack-manifest.json"
#: Called with a step name ("resolve", "download", "layout", "zip", "check") as the build moves on.
Progress = Callable[[str], None]


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
    largest_packages: list[dict] = field(default_factory=list)
    dependencies: int = 0

    def to_json(self) -> dict:
        return asdict(self)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    import ast

    try:
        tree = ast.parse(module_text)
    except SyntaxError as exc:
        raise ProjectError(f"{where}: line {exc.lineno}: {exc.msg}; fix the syntax") from None
    assigned: dict[str, ast.AST] = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        for name in targets:
            if isinstance(name, ast.Name) and getattr(node, "value", None) is not None:
                assigned[name.id] = node.value  # type: ignore[attr-defined]
    attr = attr or next((a for a in ("app", "agent_app", "application") if a in assigned), "")
    if not attr or attr not in assigned:
        raise ProjectError(f'app = "{spec}": {where} assigns no {attr or "app"!r} at top level; name the variable that holds the app')
    value = assigned[attr]
    if isinstance(value, ast.Constant) or isinstance(value, (ast.List, ast.Dict, ast.Tuple, ast.Set)):
        raise ProjectError(f'app = "{spec}": {attr} is a {type(getattr(value, "value", value)).__name__}, not an ASGI app such as AgentApp()')


def _sizes_by_distribution(layer: Path, files: dict[str, int]) -> list[dict]:
    """Installed size per distribution (from RECORD), largest first."""
    owner: dict[str, str] = {}
    for info in layer.glob("*.dist-info"):
        name = info.name[: -len(".dist-info")].rsplit("-", 1)[0]
        record = info / "RECORD"
        for line in record.read_text().splitlines() if record.is_file() else []:
            owner[line.split(",", 1)[0]] = name
    totals: dict[str, int] = {}
    for relative, size in files.items():
        name = owner.get(relative, relative.split("/", 1)[0])
        totals[name] = totals.get(name, 0) + size
    return [{"package": n, "bytes": b} for n, b in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))]


@dataclass
class _LayerZip:
    path: Path
    hashes: dict[str, str]
    sizes: dict[str, int]
    largest: list[dict]
    import_check: Optional[str]


def _layer_zip(layer: Path, deps_dir: str, slim: bool, cache: Path) -> _LayerZip:
    """The dependency part of artifacts, zipped once per (layer, placement, slim) and reused."""
    key = hashlib.sha256(f"{layer.name}|{deps_dir}|{slim}|{zipper.fixed_date()}|zip-1".encode()).hexdigest()[:32]
    zip_path = cache / "layer-zips" / f"{key}.zip"
    meta_path = zip_path.with_suffix(".json")
    if zip_path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        return _LayerZip(zip_path, meta["hashes"], meta["sizes"], meta["largest"], meta.get("import_check"))
    entries = []
    for path in sorted(p for p in layer.rglob("*") if p.is_file() and p.name != ".complete"):
        relative = path.relative_to(layer).as_posix()
        if slim and deps.slim_away(relative):
            continue
        entries.append((relative, path))
    prefix = f"{deps_dir}/" if deps_dir else ""
    hashes = {prefix + rel: _file_sha256(path) for rel, path in entries}
    sizes = {rel: path.stat().st_size for rel, path in entries}
    largest = _sizes_by_distribution(layer, sizes)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkstemp(dir=zip_path.parent, suffix=".tmp")[1])
    try:
        zipper.write_zip(staging, ((prefix + rel, path, os.access(path, os.X_OK)) for rel, path in entries))
        meta_path.write_text(json.dumps({"hashes": hashes, "sizes": {prefix + k: v for k, v in sizes.items()}, "largest": largest}))
        os.replace(staging, zip_path)
    finally:
        staging.unlink(missing_ok=True)
    return _LayerZip(zip_path, hashes, {prefix + k: v for k, v in sizes.items()}, largest, None)


def _record_import_check(layer_zip: _LayerZip, outcome: str) -> None:
    meta_path = layer_zip.path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["import_check"] = outcome
    meta_path.write_text(json.dumps(meta))


def build(
    project_dir: Path,
    target_name: str,
    out_dir: Optional[Path] = None,
    arch: Optional[str] = None,
    python: Optional[str] = None,
    slim: bool = False,
    progress: Progress = lambda step: None,
) -> BuildResult:
    project = Path(project_dir).resolve()
    config, _source = load_config(project)
    try:
        target = get_target(target_name)
    except KeyError as exc:
        raise ProjectError(f"--target {target_name}: {exc.args[0]}") from None
    settings = config.targets.get(target.name)
    arch = arch or (settings.arch if settings and settings.arch else None) or target.default_arch
    if arch not in target.archs:
        raise ProjectError(f"--arch {arch}: target {target.name} runs on {', '.join(target.archs)}")
    python = python or config.python or target.default_python
    if python not in target.pythons:
        raise ProjectError(f"--python {python}: target {target.name} offers Python {', '.join(target.pythons)}")
    check_app(project, config.app)
    out = (Path(out_dir) if out_dir else project / "dist").resolve()
    name = config.name or project.name
    artifact = out / f"{name}-{target.name}-{python}-{arch}.zip"

    # -- dependencies ---------------------------------------------------------------------
    cache = deps.cache_root()
    plat = deps.Platform(target, arch, python)
    requirements, _req_source = deps.project_requirements(project, config.requirements)
    progress("resolve")
    wanted = sorted(set(requirements + deps.agentpack_requirements() + list(target.extra_requirements)))
    resolved, layer, cached = deps.dependencies(wanted, plat, cache, on_download=lambda: progress("download"))

    # -- layout ----------------------------------------------------------------------------
    progress("layout")
    layer_zip = _layer_zip(layer, target.deps_dir, slim, cache)
    prefix = f"{target.deps_dir}/" if target.deps_dir else ""
    code = {rel: project / rel for rel in project_files(project, config.include, config.exclude, out)}
    own = {prefix + rel: data for rel, data in deps.agentpack_files().items()}
    port = (settings.port if settings and settings.port else None) or target.default_port
    streaming = bool(settings and settings.streaming)
    generated = target.entry_files(EntryContext(config.app, python, port, target.deps_dir, streaming))
    clashes = sorted((set(code) & (set(layer_zip.hashes) | set(own))) | (set(code) & {e.path for e in generated}))
    if clashes:
        raise ProjectError(f"project files clash with packed dependencies or generated files: {', '.join(clashes[:5])}; rename or exclude them")

    entries: list[tuple[str, zipper.Data, bool]] = []
    hashes = dict(layer_zip.hashes)
    for rel, data in sorted(own.items()):
        entries.append((rel, data, False))
        hashes[rel] = _sha256(data)
    for rel, path in sorted(code.items()):
        content = path.read_bytes()
        entries.append((rel, content, os.access(path, os.X_OK)))
        hashes[rel] = _sha256(content)
    for entry in sorted(generated, key=lambda e: e.path):
        content = entry.text.encode()
        entries.append((entry.path, content, entry.executable))
        hashes[entry.path] = _sha256(content)
    unpacked = sum(layer_zip.sizes.values()) + sum(len(d) if isinstance(d, bytes) else 0 for _, d, _ in entries)
    manifest = {
        "agentpack_version": __version__,
        "target": target.name,
        "arch": arch,
        "python": python,
        "platform_tags": list(plat.tags),
        "entry": [e.path for e in generated],
        "app": config.app,
        "dependencies": [{"name": n, "version": v} for n, v in resolved] + [{"name": "agentpack", "version": __version__}],
        "files": dict(sorted(hashes.items())),
        "slim": slim,
    }
    manifest_bytes = json.dumps(manifest, indent=1, sort_keys=True).encode()

    if target.unpacked_limit is not None and unpacked > target.unpacked_limit:
        raise _over_budget(f"{unpacked / MB:.1f} MB unpacked is over the {target.name} limit of {target.unpacked_limit // MB} MB", layer_zip)

    if artifact.is_file():
        try:
            with zipfile.ZipFile(artifact) as existing:
                same = existing.read(MANIFEST) == manifest_bytes
        except (zipfile.BadZipFile, KeyError):
            same = False
        if same:
            data = artifact.read_bytes()
            return _result(artifact, data, unpacked, target, arch, python, True, cached, layer_zip, len(resolved))

    # -- zip, atomically ---------------------------------------------------------------------
    progress("zip")
    out.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=out, prefix=f".{artifact.name}.", suffix=".tmp")
    os.close(handle)
    temp = Path(temp_name)
    try:
        shutil.copyfile(layer_zip.path, temp)
        zipper.append_zip(temp, [*entries, (MANIFEST, manifest_bytes, False)])
        size = temp.stat().st_size
        if size > target.zip_limit:
            raise _over_budget(
                f"{size / MB:.1f} MB zipped is over the {target.name} limit of {target.zip_limit // MB} MB ({target.limit_note})", layer_zip
            )
        outcome = _import_check(temp, target, arch, python, layer_zip, progress)
        os.replace(temp, artifact)
    finally:
        temp.unlink(missing_ok=True)
    result = _result(artifact, artifact.read_bytes(), unpacked, target, arch, python, False, cached, layer_zip, len(resolved))
    result.import_check = outcome
    return result


def _import_check(zip_path: Path, target: Target, arch: str, python: str, layer_zip: _LayerZip, progress: Progress) -> str:
    """Import every packed distribution with the target's interpreter, when this host can run it."""
    if layer_zip.import_check is not None:
        return layer_zip.import_check
    if arch != host_arch() or os.uname().sysname != "Linux":
        return f"skipped: this host ({host_arch()}) cannot run {arch} code"
    interpreter = deps.find_interpreter(python)
    if interpreter is None:
        return f"skipped: no python{python} on this host"
    progress("check")
    with tempfile.TemporaryDirectory(prefix="agentpack-check-") as tmp:
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(tmp)
        unpacked = Path(tmp)
        modules = deps.top_level_modules(unpacked / target.deps_dir if target.deps_dir else unpacked)
        failure = deps.import_check(unpacked, target.deps_dir, modules, interpreter)
    if failure is not None:
        raise BuildError(f"packed dependencies do not import with python{python}: {failure}")
    outcome = f"passed: {len(modules)} modules imported with python{python}"
    _record_import_check(layer_zip, outcome)
    return outcome


def _over_budget(message: str, layer_zip: _LayerZip) -> BuildError:
    rows = [{"package": row["package"], "MB": f"{row['bytes'] / MB:.1f}"} for row in layer_zip.largest[:10]]
    return BuildError(f"{message}; biggest packages below (try --slim, or drop some)", rows)


def _result(artifact: Path, data: bytes, unpacked: int, target: Target, arch: str, python: str, unchanged: bool, cached: bool, layer_zip: _LayerZip, count: int) -> BuildResult:
    return BuildResult(
        artifact=str(artifact),
        sha256=_sha256(data),
        size_bytes=len(data),
        unpacked_bytes=unpacked,
        target=target.name,
        arch=arch,
        python=python,
        unchanged=unchanged,
        cached_dependencies=cached,
        import_check=layer_zip.import_check or "skipped",
        largest_packages=layer_zip.largest[:5],
        dependencies=count,
    )
