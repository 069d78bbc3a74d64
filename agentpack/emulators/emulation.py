"""``agentpack emulate``: from a project or an artifact to a local URL that behaves like the platform.

Steps, each reported to ``progress``: **build** (a project is built for the target, reusing
the build cache; an artifact zip is taken as it is), **unpack** (into a fresh, read-only
directory — the same bytes that would be uploaded), **start** (the emulator the target's
profile configures from its settings starts the instances with the target's Python version,
from a bare virtual environment so that nothing of the host's site-packages is importable),
**ready** (with the cold-start time).
"""

from __future__ import annotations

import dataclasses
import errno
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentpack.builders.artifact import read_manifest, remove_unpacked, unpack
from agentpack.builders.cache import file_sha256
from agentpack.builders.errors import ProjectError
from agentpack.emulators.background import BackgroundEmulator, EmulationError, Log
from agentpack.targets import get_target

__all__ = ["UI_ENV", "Emulation", "EmulationError", "EmulationOptions", "start"]

#: Called with a step ("build", "unpack", "start", "ready") and a detail for the user.
Progress = Callable[[str, str], None]
#: The variable that makes an app serve its chat page at /ui (read by agentpack/app/protocols.py).
UI_ENV = "AGENTPACK_UI"


def no_progress(step: str, detail: str) -> None:
    """The default :data:`Progress`: says nothing."""


@dataclass(frozen=True)
class EmulationOptions:
    """What one emulation asks for: the ``agentpack emulate`` flags.

    The command line fills one and :func:`start` reads it — a new option is a field here (and
    its flag), nothing in between.
    """

    #: the front's port on 127.0.0.1 (0: any free one)
    port: int = 0
    #: instances (execution environments) to run
    instances: int = 1
    #: variables added to the function's environment, checked by the target's rules
    env: dict[str, str] = field(default_factory=dict)
    #: the function timeout in seconds (default: the settings', as the deployer sets it)
    timeout: float | None = None
    #: serve the chat page at /ui (a project is built with it; an artifact must have it)
    ui: bool = False
    #: where a project's artifact is built (default: its ``dist/``)
    out_dir: Path | None = None


@dataclass
class Emulation:
    """A running emulation; :meth:`stop` ends every instance and removes the unpacked copy."""

    target: str
    artifact: Path
    sha256: str
    python: str
    code_dir: Path
    server: BackgroundEmulator
    cold_start_seconds: float
    built: bool = False
    _scratch: Path | None = field(default=None, repr=False)
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
                remove_unpacked(self._scratch)
                self._scratch = None

    def __enter__(self) -> Emulation:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start(
    source: Path,
    target: str | None,
    options: EmulationOptions | None = None,
    *,
    progress: Progress = no_progress,
    log: Log | None = None,
    **choices: Any,
) -> Emulation:
    """Build (for a project, into ``out_dir``, default its ``dist/``), unpack and start
    ``source`` under ``target``'s emulator.

    ``options`` holds the emulation's choices; ``choices`` (fields of :class:`EmulationOptions`:
    ``start(project, "fc", port=0, instances=2)``) are added over them.  ``ui`` serves the chat
    page at ``/ui``: a project is built with it, an artifact must have been (``agentpack build
    --ui``), and the instances get ``AGENTPACK_UI=1``."""
    from agentpack.builders.config import load_target, project_settings, with_overrides
    from agentpack.builders.environment import secret_values
    from agentpack.builders.interpreters import bare_python

    options = dataclasses.replace(options or EmulationOptions(), **choices)
    source = Path(source)
    if target is None:  # an artifact records the target it was built for
        if not source.is_file():
            raise EmulationError(f"{source} is a project: say which target to build it for with --target")
        try:
            target = str(read_manifest(source).get("target") or "")
        except ProjectError as exc:
            raise EmulationError(str(exc)) from None
        if not target:
            raise EmulationError(f"{source} records no target; give one with --target")
    try:
        spec = get_target(target)
    except KeyError as exc:
        raise EmulationError(f"--target {target}: {exc.args[0]}") from None
    if options.instances < 1:
        raise EmulationError(f"--instances {options.instances}: give 1 or more")
    project: Path | None = None
    built = False
    try:
        if source.is_dir():
            from agentpack.builders.build import build

            project = source
            # the Python the artifact will run with must be here: say so before a build of seconds
            config, _, target_config = load_target(source, spec.name)
            version = target_config.python or config.python or spec.default_python
            if version in spec.pythons:  # one the target does not offer: the build says so
                bare_python(version)
            progress("build", f"building {source} for {target}")
            result = build(
                source,
                target,
                options.out_dir,
                ui=True if options.ui else None,
                progress=lambda step: progress("build", step),  # the builder's steps, named by their keys
            )
            artifact, built = Path(result.artifact), not result.unchanged
        elif source.is_file():
            artifact = source
        else:
            raise EmulationError(f"{source}: no such project directory or artifact zip")
        manifest = read_manifest(artifact)
        if manifest.get("target") != spec.name:
            raise EmulationError(
                f"{artifact} was built for {manifest.get('target')!r}, not {spec.name!r}; emulate it with --target {manifest.get('target')}"
            )
        if options.ui and not manifest.get("ui"):
            raise EmulationError(
                f"{artifact} was built without the chat page; rebuild it with `agentpack build --target {spec.name} --ui` "
                "(or ui = true in agentpack.toml), or emulate the project directory with --ui"
            )
        # --env is checked by the target's own rules (key syntax, reserved names, size), as deploy --env is
        settings = project_settings(project, spec.name)
        settings = with_overrides(settings, {"env": {**settings.env, **options.env}} if options.env else {}, "--env")
        try:
            function_env = settings.platform_environment(secret_values(project))
        except ValueError as exc:  # a secret without a value, or the whole environment over the platform's limit
            raise EmulationError(str(exc)) from None
        python = bare_python(manifest["python"])
    except ProjectError as exc:
        raise EmulationError(str(exc)) from None
    if options.ui:
        function_env = {**function_env, UI_ENV: "1"}
    scratch = Path(tempfile.mkdtemp(prefix="agentpack-emulate-"))
    try:
        progress("unpack", f"unpacking {artifact.name}")
        code_dir = unpack(artifact, scratch)
        count = options.instances
        progress("start", f"starting {count} instance{'s' if count > 1 else ''} with Python {manifest['python']}")
        started = time.perf_counter()
        profile = spec.load("emulator")(spec)
        server = profile.emulator(
            code_dir,
            python,
            settings,
            function_env,
            port=options.port,
            instances=count,
            timeout=options.timeout,
            log=log,
        )
        try:
            server.start()
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise EmulationError(
                f"--port {options.port} is in use on 127.0.0.1; pass another, or --port 0 for any free one"
            ) from None
        cold = time.perf_counter() - started
    except BaseException as exc:
        remove_unpacked(scratch)
        if isinstance(exc, ProjectError):  # the artifact has an entry that points outside it
            raise EmulationError(str(exc)) from None
        raise
    emulation = Emulation(
        spec.name,
        artifact,
        file_sha256(artifact),
        manifest["python"],
        code_dir,
        server,
        cold,
        built,
        scratch,
        ui=options.ui,
    )
    progress("ready", f"{emulation.url} (cold start {cold * 1000:.0f} ms)")
    return emulation
