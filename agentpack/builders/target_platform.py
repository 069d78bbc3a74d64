"""The platform an artifact runs on, as pip and environment markers must see it.

pip is told the platform's wheel tags and Python version on its command line, but it evaluates
environment markers (``python_version < "3.11"``) against the interpreter running it.  The
marker environment here is the target's: its Python (the platform's exact release where the
platform documents one), Linux, and the artifact's CPU architecture.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass

from agentpack.targets import Target


@dataclass(frozen=True)
class Platform:
    """What pip and markers must target: platform tags, interpreter version, machine."""

    target: Target
    arch: str
    python: str  # "3.12"
    python_full: str  # "3.12.4": the release environment markers are evaluated for

    @property
    def tags(self) -> tuple[str, ...]:
        return self.target.platform_tags(self.arch, self.python)

    @property
    def machine(self) -> str:
        """``platform.machine()`` on the target (Linux spells arm64 ``aarch64``)."""
        return {"arm64": "aarch64"}.get(self.arch, self.arch)

    def pip_flags(self) -> list[str]:
        return pip_platform_flags(self.python, self.tags)

    def markers(self) -> dict[str, str]:
        """The PEP 508 marker environment of the target (``extra`` is added per requirement)."""
        if self.target.runs_on_host and not sys.platform.startswith("linux"):  # this machine (macOS)
            return {
                "implementation_name": "cpython",
                "implementation_version": self.python_full,
                "os_name": os.name,
                "platform_machine": platform.machine(),
                "platform_python_implementation": "CPython",
                "platform_release": platform.release(),
                "platform_system": platform.system(),
                "platform_version": platform.version(),
                "python_full_version": self.python_full,
                "python_version": self.python,
                "sys_platform": sys.platform,
            }
        return {
            "implementation_name": "cpython",
            "implementation_version": self.python_full,
            "os_name": "posix",
            "platform_machine": self.machine,
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_system": "Linux",
            "platform_version": "",
            "python_full_version": self.python_full,
            "python_version": self.python,
            "sys_platform": "linux",
        }

    def describe(self) -> str:
        return f"cp{self.python.replace('.', '')}-{self.tags[0]}"


def platform_python(target: Target, python: str, host_full_version: str | None) -> str:
    """The release markers are evaluated for: the platform's documented one, else (for a target
    that is this machine) the interpreter found here, else ``X.Y.0`` — the earliest release, so
    backports a later release would not need are packed rather than missed."""
    if python in target.python_full_versions:
        return target.python_full_versions[python]
    if target.runs_on_host and host_full_version:
        return host_full_version
    return f"{python}.0"


def pip_platform_flags(python: str, tags: tuple[str, ...]) -> list[str]:
    """pip's flags for wheels of CPython ``python`` ("3.12") on a platform with wheel ``tags`` (binary only)."""
    flags = ["--only-binary=:all:", "--implementation", "cp", "--python-version", python]
    for tag in tags:
        flags += ["--platform", tag]
    return flags
