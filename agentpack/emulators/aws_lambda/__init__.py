"""An unpacked Lambda artifact run the way the managed Python runtime runs it, behind a function URL.

::

    emulator = LambdaEmulator(code_dir, python="/usr/bin/python3.12", env={"KEY": "v"}, streaming=True, timeout=30)
    emulator.start()          # every environment initialised, or EmulatorStartError
    ... HTTP to emulator.url ...
    emulator.stop()

Split by piece of the platform, as SAM CLI's ``samcli/local`` is:

- :mod:`.function_url` — the front: HTTP requests in, payload-2.0 events out, answers back in
  the URL's invoke mode (``BUFFERED`` or ``RESPONSE_STREAM``);
- :mod:`.runtime_api` — the Runtime API one execution environment talks to, with the
  platform's limits, and the dispatcher that hands invocations to free environments;
- :mod:`.runtime_client` — the managed runtime's own client (the real awslambdaric) for the
  target's Python;
- :mod:`.environment` — one execution environment: its runtime process, init, timeouts, resets;
- :mod:`.emulator` — the environments behind the front (:class:`LambdaEmulator`), and the
  variables the platform sets;
- :mod:`.profile` — ``[targets.lambda]`` turned into a configured emulator (:class:`LambdaProfile`).
"""

from agentpack.emulators.aws_lambda.emulator import LambdaEmulator
from agentpack.emulators.aws_lambda.profile import LambdaProfile
from agentpack.emulators.background import EmulatorStartError

__all__ = ["EmulatorStartError", "LambdaEmulator", "LambdaProfile"]
