"""The function as the deployer configures it and the platform runs it: the settings side of
the HTTP-function emulator (the front, the instances and the profile all read it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MB = 1024 * 1024


@dataclass
class FunctionConfig:
    """The function as the deployer configures it (and as the platform runs it).

    ``platform`` names the target whose platform is played (its row's emulator profile:
    ``fc``, ``agentrun``, or ``local`` for no platform in front of the app).  A profile fills
    one from the target's settings (:meth:`FunctionProfile.config
    <agentpack.emulators.http_function.profiles.FunctionProfile.config>`); the defaults here
    serve a config made by hand.
    """

    code_dir: Path
    python: str  #: the interpreter standing in for the platform's (its version is the target's)
    platform: str = "fc"
    command: list[str] = field(default_factory=lambda: ["./bootstrap"])
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 60.0
    memory_mb: int = 1024
    instances: int = 1
    instance_concurrency: int = 20
    function_name: str = "agentpack-function"
    region: str = "cn-hangzhou"
    account_id: str = "1234567890123456"
    role: str | None = None  #: with a role, requests carry temporary credentials
    initializer: bool = True  #: call ``POST /initialize`` once per instance (where the platform has the hook)
    pre_stop: bool = True  #: call ``GET /pre-stop`` before an instance is stopped (idem)
    affinity_header: str | None = None
    #: a health check the platform runs once the port listens (AgentRun: the one the deployer configures)
    health_check_path: str | None = None
    #: the largest request body passed on; None: the platform's own (its profile's ``request_limit``)
    request_limit: int | None = None
    start_timeout: float = 120.0
    port: int = 0  #: the front's port (0: any free one)
