"""What the Redis services share: the connection (bounded in time, restart-aware), the
error it raises when Redis is out of reach, and the key scheme.

Keys.  Every key of a user carries the hash tag ``{u}`` (``u`` the percent-encoded user id),
so all of a user's keys live in one Redis Cluster slot and one script can change a session
and the user's index of sessions together; the session id ``s`` is percent-encoded too::

    <prefix>:{u}:state:<s>      hash: round id -> state JSON, and "latest" -> the highest round id
    <prefix>:{u}:session:<s>    the session's own fields as JSON (it exists while the session does)
    <prefix>:{u}:history:<s>    list: the session's messages as JSON, oldest first
    <prefix>:{u}:sessions       sorted set: the user's session ids (encoded), by creation time

Percent-encoding every character but the unreserved ones makes the keys injective:
``("a:b", "c")`` and ``("a", "b:c")`` never share a key, and an id with braces cannot move a
key out of its slot.  The encoding is the one agentpack's session keys use
(``agentpack.interrupt.base.session_key``); it is repeated here because services sit below
the interrupt layer.  No tag contains a bare ``:``, so these keys never meet the interrupt
backend's ``<prefix>:{u:s}:...`` keys under the same prefix.

redis (redis-py) is imported by :meth:`RedisConnection.open`, never at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlsplit

from agentpack._aio import wait_bounded
from agentpack.services.base import ServiceNotStarted, ServiceUnavailable

if TYPE_CHECKING:
    from redis.exceptions import RedisError

logger = logging.getLogger("agentpack.services")

#: Connections a service keeps at most when ``max_connections`` is not given.
DEFAULT_POOL_SIZE = 64
#: Seconds a command waits for a free connection before the service is reported busy.
POOL_WAIT = 5.0


def encode(value: str) -> str:
    return quote(value, safe="")


def require_id(value: Any, name: str) -> str:
    """An id as a non-empty string (numbers are accepted and turned into strings)."""
    if value is None or value == "":
        raise ValueError(f"{name} is required (got {value!r})")
    return value if isinstance(value, str) else str(value)


def user_base(prefix: str, user_id: str) -> str:
    """``<prefix>:{u}``: the start of every key of ``user_id``."""
    return f"{prefix}:{{{encode(user_id)}}}"


def milliseconds(seconds: float | None) -> int:
    """A TTL for the scripts: milliseconds, or 0 for "never expires"."""
    return 0 if seconds is None else max(1, int(seconds * 1000))


def check_ttl(ttl_seconds: float | None) -> float | None:
    if ttl_seconds is not None and ttl_seconds <= 0:
        raise ValueError(f"ttl_seconds must be positive, or None for data that never expires (got {ttl_seconds!r})")
    return ttl_seconds


def text(value: Any) -> Any:
    """Redis replies as ``str`` whatever ``decode_responses`` a given client was made with."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, list):
        return [text(item) for item in value]
    return value


def _server_run_id(info: Any) -> str | None:
    """``run_id`` from the reply to ``INFO server`` (text, or a dict on some clients)."""
    if isinstance(info, dict):
        value = info.get("run_id")
        return str(value) if value else None
    for line in text(info).splitlines():
        if line.startswith("run_id:"):
            return line.split(":", 1)[1].strip() or None
    return None


class RedisConnection:
    """One Redis client for a service, made on :meth:`open` and closed on :meth:`close`.

    Commands time out after ``socket_timeout`` (connecting after ``socket_connect_timeout``);
    a broken pooled connection (as after a Redis restart) is retried once, a timeout only
    when ``retry_on_timeout``.  Either way a Redis that is down or frozen is a
    :class:`ServiceUnavailable` within about those times, never a hang.

    Every new connection reads the server's ``run_id``: when it changes, Redis restarted,
    and the service logs that the data it held only in memory is gone.
    """

    def __init__(
        self,
        owner: str,
        url: str,
        client: Any,
        socket_timeout: float | None,
        socket_connect_timeout: float | None,
        max_connections: int | None,
        retry_on_timeout: bool,
        health_check_interval: float | None,
        socket_keepalive: bool,
    ) -> None:
        self.owner = owner
        self.url = url
        self.socket_timeout = socket_timeout
        self.socket_connect_timeout = socket_connect_timeout
        self.max_connections = max_connections
        #: connections at most (``max_connections``, else :data:`DEFAULT_POOL_SIZE`)
        self.pool_size = max_connections or DEFAULT_POOL_SIZE
        self.retry_on_timeout = retry_on_timeout
        self.health_check_interval = health_check_interval
        self.socket_keepalive = socket_keepalive
        self._given = client  # a client the caller made and owns: used as is, never closed here
        self._client: Any = None
        self._errors: tuple[type[BaseException], ...] = ()
        self._timeout_error: type[BaseException] | None = None
        self._busy_error: type[BaseException] | None = None
        self._scripts: dict[str, Any] = {}
        self._server_id: str | None = None
        #: How often Redis was seen to restart (its ``run_id`` changed) while this service ran.
        self.restarts = 0
        parts = urlsplit(url)
        where = f"{parts.hostname}:{parts.port or 6379}" if parts.hostname else (parts.path or url)
        self.name = "the Redis client given" if client is not None else f"Redis at {where}"

    @property
    def started(self) -> bool:
        return self._client is not None

    def open(self, scripts: Mapping[str, str]) -> None:
        """Make the client (once) and register ``scripts``; no I/O happens here."""
        if self._client is not None:
            return
        import redis.exceptions as errors

        self._errors = (errors.ConnectionError, errors.TimeoutError)
        self._timeout_error = errors.TimeoutError
        self._busy_error = getattr(errors, "MaxConnectionsError", None)
        if self._given is not None:
            client = self._given
        else:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            retried: tuple[type[RedisError], ...] = (errors.ConnectionError,)
            if self.retry_on_timeout:
                retried += (errors.TimeoutError,)
            options: dict[str, Any] = {
                "decode_responses": True,
                "socket_timeout": self.socket_timeout,
                "socket_connect_timeout": self.socket_connect_timeout,
                "socket_keepalive": self.socket_keepalive,
                "health_check_interval": self.health_check_interval or 0,
                "retry": Retry(NoBackoff(), 1, supported_errors=retried),
                "redis_connect_func": self._on_connect,
            }
            # A bounded pool that makes a burst wait its turn: an unbounded one opens a socket per
            # concurrent command, and hundreds of connects at once time out on a loaded machine.
            pool = aioredis.BlockingConnectionPool.from_url(
                self.url, max_connections=self.pool_size, timeout=POOL_WAIT, **options
            )
            client = aioredis.Redis(connection_pool=pool)
        self._scripts = {name: client.register_script(source) for name, source in scripts.items()}
        self._client = client

    async def close(self) -> None:
        client, self._client = self._client, None
        self._scripts = {}
        if client is not None and client is not self._given:
            bound = 2 * (self.socket_timeout or 1.0)
            try:
                await wait_bounded(client.aclose(), bound)
            except Exception as exc:  # closing a broken connection: nothing left to release
                logger.debug("closing %s: %s", self.name, exc)

    async def _on_connect(self, connection: Any) -> None:
        """Every new connection: the usual handshake, then which Redis process answers."""
        await connection.on_connect()
        try:
            await connection.send_command("INFO", "server")
            server_id = _server_run_id(await connection.read_response())
        except self._errors:
            raise
        except Exception as exc:  # INFO refused (ACLs, a proxy): restarts simply go unnoticed
            logger.debug("INFO server failed on %s: %s", self.name, exc)
            return
        if server_id is None:
            return
        if self._server_id is not None and server_id != self._server_id:
            self.restarts += 1
            logger.warning(
                "%s restarted (it answers with a new run id): whatever %s wrote before is gone unless that "
                "Redis persists its data (RDB snapshots or AOF); durability is Redis's own configuration",
                self.name,
                self.owner,
            )
        self._server_id = server_id

    def _unavailable(self, exc: BaseException) -> ServiceUnavailable:
        if self._busy_error is not None and isinstance(exc, self._busy_error):
            return ServiceUnavailable(
                f"{self.owner}: all {self.pool_size} connections to {self.name} were busy for {POOL_WAIT:g}s ({exc}); "
                "raise max_connections"
            )
        if self._timeout_error is not None and isinstance(exc, self._timeout_error):
            reason = (
                f"did not answer in time ({exc}); commands give up after socket_timeout={self.socket_timeout}s, "
                f"connecting after socket_connect_timeout={self.socket_connect_timeout}s"
            )
        else:
            reason = f"is unreachable ({exc or type(exc).__name__})"
        return ServiceUnavailable(f"{self.owner}: {self.name} {reason}")

    async def script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        script = self._scripts.get(name) if self._client is not None else None
        if script is None:
            raise ServiceNotStarted(self.owner)
        try:
            return text(await script(keys=keys, args=args))
        except self._errors as exc:
            raise self._unavailable(exc) from exc

    async def healthy(self) -> bool:
        if self._client is None:
            return False
        try:
            return bool(await self._client.ping())
        except Exception:
            return False


class RedisBacked:
    """The lifecycle both Redis services share: one connection, a TTL, a key prefix.

    A service lists its Lua scripts in ``SCRIPTS`` and calls :meth:`_connect` from its own
    ``__init__`` (whose keywords stay those of the upstream class it mirrors).  Listed first
    among the bases, so that its ``start``/``stop``/``health`` replace the abstract base's."""

    SCRIPTS: ClassVar[Mapping[str, str]] = {}

    _ttl_seconds: float | None
    _prefix: str
    _redis: RedisConnection

    def _connect(
        self,
        redis_url: str,
        redis_client: Any,
        socket_timeout: float | None,
        socket_connect_timeout: float | None,
        max_connections: int | None,
        retry_on_timeout: bool,
        health_check_interval: float | None,
        socket_keepalive: bool,
        ttl_seconds: float | None,
        prefix: str,
    ) -> None:
        self._ttl_seconds = check_ttl(ttl_seconds)
        self._prefix = prefix
        self._redis = RedisConnection(
            type(self).__name__,
            redis_url,
            redis_client,
            socket_timeout,
            socket_connect_timeout,
            max_connections,
            retry_on_timeout,
            health_check_interval,
            socket_keepalive,
        )

    @property
    def ttl_seconds(self) -> float | None:
        return self._ttl_seconds

    @property
    def redis_restarts(self) -> int:
        """How often Redis was seen to restart (and so maybe lose its data) while this ran."""
        return self._redis.restarts

    def _ttl(self) -> int:
        """The TTL as the scripts take it (milliseconds, 0 for none)."""
        return milliseconds(self._ttl_seconds)

    def _user_base(self, user_id: Any) -> str:
        return user_base(self._prefix, require_id(user_id, "user_id"))

    async def start(self) -> None:
        """Make the connection pool (connections are opened on first use); idempotent."""
        self._redis.open(self.SCRIPTS)

    async def stop(self) -> None:
        """Close the connections (not a client passed as ``redis_client``); idempotent."""
        await self._redis.close()

    async def health(self) -> bool:
        """Whether the service is started and Redis answers a PING (bounded in time)."""
        return await self._redis.healthy()
