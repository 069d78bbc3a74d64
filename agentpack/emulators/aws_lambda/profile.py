"""The Lambda emulator configured from ``[targets.lambda]`` as ``agentpack deploy`` configures
the function: the settings side of the emulator (the row names :class:`LambdaProfile`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentpack.emulators.aws_lambda import emulator as lambda_emulator
from agentpack.emulators.aws_lambda.emulator import LambdaEmulator
from agentpack.emulators.background import EmulatorProfile, Log, configured
from agentpack.targets import LAMBDA_STREAM_WRAPPER


class LambdaProfile(EmulatorProfile):
    """AWS Lambda's managed Python runtime behind a function URL; streaming when the artifact
    carries the exec wrapper, which the build adds when ``streaming`` is true (the default).  The
    artifact decides, not the settings: ``emulate app.zip`` of a buffered build (``streaming =
    false``) runs it buffered, as the deployed function would."""

    def emulator(
        self, code_dir: Path, python: str, settings: Any, env: dict[str, str], *, port: int = 0, instances: int = 1,
        timeout: float | None = None, log: Log | None = None,
    ) -> LambdaEmulator:  # fmt: skip
        return LambdaEmulator(
            code_dir,
            python,
            env,
            streaming=(Path(code_dir) / LAMBDA_STREAM_WRAPPER).exists(),
            timeout=timeout or float(configured(settings, "timeout", stand_in=lambda_emulator.PLATFORM_TIMEOUT)),
            instances=instances,
            port=port,
            memory=int(configured(settings, "memory", stand_in=lambda_emulator.PLATFORM_MEMORY)),
            function_name=str(configured(settings, "function_name", stand_in=lambda_emulator.FUNCTION_NAME)),
            region=str(configured(settings, "region", stand_in=lambda_emulator.REGION)),
            log=log,
        )
