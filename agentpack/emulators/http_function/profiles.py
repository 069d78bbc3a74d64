"""What each platform does around an instance of an HTTP function, as the emulator plays it.

A target's row names its profile (``emulator = "agentpack.emulators.http_function:<Profile>"``);
the front and the instances ask the profile instead of branching on target names.  The facts
come from where they are kept once: the row (the variable the port is passed in, the platform
adapter, lifecycle hooks, health check, session affinity header) and the settings model (the
handler string, the sizing the deployer sends when a setting is unset).  A profile adds only
what the platform itself puts around the app: its request headers and its variables.

The header and variable names are written here *and* in the adapter
(:mod:`agentpack.adapters.http_function`, which reads them inside the artifact) on purpose:
the emulator is the adapter's test oracle, written from the platform's documentation rather
than from the adapter's code, so a wrong name in one shows up as a failing test.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from agentpack.emulators.background import EmulatorProfile, Log, configured
from agentpack.emulators.http_function.config import MB, FunctionConfig

if TYPE_CHECKING:
    from agentpack.emulators.http_function.front import FunctionEmulator

#: The function timeout where neither the settings nor the deployer set one (AgentRun and the
#: local target have no function timeout; a request there may run this long).
UNSET_TIMEOUT = 600
#: The hand-made config's values, which stand in where the platform would pick.
_STAND_INS = {f.name: f.default for f in dataclasses.fields(FunctionConfig) if f.default is not dataclasses.MISSING}

#: An answer the platform itself gives instead of the app's: status, headers, body.
Answer = tuple[int, list[tuple[str, str]], bytes]


def _json(status: int, body: dict[str, Any], *headers: tuple[str, str]) -> Answer:
    return status, [("content-type", "application/json"), *headers], json.dumps(body).encode()


class FunctionProfile(EmulatorProfile):
    """A platform in front of an app that serves HTTP on the port it is given (see the module doc).

    This base is a platform that adds nothing: no request headers, no variables but the port
    (in the row's ``port_env``) and, behind an adapter, ``AGENTPACK_PLATFORM`` and
    ``AGENTPACK_REQUEST_TIMEOUT`` (as the deployers set them).
    """

    #: where a listening socket must be bound for the platform to reach it
    reachable: ClassVar[tuple[str, ...]] = ("0.0.0.0", "::")
    #: request headers that are the platform's own: a client's are dropped, the platform's added
    header_prefix: ClassVar[str | None] = None
    #: the largest request body the platform passes on (None: no limit of its own)
    request_limit: ClassVar[int | None] = None

    # -- the platform's own answers (this base: no platform, so plain HTTP ones) --------------------
    def too_large(self, limit: int) -> Answer:
        """A request body over :attr:`request_limit`."""
        return 413, [("content-type", "text/plain")], f"the request body is over {limit} bytes\n".encode()

    def timed_out(self, seconds: float) -> Answer:
        """A request the function's timeout ended before its answer began."""
        return 504, [("content-type", "text/plain")], f"the request timed out after {seconds:g} seconds\n".encode()

    def crashed(self, milliseconds: float) -> Answer:
        """The instance died while it handled the request."""
        return 502, [("content-type", "text/plain")], b"the server exited before completing the request\n"

    def unreachable(self, detail: str) -> Answer:
        """The instance did not answer (it runs, but the connection failed)."""
        return 502, [("content-type", "text/plain")], f"the server did not answer: {detail}\n".encode()

    def not_started(self, code: str | None, message: str) -> Answer:
        """A new instance (after a death) did not start."""
        return 502, [("content-type", "text/plain")], f"{code or 'NotStarted'}: {message}\n".encode()

    @property
    def lifecycle_hooks(self) -> bool:
        """Whether the platform calls ``POST /initialize`` and ``GET /pre-stop`` on each instance."""
        return self.row.lifecycle_hooks

    def request_headers(self, config: FunctionConfig, request_id: str) -> dict[str, str]:
        """What the platform adds to every request it forwards."""
        return {}

    def hook_headers(self, config: FunctionConfig, path: str) -> dict[str, str]:
        """What the platform sends with a call of the lifecycle hook ``path``."""
        return self.request_headers(config, uuid.uuid4().hex)

    def instance_env(self, config: FunctionConfig, instance_id: str, port: int) -> dict[str, str]:
        """The platform's variables in one instance, which listens on ``port``."""
        env: dict[str, str] = {}
        if self.row.adapter:
            env.update(AGENTPACK_PLATFORM=self.row.adapter, AGENTPACK_REQUEST_TIMEOUT=f"{config.timeout:g}")
        if self.row.port_env:
            env[self.row.port_env] = str(port)
        return env

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
        """The function as ``agentpack deploy`` configures it from ``settings``."""
        return FunctionConfig(
            code_dir=code_dir,
            python=python,
            platform=self.row.name,
            env=env,
            timeout=timeout or float(configured(settings, "timeout", stand_in=UNSET_TIMEOUT)),
            memory_mb=int(configured(settings, "memory", stand_in=_STAND_INS["memory_mb"])),
            instances=instances,
            instance_concurrency=int(
                configured(
                    settings, "instance_concurrency", "session_concurrency", stand_in=_STAND_INS["instance_concurrency"]
                )
            ),
            function_name=str(
                configured(settings, "function_name", "runtime_name", stand_in=_STAND_INS["function_name"])
            ),
            region=str(configured(settings, "region", stand_in=_STAND_INS["region"])),
            role=configured(settings, "role", stand_in=None),
            affinity_header=self.row.affinity_header,
            health_check_path=self.row.health_path,
            port=port,
        )

    def emulator(
        self, code_dir: Path, python: str, settings: Any, env: dict[str, str], *, port: int = 0, instances: int = 1,
        timeout: float | None = None, log: Log | None = None,
    ) -> FunctionEmulator:  # fmt: skip
        from agentpack.emulators.http_function.front import FunctionEmulator

        config = self.config(code_dir, python, settings, env, port=port, instances=instances, timeout=timeout)
        return FunctionEmulator(config, log=log, profile=self)


class LocalProfile(FunctionProfile):
    """The ``local`` target: no platform in front of the app, which may listen on loopback."""

    reachable = ("0.0.0.0", "::", "127.0.0.1", "::1")


class AlibabaProfile(FunctionProfile):
    """Function Compute's infrastructure, which FC and AgentRun share: its request headers
    (``x-fc-*``; with a role, the role's temporary credentials) and control paths for the hooks.

    The answers are Function Compute's own (tests/standins/README.md, "The emulators' answers"):
    a body over 32 MB is 400 ``EntityTooLarge`` ("payload size exceeds maximum allowed size"),
    a timeout and an instance that dies mid-request are 502 with ``X-Fc-Error-Type:
    UnhandledInvocationError`` and an ``errorMessage`` ("Function time out after N seconds",
    "Process exited unexpectedly before completing request (duration: …)").
    """

    header_prefix = "x-fc-"
    request_limit = 32 * MB

    def too_large(self, limit: int) -> Answer:
        message = f"payload size exceeds maximum allowed size ({limit} bytes)"
        return _json(
            400, {"errorCode": "EntityTooLarge", "errorMessage": message}, ("x-fc-error-type", "FcCommonError")
        )

    def timed_out(self, seconds: float) -> Answer:
        return _json(
            502,
            {"errorMessage": f"Function time out after {seconds:g} seconds"},
            ("x-fc-error-type", "UnhandledInvocationError"),
        )

    def crashed(self, milliseconds: float) -> Answer:
        message = f"Process exited unexpectedly before completing request (duration: {milliseconds:.0f}ms)"
        return _json(502, {"errorMessage": message}, ("x-fc-error-type", "UnhandledInvocationError"))

    def unreachable(self, detail: str) -> Answer:
        return _json(
            502,
            {"errorMessage": f"the instance did not answer: {detail}"},
            ("x-fc-error-type", "UnhandledInvocationError"),
        )

    def not_started(self, code: str | None, message: str) -> Answer:
        return _json(
            502,
            {"errorCode": code or "FunctionNotStarted", "errorMessage": message},
            ("x-fc-error-type", "FunctionNotStarted"),
        )

    @property
    def handler(self) -> str | None:
        """The handler string the platform reports (the settings model's, where it has one)."""
        return getattr(self.row.settings, "handler", None)

    def request_headers(self, config: FunctionConfig, request_id: str) -> dict[str, str]:
        headers = {
            "x-fc-request-id": request_id,
            "x-fc-function-name": config.function_name,
            "x-fc-function-memory": str(config.memory_mb),
            **({"x-fc-function-handler": self.handler} if self.handler else {}),
            "x-fc-region": config.region,
            "x-fc-account-id": config.account_id,
            "x-fc-qualifier": "LATEST",
            "x-fc-version-id": "LATEST",
            "x-fc-control-path": "/http-invoke",
        }
        if config.role:  # temporary credentials of the role, made up locally
            headers.update(
                {
                    "x-fc-access-key-id": f"STS.emulated{request_id[:8]}",
                    "x-fc-access-key-secret": uuid.uuid4().hex,
                    "x-fc-security-token": uuid.uuid4().hex,
                }
            )
        return headers

    def hook_headers(self, config: FunctionConfig, path: str) -> dict[str, str]:
        return {**super().hook_headers(config, path), "x-fc-control-path": path}


class AgentRunProfile(AlibabaProfile):
    """An AgentRun code runtime: FC's headers; the port in ``PORT``, a health check (the row's).

    AgentRun documents no request size limit and no error answers of its data plane
    [assumed, tests/standins/README.md]: the emulator takes 32 MB (it serves through FC's
    gateway, as its ``x-fc-*`` headers show) and answers in AgentRun's own error envelope
    ``{"code", "message", "requestId"}`` (the one its API uses) with plain HTTP statuses, never
    FC's ``X-Fc-Error-Type``.  Clients treat any non-2xx as an error, so either answer works.
    """

    request_limit = 32 * MB

    @staticmethod
    def _error(status: int, code: str, message: str) -> Answer:
        return _json(status, {"code": code, "message": message})

    def too_large(self, limit: int) -> Answer:
        return self._error(413, "PayloadTooLarge", f"the request body is over the {limit // MB} MB limit")

    def timed_out(self, seconds: float) -> Answer:
        return self._error(504, "RequestTimeout", f"the request timed out after {seconds:g} seconds")

    def crashed(self, milliseconds: float) -> Answer:
        return self._error(
            502,
            "InstanceExited",
            f"the agent runtime's process exited before completing the request ({milliseconds:.0f} ms)",
        )

    def unreachable(self, detail: str) -> Answer:
        return self._error(502, "InstanceUnreachable", f"the agent runtime did not answer: {detail}")

    def not_started(self, code: str | None, message: str) -> Answer:
        return self._error(502, code or "InstanceNotStarted", message)


class FunctionComputeProfile(AlibabaProfile):
    """Function Compute 3.0's custom runtime: FC's headers, and its system variables
    (``FC_FUNCTION_NAME``, ``FC_REGION``, ``FC_INSTANCE_ID``, the code path…) in each instance."""

    def instance_env(self, config: FunctionConfig, instance_id: str, port: int) -> dict[str, str]:
        return {
            **super().instance_env(config, instance_id, port),
            "FC_FUNC_CODE_PATH": str(config.code_dir),
            "FC_FUNCTION_NAME": config.function_name,
            **({"FC_FUNCTION_HANDLER": self.handler} if self.handler else {}),
            "FC_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
            "FC_REGION": config.region,
            "FC_ACCOUNT_ID": config.account_id,
            "FC_INSTANCE_ID": instance_id,
            "FC_FUNCTION_VERSION": "LATEST",
        }
