"""Run a built artifact locally under its target's own contract, without Docker.

An emulator starts the unpacked artifact the way the platform would (its interpreter,
environment, entry point and limits) and puts a front on 127.0.0.1 that forwards requests
the way the platform's HTTP entry does, so what works here is what was uploaded.

- :mod:`.emulation` — ``agentpack emulate``: build, unpack read-only, start, ready;
- :mod:`.background` — what every emulator shares: its own event loop in a thread, its log,
  the errors of ``emulate``, and :class:`~.background.EmulatorProfile`, the base of the
  profile a target's row names (``emulator = "module:Class"``), which configures the
  target's emulator from its settings;
- :mod:`.http_function` — Function Compute, AgentRun and ``local`` (an HTTP trigger before
  instances that serve HTTP), one profile per target;
- :mod:`.aws_lambda` — Lambda's managed Python runtime (execution environments, the Runtime
  API, the real runtime client, a function URL);
- :mod:`.h11_server` — the small HTTP/1.1 server every front is built on.

Nothing here branches on target names: what differs between platforms is in the row, the
settings model, or the profile.
"""
