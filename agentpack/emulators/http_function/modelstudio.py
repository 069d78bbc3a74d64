"""Model Studio's high-code runtime as the emulator plays it.

The platform installs the uploaded wheel and starts ``python3 <installed>/deploy_starter/main.py``,
which must serve on 0.0.0.0:8080 (tests/standins/README.md, "Model Studio", with sources and
what is assumed).  The emulator unpacks the artifact — what ``pip install --target`` does with a
pure wheel, but for the ``.dist-info`` bookkeeping — and starts ``deploy_starter/main.py`` with
the target's Python in place of ``bootstrap``; the platform adds no request headers and no
lifecycle hooks that agentpack relies on.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from agentpack.emulators.http_function.config import FunctionConfig
from agentpack.emulators.http_function.profiles import FunctionProfile
from agentpack.targets import MODELSTUDIO_STARTER


class ModelStudioProfile(FunctionProfile):
    """A high-code agent: ``deploy_starter/main.py`` started by the platform's interpreter, port in ``PORT``."""

    def config(
        self,
        code_dir: Path,
        python: str,
        settings: Any,
        env: dict[str, str],
        *,
        port: int = 0,
        instances: int = 1,
        timeout: float | None = None,
    ) -> FunctionConfig:
        config = super().config(code_dir, python, settings, env, port=port, instances=instances, timeout=timeout)
        return dataclasses.replace(config, command=[python, f"./{MODELSTUDIO_STARTER}/main.py"])
