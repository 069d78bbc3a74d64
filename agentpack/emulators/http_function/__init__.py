"""Function Compute (custom runtime), AgentRun (code) and ``local`` artifacts run the way the
platform runs them, behind an HTTP trigger on ``http://127.0.0.1:<port>``.

::

    emulator = FunctionEmulator(FunctionConfig(code_dir, python, platform="fc", timeout=60)).start()
    ... HTTP to emulator.url ...
    emulator.stop()

Split by piece of the platform, as SAM CLI's ``samcli/local`` is:

- :mod:`.config` — the function as the deployer configures it (:class:`FunctionConfig`);
- :mod:`.profiles` — what each platform puts around an instance (request headers, variables,
  lifecycle hooks, health check, affinity), one profile per target, named by its row;
- :mod:`.instance` — one instance: its process, started, checked and stopped as the platform does;
- :mod:`.front` — the trigger: routing and affinity, limits, timeouts, streaming, the platform's
  errors (:class:`FunctionEmulator`).
"""

from agentpack.emulators.background import EmulatorStartError
from agentpack.emulators.http_function.config import FunctionConfig
from agentpack.emulators.http_function.front import FunctionEmulator
from agentpack.emulators.http_function.profiles import (
    AgentRunProfile,
    AlibabaProfile,
    FunctionComputeProfile,
    FunctionProfile,
    LocalProfile,
)

__all__ = [
    "AgentRunProfile",
    "AlibabaProfile",
    "EmulatorStartError",
    "FunctionComputeProfile",
    "FunctionConfig",
    "FunctionEmulator",
    "FunctionProfile",
    "LocalProfile",
]
