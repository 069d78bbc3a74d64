"""The managed Python runtime's own client, for the target's Python version.

The runtime client is the real ``awslambdaric``, unchanged, installed once per Python version
and machine into agentpack's cache with the build's pip step (``pip install --target``, wheels
only for this machine and that version: the host's own copy is built for the host's Python
only, and the artifact must not see the host's site-packages), next to the runtime's start
script ``bootstrap.py``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from agentpack.emulators.background import EmulatorStartError

#: The managed runtime's own start script, in the runtime directory next to awslambdaric.
BOOTSTRAP = '''"""The managed Python runtime's start: awslambdaric serves the handler named by _HANDLER."""
import os
import sys

sys.path.insert(0, os.environ["LAMBDA_TASK_ROOT"])
from awslambdaric.__main__ import main

main([sys.argv[0], os.environ["_HANDLER"]])
'''


def python_version(python: str) -> tuple[str, str]:
    """``("3.12", "x86_64")`` for the interpreter at ``python`` (wheel tags' spelling of the machine)."""
    from agentpack.builders.interpreters import describe_interpreter

    found = describe_interpreter(python)
    if found is None:
        raise EmulatorStartError(f"{python} does not run")
    return found.version, found.machine


def runtime_client_requirement() -> str:
    """The awslambdaric to emulate with: the host's version when installed (tests and runs agree), else the latest."""
    from importlib import metadata

    try:
        return f"awslambdaric=={metadata.version('awslambdaric')}"
    except metadata.PackageNotFoundError:
        return "awslambdaric"


def runtime_dir(python: str, cache: Path | None = None) -> Path:
    """A directory holding awslambdaric for ``python``'s version and the runtime's ``bootstrap.py``.

    Installed once into the cache (wheels only, for this machine's architecture and glibc and
    the interpreter's version); later calls reuse it.
    """
    from agentpack.builders.cache import cache_root
    from agentpack.builders.dependencies import pip_error, run_pip
    from agentpack.builders.target_platform import pip_platform_flags
    from agentpack.targets import host_glibc, manylinux_tags

    version, machine = python_version(python)
    requirement = runtime_client_requirement()
    root = (
        (cache or cache_root())
        / "lambda-runtime"
        / f"{requirement.replace('==', '-')}-cp{version.replace('.', '')}-{machine}"
    )
    if (root / ".complete").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = root.with_name(root.name + f".{os.getpid()}.tmp")
    flags = pip_platform_flags(version, manylinux_tags(machine, host_glibc()))
    result = run_pip(sys.executable, ["install", "--quiet", "--target", str(staging), *flags, requirement])
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise EmulatorStartError(
            f"could not install {requirement} for Python {version} ({machine}): {pip_error(result.stderr)}"
        )
    (staging / "bootstrap.py").write_text(BOOTSTRAP)
    (staging / ".complete").write_text(requirement)
    try:
        os.replace(staging, root)
    except OSError:  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)
    return root
