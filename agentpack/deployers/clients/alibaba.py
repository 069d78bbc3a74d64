"""What the FC, AgentRun and OSS clients share when they talk to Alibaba Cloud.

Four things live here, so that the per-product clients (``clients.fc``, ``clients.agentrun``,
``clients.oss``) stay small:

* **Credentials** from the standard places, in the order the Alibaba Cloud SDKs use: the
  ``ALIBABA_CLOUD_ACCESS_KEY_ID`` / ``_SECRET`` (/ ``_SECURITY_TOKEN``) environment variables,
  then the CLI's ``~/.aliyun/config.json``, then the credentials file
  ``~/.alibabacloud/credentials.ini`` (or ``ALIBABA_CLOUD_CREDENTIALS_FILE``). The
  environment is read when credentials are resolved, not when a module is imported, and
  the instance-metadata service is never probed (it would hang a laptop for seconds).
  Nothing found is a :class:`CredentialsError` that says what to set.
* **Endpoints**: a product's regional endpoint unless an override is given (argument or
  environment variable); ``http://`` is allowed so that tests can point the real SDK at a
  loopback stand-in.
* **Errors and retries**: every SDK exception becomes a :class:`PlatformError` with the
  platform's code, message, request id and HTTP status; throttling and 5xx answers are
  retried with capped exponential backoff (:func:`retryable`), nothing else is.
* **The product client** (:class:`AlibabaApi`): the SDK client built on first use from the
  product's package, calls through the retries, "404 means there is none" for reads and
  deletes, and waits with a deadline (:class:`PollPolicy`).

The SDKs are imported inside functions so that ``import agentpack`` stays light.
"""

from __future__ import annotations

import base64
import importlib
import logging
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from agentpack.deployers.clients.timeouts import API_TIMEOUT_ENV, CONNECT_TIMEOUT, api_timeout
from agentpack.deployers.errors import DeployConfigError, PlatformError

if TYPE_CHECKING:
    from alibabacloud_tea_openapi.client import Client as OpenApiClient
    from alibabacloud_tea_openapi.utils_models import Config as OpenApiConfig
    from darabonba.runtime import RuntimeOptions

T = TypeVar("T")

ENV_ACCESS_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_ACCESS_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
ENV_SECURITY_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"
ENV_CREDENTIALS_FILE = "ALIBABA_CLOUD_CREDENTIALS_FILE"
ENV_PROFILE = "ALIBABA_CLOUD_PROFILE"
ENV_REGION = "ALIBABA_CLOUD_REGION_ID"

# Error codes that mean "slow down" whatever HTTP status carries them.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "Throttling.User",
        "Throttling.Api",
        "Throttling.Concurrent",
        "ThrottlingException",
        "ResourceThrottled",
        "ResourceExhausted",
        "TooManyRequests",
        "RATE_LIMITED",
        "ERR_THROTTLED",
    }
)


class AlibabaConfigError(DeployConfigError):
    """The user's setup is wrong or incomplete (the CLI reports it and exits 2)."""


class CredentialsError(AlibabaConfigError):
    """No usable Alibaba Cloud credentials were found; the message says what to set."""


def retryable(error: PlatformError) -> bool:
    """Whether a failed call is worth repeating: a 5xx or 429 answer, or a throttling code."""
    code = error.code or ""
    throttled = code in THROTTLING_CODES or code.startswith("Throttling")
    return (error.status is not None and (error.status >= 500 or error.status == 429)) or throttled


# -- credentials ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)
    source: str = "environment"


_MISSING_HELP = (
    f"set {ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET} (plus {ENV_SECURITY_TOKEN} for STS credentials), "
    "or configure a profile with `aliyun configure` (~/.aliyun/config.json) or in ~/.alibabacloud/credentials.ini"
)


def resolve_credentials(environ: Mapping[str, str] | None = None, home: str | None = None) -> Credentials:
    """Find credentials in the standard places, first hit wins; raise CredentialsError if none."""
    env = os.environ if environ is None else environ
    key_id, secret = env.get(ENV_ACCESS_KEY_ID) or "", env.get(ENV_ACCESS_KEY_SECRET) or ""
    if key_id and secret:
        return Credentials(key_id, secret, env.get(ENV_SECURITY_TOKEN) or None, "environment")
    if key_id or secret:
        missing = ENV_ACCESS_KEY_SECRET if key_id else ENV_ACCESS_KEY_ID
        present = ENV_ACCESS_KEY_ID if key_id else ENV_ACCESS_KEY_SECRET
        raise CredentialsError(f"{present} is set but {missing} is not: set both (or neither, to use a profile file)")

    home_dir = Path(home) if home is not None else Path.home()
    profile = env.get(ENV_PROFILE) or None
    cli_config = home_dir / ".aliyun" / "config.json"
    if cli_config.is_file():
        return _from_provider("cli_profile", cli_config, profile)
    explicit_file = env.get(ENV_CREDENTIALS_FILE)
    candidates = (
        [Path(explicit_file)]
        if explicit_file
        else [home_dir / ".alibabacloud" / "credentials.ini", home_dir / ".alibabacloud" / "credentials"]
    )
    if explicit_file and not candidates[0].is_file():
        raise CredentialsError(f"{ENV_CREDENTIALS_FILE} names {explicit_file}, which does not exist")
    for path in candidates:
        if path.is_file():
            return _from_provider("profile", path, profile or "default")
    raise CredentialsError(f"no Alibaba Cloud credentials found: {_MISSING_HELP}")


def _from_provider(kind: str, path: Path, profile: str | None) -> Credentials:
    from alibabacloud_credentials.provider import CLIProfileCredentialsProvider, ProfileCredentialsProvider

    if kind == "cli_profile":
        provider: CLIProfileCredentialsProvider | ProfileCredentialsProvider = CLIProfileCredentialsProvider(
            profile_file=str(path), profile_name=profile
        )
    else:
        provider = ProfileCredentialsProvider(profile_file=str(path), profile_name=profile)
    try:
        found = provider.get_credentials()
    except Exception as exc:  # the providers raise plain exceptions with readable messages
        which = f"profile {profile!r} in " if profile else ""
        raise CredentialsError(f"could not read Alibaba Cloud credentials from {which}{path}: {exc}") from exc
    key_id, secret = found.get_access_key_id(), found.get_access_key_secret()
    if not key_id or not secret:
        raise CredentialsError(f"{path} has no access key for profile {profile or 'default'}: {_MISSING_HELP}")
    return Credentials(key_id, secret, found.get_security_token() or None, f"{kind}:{path}")


# -- endpoints -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    host: str  # host[:port], what the SDK calls the endpoint
    protocol: str = "https"


def resolve_endpoint(explicit: str | None, env_var: str, environ: Mapping[str, str] | None = None) -> Endpoint | None:
    """The override from the argument or ``env_var``; None means the product's regional default."""
    env = os.environ if environ is None else environ
    value = (explicit or env.get(env_var) or "").strip()
    if not value:
        return None
    source = "the endpoint argument" if explicit else env_var
    protocol = "https"
    if "://" in value:
        protocol, _, value = value.partition("://")
        protocol = protocol.lower()
        if protocol not in {"http", "https"}:
            raise AlibabaConfigError(
                f"{source}: unsupported scheme {protocol!r}; use https://host[:port] or http://host[:port]"
            )
    value = value.rstrip("/")
    if not value or "/" in value or "?" in value:
        raise AlibabaConfigError(
            f"{source}: {value!r} is not host[:port] (no path); e.g. fcv3.cn-hangzhou.aliyuncs.com"
        )
    return Endpoint(value, protocol)


#: Each control-plane call is logged here at DEBUG before it is sent (the CLI says what it waits for).
calls_logger = logging.getLogger("agentpack.api")


def sdk_config(
    credentials: Credentials,
    *,
    region: str | None,
    endpoint: Endpoint | None,
    connect_timeout_ms: int = int(CONNECT_TIMEOUT * 1000),
    read_timeout_ms: int | None = None,
) -> OpenApiConfig:
    """An ``alibabacloud_tea_openapi`` Config for a product client (read timeout: :func:`api_timeout`)."""
    from alibabacloud_tea_openapi import utils_models as open_api_models

    if endpoint is None and not region:
        raise AlibabaConfigError(f"no region: set the target's region in agentpack.toml or {ENV_REGION}")
    config = open_api_models.Config(
        access_key_id=credentials.access_key_id,
        access_key_secret=credentials.access_key_secret,
        security_token=credentials.security_token,
        region_id=region,
        connect_timeout=connect_timeout_ms,
        read_timeout=read_timeout_ms if read_timeout_ms is not None else int(api_timeout() * 1000),
        user_agent="agentpack",
    )
    if endpoint is not None:
        config.endpoint = endpoint.host
        config.protocol = endpoint.protocol
    return config


def sdk_runtime() -> RuntimeOptions:
    """Per-call options: the SDK's own retries stay off, :func:`call` does them."""
    from darabonba.runtime import RuntimeOptions

    return RuntimeOptions(autoretry=False)


# -- code -------------------------------------------------------------------------------------------

#: Both products take a code zip inline (base64 in the request body) up to this size.
MAX_INLINE_ZIP_BYTES = 100 * 1024 * 1024


def code_location(zip_bytes: bytes | None, bucket: str | None, key: str | None, too_big: str) -> dict[str, Any] | None:
    """Where the code is, as FC's ``code`` and AgentRun's ``codeConfiguration`` both take it: an
    inline zip (``zipFile``), or an OSS object (``ossBucketName`` + ``ossObjectName``); None
    keeps the current code on an update.  ``too_big`` ends the message for a zip over the limit."""
    if zip_bytes is not None and bucket:
        raise AlibabaConfigError("give the code inline (zip_bytes) or from OSS, not both")
    if zip_bytes is not None:
        if len(zip_bytes) > MAX_INLINE_ZIP_BYTES:
            raise AlibabaConfigError(f"the artifact is {len(zip_bytes) / 2**20:.1f} MB zipped; {too_big}")
        return {"zipFile": base64.b64encode(zip_bytes).decode("ascii")}
    if bucket or key:
        if not (bucket and key):
            raise AlibabaConfigError("code from OSS needs both the bucket and the object name")
        return {"ossBucketName": bucket, "ossObjectName": key}
    return None


# -- errors and retries ------------------------------------------------------------------------------


def only_one(matches: list[dict[str, Any]], kind: str, name: str, id_key: str, action: str, where: str = "") -> Any:
    """The one resource in ``matches`` (those a list call found named ``name``), None when there is
    none.  Names are how agentpack finds its resources again, so two of one name is an error that
    names their ids rather than a guess."""
    if len(matches) > 1:
        ids = ", ".join(str(item.get(id_key)) for item in matches)
        raise PlatformError(
            "AmbiguousName",
            f"{len(matches)} {kind} are named {name!r}{where} ({ids}); delete the extra ones",
            action=action,
        )
    return matches[0] if matches else None


def to_platform_error(exc: BaseException, action: str | None = None) -> PlatformError:
    """Map whatever the SDK raised to a PlatformError, keeping the platform's own words."""
    if isinstance(exc, PlatformError):
        return exc
    data = getattr(exc, "data", None)
    data = data if isinstance(data, dict) else {}
    status = getattr(exc, "status_code", None) or data.get("statusCode")
    code = getattr(exc, "code", None)
    if status is not None or "Code" in data or "code" in data:
        message = data.get("Message") or data.get("message") or getattr(exc, "message", None) or str(exc)
        request_id = getattr(exc, "request_id", None) or data.get("RequestId") or data.get("requestId")
        if request_id in ("None", ""):
            request_id = None
        return PlatformError(
            str(code or data.get("Code") or data.get("code") or "Unknown"),
            str(message),
            request_id,
            int(status) if status is not None else None,
            action,
        )
    inner = getattr(exc, "inner_exception", None)
    if inner is not None:  # the SDK wraps failures to send: network ones arrive as its RetryError
        if "Read timed out" in str(getattr(inner, "message", None) or inner):
            return PlatformError(
                "Timeout", _no_answer(str(getattr(inner, "message", None) or inner)), None, None, action
            )
        if type(inner).__name__ == "RetryError" or isinstance(inner, OSError):
            return PlatformError(
                "ConnectionError", f"could not reach the endpoint: {_connection_reason(inner)}", None, None, action
            )
        return PlatformError(
            "RequestError", f"the request could not be sent: {type(inner).__name__}: {inner}", None, None, action
        )
    return PlatformError(type(exc).__name__, str(exc) or repr(exc), None, None, action)


def _no_answer(text: str) -> str:
    """What a read timeout means: the endpoint took the connection and never answered."""
    import re

    host = re.search(r"host='([^']+)', port=(\d+)", text)
    seconds = re.search(r"read timeout=([\d.]+)", text)
    where = f"{host.group(1)}:{host.group(2)}" if host else "the endpoint"
    within = f" within {float(seconds.group(1)):g} s" if seconds else ""
    return (
        f"{where} accepted the connection but sent no answer{within}; check the endpoint and the network "
        f"({API_TIMEOUT_ENV} sets how long to wait)"
    )


def _connection_reason(error: BaseException) -> str:
    """The reason inside the HTTP stack's nested message (``[Errno 111] Connection refused``…)."""
    import re

    text = str(getattr(error, "message", None) or error)
    found = re.search(r"\[Errno -?\d+\] ([^\"'\)\\]+)", text)
    host = re.search(r"host='([^']+)', port=(\d+)", text)
    reason = found.group(1).strip() if found else text[:300]
    return f"{host.group(1)}:{host.group(2)}: {reason}" if host else reason


@dataclass
class RetryPolicy:
    """Capped exponential backoff with full jitter; ``sleep`` is swappable for tests."""

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 10.0
    sleep: Callable[[float], None] = time.sleep

    def delay(self, attempt: int, retry_after_ms: int | None = None) -> float:
        if retry_after_ms:
            return min(retry_after_ms / 1000, self.max_delay)
        return random.uniform(0, min(self.max_delay, self.base_delay * (2**attempt)))


# Exceptions raised from these packages are answers (or transport failures) of a call.
_SDK_PACKAGES = frozenset(
    {
        "darabonba",
        "Tea",
        "alibabacloud_tea_openapi",
        "alibabacloud_fc20230330",
        "alibabacloud_agentrun20250910",
        "alibabacloud_tea_util",
    }
)


def call(action: str, request: Callable[[], T], retry: RetryPolicy | None = None) -> T:
    """Run one SDK call; retry throttling and 5xx answers, map every failure to PlatformError."""
    policy = retry or RetryPolicy()
    attempt = 0
    while True:
        calls_logger.debug("%s", action)
        try:
            return request()
        except AlibabaConfigError:
            raise
        except Exception as exc:
            origin = type(exc).__module__.split(".")[0]
            if origin == "alibabacloud_credentials":
                raise CredentialsError(f"Alibaba Cloud credentials could not be used: {exc}") from exc
            if origin not in _SDK_PACKAGES:
                raise  # a bug on our side, not an answer from the platform
            error = to_platform_error(exc, action)
            attempt += 1
            if not retryable(error) or attempt >= policy.max_attempts:
                raise error from exc
            policy.sleep(policy.delay(attempt - 1, getattr(exc, "retry_after", None)))


def response_body(response: Any) -> dict[str, Any]:
    """An SDK response's body as the API's camelCase dict (empty for 204 answers)."""
    body = getattr(response, "body", None)
    if body is None:
        return {}
    return body.to_map() if hasattr(body, "to_map") else dict(body)


@dataclass
class PollPolicy:
    """How status waits poll: a growing interval with a cap, on a swappable clock."""

    first_interval: float = 0.5
    factor: float = 1.5
    max_interval: float = 5.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def intervals(self) -> Iterator[float]:
        interval = self.first_interval
        while True:
            yield interval
            interval = min(self.max_interval, interval * self.factor)

    def until(
        self,
        fetch: Callable[[], T],
        done: Callable[[T], bool],
        timeout: float,
        timed_out: Callable[[T], Exception],
        *,
        start: T | None = None,
    ) -> T:
        """Fetch the resource until ``done`` says so (it may raise, e.g. on a failed state); past
        ``timeout`` seconds raise ``timed_out(last seen)``.  ``start``: a state already in hand
        (a create's answer), checked before the first fetch."""
        deadline = self.clock() + timeout
        intervals = self.intervals()
        current = fetch() if start is None else start
        while not done(current):
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise timed_out(current)
            self.sleep(min(next(intervals), remaining))
            current = fetch()
        return current


class ResourceFailed(PlatformError):
    """A resource the deploy waited for ended in a failed state; ``message`` is the platform's reason."""


class WaitTimeout(PlatformError):
    """A resource did not reach the wanted state before the deadline."""


class AlibabaApi:
    """One product's control plane, reached with credentials, region and endpoint (see the module doc).

    A product client names its SDK package (``sdk_package``); the SDK's client and models are
    imported on first use, so importing a client module loads no SDK.
    """

    endpoint_env: ClassVar[str] = ""  # e.g. AGENTPACK_FC_ENDPOINT
    #: the product's SDK package, e.g. ``alibabacloud_fc20230330`` (its ``client.Client`` and ``models``)
    sdk_package: ClassVar[str] = ""

    def __init__(
        self,
        *,
        region: str | None = None,
        endpoint: str | None = None,
        credentials: Credentials | None = None,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.region = region or env.get(ENV_REGION) or None
        self.endpoint = resolve_endpoint(endpoint, self.endpoint_env, env)
        if self.endpoint is None and not self.region:
            raise AlibabaConfigError(
                f"no region: set the target's region in agentpack.toml or {ENV_REGION}, "
                f"or an endpoint with {self.endpoint_env}"
            )
        self.credentials = credentials or resolve_credentials(env)
        self.retry = retry or RetryPolicy()
        self.poll = poll or PollPolicy()
        self._client: OpenApiClient | None = None

    @property
    def client(self) -> OpenApiClient:
        if self._client is None:
            sdk = importlib.import_module(f"{self.sdk_package}.client")
            self._client = sdk.Client(sdk_config(self.credentials, region=self.region, endpoint=self.endpoint))
        return self._client

    @property
    def models(self) -> ModuleType:
        """The SDK's request and body models."""
        return importlib.import_module(f"{self.sdk_package}.models")

    def _call(self, action: str, request: Callable[[], Any]) -> dict[str, Any]:
        return response_body(call(action, request, self.retry))

    def _call_or_none(self, action: str, request: Callable[[], Any]) -> dict[str, Any] | None:
        """Like _call, but a 404 answer means "there is none" rather than an error."""
        try:
            return self._call(action, request)
        except PlatformError as error:
            if error.status == 404:
                return None
            raise

    def _delete(self, action: str, request: Callable[[], Any]) -> bool:
        """A delete call: True when it deleted something, False when it was gone already (404)."""
        return self._call_or_none(action, request) is not None
