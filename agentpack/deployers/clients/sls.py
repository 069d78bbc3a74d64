"""Simple Log Service (SLS): reading a deployment's logs, over Alibaba Cloud's SLS Python SDK.

Function Compute and AgentRun write what an instance prints to an SLS logstore once the
function or runtime has a log configuration (an SLS project and logstore).  ``agentpack logs``
reads them back here with the SDK's ``LogClient.get_log`` (the GetLogsV2 operation: one page
of at most 100 entries, oldest first), page after page; with ``follow`` it asks again every
few seconds from the newest second it has seen and skips what it already printed.

The SDK (``aliyun-log-python-sdk``, module ``aliyun.log``) is imported when logs are first
read, so that ``import agentpack`` stays light.  The endpoint is the region's public one,
``<region>.log.aliyuncs.com`` (https), unless ``AGENTPACK_SLS_ENDPOINT`` names another
(``host[:port]`` or ``http(s)://host[:port]``, e.g. the ``-intranet`` endpoint from inside the
region).  The SDK puts the project in the host name (``<project>.<endpoint>``), as the API
wants.  Facts and sources: tests/standins/README.md, section "Simple Log Service".
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentpack.deployers.clients.alibaba import AlibabaConfigError, Credentials, resolve_endpoint
from agentpack.deployers.errors import NotOffered, PlatformError, require_modules

if TYPE_CHECKING:
    from aliyun.log import LogClient

ENDPOINT_ENV = "AGENTPACK_SLS_ENDPOINT"
#: GetLogsV2 returns at most 100 entries a call (its ``line`` parameter: 0-100, default 100).
PAGE_SIZE = 100
#: how often ``follow`` asks for new entries
FOLLOW_INTERVAL = 2.0
#: seconds to connect and to wait for an answer (the SDK's own default waits 120 s for each)
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0

#: the settings of ``[targets.fc]`` and ``[targets.agentrun]`` that name the SLS project and logstore
PROJECT_SETTING = "log_project"
STORE_SETTING = "log_store"


@dataclass(frozen=True)
class LogDestination:
    """Where a deployment's logs go: an SLS project and one of its logstores."""

    project: str
    store: str


def log_destination(settings: Any) -> LogDestination | None:
    """The SLS project and logstore set in a target's settings, or None when they are not set."""
    project, store = getattr(settings, PROJECT_SETTING, None), getattr(settings, STORE_SETTING, None)
    return LogDestination(str(project), str(store)) if project and store else None


def read_logs(
    settings: Any,
    *,
    product: str,
    credentials: Credentials,
    region: str | None,
    query: str,
    console: str,
    since_seconds: float = 3600,
    follow: bool = False,
    environ: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """A deployment's log lines from the logstore its target's settings name (``query`` picks its
    entries); NotOffered, saying what to set, when no logstore is set.  ``product`` names the
    platform in that message and ``console`` where the logs can be read meanwhile."""
    where = log_destination(settings)
    if where is None:
        project, store = PROJECT_SETTING, STORE_SETTING
        table = f"[targets.{getattr(settings, 'target', '') or 'fc'}]"  # a ClassVar of the settings model
        raise NotOffered(
            f"{product} keeps logs in Simple Log Service only when it has a logstore: set {project} = "
            f'"<SLS project>" and {store} = "<logstore>" under {table} in agentpack.toml (an existing project '
            f"and logstore in {region or 'the same region'}), deploy again, then run agentpack logs; "
            f"until then read them in {console}"
        )
    require_modules(("aliyun",), "reading logs from Simple Log Service", getattr(settings, "target", "") or "fc")
    api = SLSApi(credentials, region=region, environ=environ)
    return api.log_lines(where, query=query, since_seconds=since_seconds, follow=follow)


def endpoint_url(region: str | None, explicit: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The SLS endpoint as the SDK takes it (``scheme://host[:port]``, no project)."""
    override = resolve_endpoint(explicit, ENDPOINT_ENV, environ)
    if override is not None:
        return f"{override.protocol}://{override.host}"
    if not region:
        raise AlibabaConfigError(f"no region for Simple Log Service: set the target's region, or {ENDPOINT_ENV}")
    return f"https://{region}.log.aliyuncs.com"


def to_platform_error(exc: Exception, action: str) -> PlatformError:
    """The SDK's ``LogException`` (or a transport failure) as a PlatformError with SLS's own words."""
    code = getattr(exc, "get_error_code", None)
    if callable(code):
        status = getattr(exc, "resp_status", None)
        request_id = exc.get_request_id() or None  # type: ignore[attr-defined]
        message = str(exc.get_error_message())  # type: ignore[attr-defined]
        if code() == "LogRequestError" and not request_id:  # the request never got an answer
            return PlatformError(
                "ConnectionError", f"could not reach Simple Log Service: {message}", None, None, action
            )
        return PlatformError(str(code()), message, request_id, int(status) if isinstance(status, int) else None, action)
    return PlatformError(type(exc).__name__, str(exc) or repr(exc), None, None, action)


class SLSApi:
    """Reads one logstore's entries through the SDK's ``LogClient`` (see the module doc)."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        region: str | None = None,
        endpoint: str | None = None,
        environ: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        env = os.environ if environ is None else environ
        self.endpoint = endpoint_url(region, endpoint, env)
        self.credentials = credentials
        self.sleep = sleep
        self.clock = clock
        self._client: LogClient | None = None

    @property
    def client(self) -> LogClient:
        if self._client is None:
            from aliyun.log import LogClient

            credentials = self.credentials
            client = LogClient(
                self.endpoint,
                credentials.access_key_id,
                credentials.access_key_secret,
                securityToken=credentials.security_token,
            )
            # handed to requests, which takes (connect, read); the SDK assumes one number
            client.timeout = (CONNECT_TIMEOUT, READ_TIMEOUT)  # type: ignore[assignment]
            self._client = client
        return self._client

    def page(self, where: LogDestination, start: int, end: int, query: str, offset: int) -> list[dict[str, str]]:
        """One GetLogsV2 page: the entries in ``[start, end)`` (seconds) matching ``query``, oldest
        first, from ``offset``; each entry is its fields plus ``__time__``."""
        try:
            answer = self.client.get_log(
                where.project, where.store, start, end, query=query, reverse=False, offset=offset, size=PAGE_SIZE
            )
        except Exception as exc:
            if type(exc).__module__.split(".")[0] != "aliyun":
                raise  # a bug on our side, not an answer from SLS
            raise to_platform_error(exc, "GetLogs") from exc
        entries = []
        for entry in answer.get_logs():
            fields = {str(k): str(v) for k, v in entry.get_contents().items()}
            fields["__time__"] = str(entry.get_time())
            entries.append(fields)
        return entries

    def log_lines(
        self, where: LogDestination, *, query: str = "*", since_seconds: float = 3600, follow: bool = False
    ) -> Iterator[str]:
        """The matching entries of the last ``since_seconds``, oldest first, as lines (each entry's
        ``message``, or its fields when it has none); with ``follow``, new ones as they come."""
        start = int(self.clock() - since_seconds)
        #: how many times each entry of second ``start`` was printed already (when following)
        already: Counter[tuple[str, ...]] = Counter()
        while True:
            end = int(self.clock()) + 1  # the range is [from, to): include this second
            newest, counts = start, Counter[tuple[str, ...]]()  # counts: the entries of second ``newest``
            offset = 0
            while True:
                entries = self.page(where, start, end, query, offset)
                for fields in entries:
                    second = int(fields["__time__"])
                    if second > newest:
                        newest, counts = second, Counter()
                    key = tuple(sorted(f"{k}={v}" for k, v in fields.items()))
                    counts[key] += 1
                    if second == start and counts[key] <= already[key]:
                        continue  # printed by the previous pass
                    yield line_of(fields)
                if len(entries) < PAGE_SIZE:
                    break
                offset += len(entries)
            if not follow:
                return
            start, already = newest, counts
            self.sleep(FOLLOW_INTERVAL)


def line_of(fields: Mapping[str, str]) -> str:
    """An entry as one printed line: its ``message`` (what the instance wrote), else its fields."""
    message = fields.get("message")
    if message is not None:
        return message.rstrip("\n")
    shown = {k: v for k, v in fields.items() if not k.startswith("__")}
    return " ".join(f"{k}={v}" for k, v in sorted(shown.items()))
