"""``agentpack emulate``: from a project or an artifact to a local URL that behaves like the platform.

Steps, each reported to ``progress``: **build** (a project is built for the target, reusing
the build cache; an artifact zip is taken as it is), **unpack** (into a fresh, read-only
directory — the same bytes that would be uploaded), **start** (the target's emulator starts
the instances with the target's Python version, from a bare virtual environment so that
nothing of the host's site-packages is importable), **ready** (with the cold-start time).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from agentpack.builders.cache import file_sha256
from agentpack.targets import get_target

#: Called with a step ("build", "unpack", "start", "ready") and a detail for the user.
Progress = Callable[[str, str], None]
MANIFEST = "agentpack-manifest.json"
#: The variable that makes an app serve its chat page at /ui (read by agentpack/app/protocols.py).
UI_ENV = "AGENTPACK_UI"


class EmulationError(Exception):
    """The user's input is wrong (exit 2): a missing file, a target the artifact is not for…"""


@dataclass
class Emulation:
    """A running emulation; :meth:`stop` ends every instance and removes the unpacked copy."""

    target: str
    artifact: Path
    sha256: str
    python: str
    code_dir: Path
    server: Any
    cold_start_seconds: float
    built: bool = False
    _scratch: Optional[Path] = field(default=None, repr=False)
    #: whether the instances serve the chat page (``--ui``)
    ui: bool = False

    @property
    def url(self) -> str:
        return self.server.url

    def describe(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "url": self.url,
            "artifact": str(self.artifact),
            "sha256": self.sha256,
            "python": self.python,
            "cold_start_seconds": round(self.cold_start_seconds, 3),
            "emulator": self.server.describe(),
            **({"ui": f"{self.url}/ui"} if self.ui else {}),
        }

    def stop(self) -> None:
        try:
            self.server.stop()
        finally:
            if self._scratch is not None:
                make_writable(self._scratch)
                shutil.rmtree(self._scratch, ignore_errors=True)
                self._scratch = None

    def __enter__(self) -> "Emulation":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# -- the artifact --------------------------------------------------------------------------------
def read_manifest(artifact: Path) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(artifact) as archive:
            return json.loads(archive.read(MANIFEST))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise EmulationError(f"{artifact}: not an agentpack artifact ({exc}); build one with `agentpack build --target ...`") from None


def unpack(artifact: Path, destination: Path) -> Path:
    """Extract with the archive's file modes, then make the tree read-only (as ``/code`` is)."""
    code = destination / "code"
    code.mkdir(parents=True)
    with zipfile.ZipFile(artifact) as archive:
        for info in archive.infolist():
            target = (code / info.filename).resolve()
            if code.resolve() not in target.parents and target != code.resolve():
                raise EmulationError(f"{artifact}: entry {info.filename!r} points outside the artifact")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, target.open("wb") as out:
                shutil.copyfileobj(source, out)
            mode = (info.external_attr >> 16) & 0o777
            os.chmod(target, (mode or 0o644) & 0o555)
    for root, dirs, _ in os.walk(code):
        for name in dirs:
            os.chmod(Path(root) / name, 0o555)
    os.chmod(code, 0o555)
    return code


def make_writable(path: Path) -> None:
    """Undo :func:`unpack`'s read-only modes (before deleting the tree)."""
    for root, dirs, files in os.walk(path):
        os.chmod(root, 0o755)
        for name in dirs:
            os.chmod(Path(root) / name, 0o755)
        for name in files:
            try:
                os.chmod(Path(root) / name, os.stat(Path(root) / name).st_mode | stat.S_IWUSR)
            except OSError:
                pass


# -- the interpreter ---------------------------------------------------------------------------------
def bare_python(version: str, cache: Optional[Path] = None) -> str:
    """A virtual environment of Python ``version`` with nothing installed (cached): the
    artifact, not the host's site-packages, is all the app can import."""
    from agentpack.builders.cache import cache_root
    from agentpack.builders.interpreters import find_interpreter

    base = find_interpreter(version)
    if base is None:
        raise EmulationError(
            f"the target runs Python {version}, which is not on this machine; install it (e.g. `pyenv install {version}`) "
            "so the artifact runs with the interpreter it was built for"
        )
    root = (cache or cache_root()) / "pythons" / version
    python = root / "bin" / "python"
    root.parent.mkdir(parents=True, exist_ok=True)
    with (root.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two emulators starting at once build it once
        if not (root / ".complete").exists():
            shutil.rmtree(root, ignore_errors=True)
            result = subprocess.run([base, "-m", "venv", "--without-pip", str(root)], capture_output=True, text=True)
            if result.returncode != 0:
                shutil.rmtree(root, ignore_errors=True)
                raise EmulationError(f"could not create a Python {version} environment: {result.stderr.strip()[-300:]}")
            (root / ".complete").write_text(base)
    return str(python)


# -- settings ----------------------------------------------------------------------------------------
def _settings(project: Optional[Path], target: str) -> Any:
    """The project's ``[targets.<target>]`` settings (the target's defaults for a bare artifact)."""
    if project is None:
        return get_target(target).parse_settings()
    from agentpack.builders.config import load_config, target_settings

    config, _ = load_config(project)
    return target_settings(config, target)


def _with_env(settings: Any, env: dict[str, str]) -> Any:
    """``settings`` with ``--env`` values added, checked by the target's own rules (key syntax,
    reserved names, size), as ``deploy --env`` checks them."""
    if not env:
        return settings
    from pydantic import ValidationError

    try:
        return type(settings).model_validate({**settings.model_dump(exclude_unset=True), "env": {**settings.env, **env}})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise EmulationError(f"--env: {first['msg'].removeprefix('Value error, ')}") from None


# -- the whole thing ----------------------------------------------------------------------------------
def start(
    source: Path,
    target: str,
    *,
    port: int = 0,
    instances: int = 1,
    env: Optional[dict[str, str]] = None,
    progress: Progress = lambda step, detail: None,
    log: Optional[Callable[[str], None]] = None,
    timeout: Optional[float] = None,
    out_dir: Optional[Path] = None,
    ui: bool = False,
) -> Emulation:
    """Build (for a project, into ``out_dir``, default its ``dist/``), unpack and start
    ``source`` under ``target``'s emulator.

    ``ui`` serves the chat page at ``/ui``: a project is built with it, an artifact must have
    been (``agentpack build --ui``), and the instances get ``AGENTPACK_UI=1``."""
    from agentpack.builders.errors import ProjectError

    source = Path(source)
    try:
        spec = get_target(target)
    except KeyError as exc:
        raise EmulationError(f"--target {target}: {exc.args[0]}") from None
    if instances < 1:
        raise EmulationError(f"--instances {instances}: give 1 or more")
    project: Optional[Path] = None
    built = False
    if source.is_dir():
        from agentpack.builders.build import build

        project = source
        progress("build", f"building {source} for {target}")
        try:
            result = build(source, target, out_dir, ui=True if ui else None)
        except ProjectError as exc:
            raise EmulationError(str(exc)) from None
        artifact, built = Path(result.artifact), not result.unchanged
    elif source.is_file():
        artifact = source
    else:
        raise EmulationError(f"{source}: no such project directory or artifact zip")
    manifest = read_manifest(artifact)
    if manifest.get("target") != spec.name:
        raise EmulationError(f"{artifact} was built for {manifest.get('target')!r}, not {spec.name!r}; emulate it with --target {manifest.get('target')}")
    if ui and not manifest.get("ui"):
        raise EmulationError(
            f"{artifact} was built without the chat page; rebuild it with `agentpack build --target {spec.name} --ui` "
            "(or ui = true in agentpack.toml), or emulate the project directory with --ui"
        )
    settings = _with_env(_settings(project, spec.name), env or {})
    from agentpack.builders.environment import secret_values

    try:
        function_env = settings.platform_environment(secret_values(project))
    except ValueError as exc:
        raise EmulationError(str(exc)) from None
    if ui:
        function_env = {**function_env, UI_ENV: "1"}
    python = bare_python(manifest["python"])
    scratch = Path(tempfile.mkdtemp(prefix="agentpack-emulate-"))
    try:
        progress("unpack", f"unpacking {artifact.name}")
        code_dir = unpack(artifact, scratch)
        progress("start", f"starting {instances} instance{'s' if instances > 1 else ''} with Python {manifest['python']}")
        started = time.perf_counter()
        server = spec.load("emulator")(spec.name, code_dir, python, settings, function_env, port=port, instances=instances, timeout=timeout, log=log)
        try:
            server.start()
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise EmulationError(f"--port {port} is in use on 127.0.0.1; pass another, or --port 0 for any free one") from None
        cold = time.perf_counter() - started
    except BaseException:
        make_writable(scratch)
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    emulation = Emulation(spec.name, artifact, file_sha256(artifact), manifest["python"], code_dir, server, cold, built, scratch, ui=ui)
    progress("ready", f"{emulation.url} (cold start {cold * 1000:.0f} ms)")
    return emulation
