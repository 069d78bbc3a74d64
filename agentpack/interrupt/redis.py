"""``RedisInterruptBackend``: sessions and stops shared by every process that reaches one Redis.

Keys per session, all carrying the hash tag ``{user:session}`` so they live in one Redis
Cluster slot and the scripts below can touch them together::

    agentpack:{u:s}:lease   run id of the run holding the session   (expires: lease time)
    agentpack:{u:s}:stop    run id a stop was requested for         (expires: state time)
    agentpack:{u:s}:state   STOPPED / FINISHED / ERROR of the last run (expires: state time)

Stop notices go over the channel ``agentpack:{u:s}:stop``.  A process keeps one pub/sub
connection for all its runs (subscribing per session on it), reconnects by itself, and
re-subscribes what it listens to; nothing here scans keys.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Optional
from urllib.parse import urlsplit

from agentpack.interrupt.base import BaseInterruptBackend, RunState, StopCallback

logger = logging.getLogger("agentpack.interrupt.redis")

#: Renew the lease if it is still ours; take it again if it vanished (Redis restarted).
_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
"""

#: End a run: drop its lease and stop flag, record its final state (unless another run holds the session).
_RELEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then redis.call('DEL', KEYS[1]) end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
if holder == ARGV[1] or not holder then
  redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])
end
return 1
"""

#: Stop the run holding the session: a durable flag naming it, then a notice on the channel.
_STOP = """
local holder = redis.call('GET', KEYS[1])
if not holder then return 0 end
redis.call('SET', KEYS[2], holder, 'PX', ARGV[1])
redis.call('PUBLISH', ARGV[2], holder)
return 1
"""


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class _StopListener:
    """One pub/sub connection shared by every run of the process, kept alive across outages."""

    def __init__(self, client: Any, control_channel: str) -> None:
        self._client = client
        self._control = control_channel
        self._callbacks: dict[str, StopCallback] = {}
        self._confirmations: dict[str, asyncio.Future] = {}
        self._pubsub: Any = None
        self._task: Optional[asyncio.Task] = None
        self.connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="agentpack-redis-stop-listener")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        delay = 0.05
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(self._control, *self._callbacks)
                self._pubsub = pubsub
                self.connected.set()
                delay = 0.05
                async for message in pubsub.listen():
                    kind = message.get("type")
                    if kind == "message":
                        callback = self._callbacks.get(message["channel"])
                        if callback is not None:
                            callback(message["data"])
                    elif kind == "subscribe":
                        waiter = self._confirmations.pop(message["channel"], None)
                        if waiter is not None and not waiter.done():
                            waiter.set_result(None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.connected.is_set():
                    logger.warning("lost the Redis stop channel (%s); reconnecting", exc)
                self.connected.clear()
                self._pubsub = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            finally:
                self._pubsub = None
                try:
                    await pubsub.aclose()
                except Exception:  # already broken; nothing left to release
                    pass

    async def add(self, channel: str, callback: StopCallback, confirm_within: float = 1.0) -> None:
        """Listen on ``channel`` and wait (briefly) until Redis confirms the subscription.

        Once confirmed, any stop published later reaches the callback, so a stop-flag check
        made after this returns closes the window between taking the lease and listening.
        While disconnected, the channel is subscribed when the connection is back.
        """
        self._callbacks[channel] = callback
        waiter = asyncio.get_running_loop().create_future()
        self._confirmations[channel] = waiter
        await self._send("subscribe", channel)
        try:
            await asyncio.wait_for(waiter, confirm_within)
        except asyncio.TimeoutError:  # the flag, checked at every lease renewal, still covers it
            logger.debug("no confirmation for %s within %.1fs", channel, confirm_within)
        finally:
            self._confirmations.pop(channel, None)

    async def remove(self, channel: str) -> None:
        self._callbacks.pop(channel, None)
        await self._send("unsubscribe", channel)

    async def _send(self, command: str, channel: str) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            return
        try:
            await getattr(pubsub, command)(channel)
        except Exception as exc:  # the reader loop notices too, reconnects and re-subscribes
            logger.debug("%s %s failed: %s", command, channel, exc)


class RedisInterruptBackend(BaseInterruptBackend):
    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "agentpack",
        connect_timeout: float = 1.0,
        command_timeout: float = 2.0,
        max_connections: int = 32,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.max_connections = max_connections
        parts = urlsplit(url)
        self.name = f"Redis at {parts.hostname or parts.path}{':' + str(parts.port) if parts.port else ''}"
        self._redis: Any = None
        self._listener: Optional[_StopListener] = None
        self._scripts: dict[str, Any] = {}

    def clone(self) -> "RedisInterruptBackend":
        return RedisInterruptBackend(self.url, self.prefix, self.connect_timeout, self.command_timeout, self.max_connections)

    # -- connection ----------------------------------------------------------------------
    async def start(self) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # Commands fail fast (one quick retry), so /process answers 503 instead of hanging;
        # a burst of runs waits for a pooled connection instead of failing with "too many".
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url,
            decode_responses=True,
            max_connections=self.max_connections,
            timeout=self.command_timeout,
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=self.command_timeout,
            retry=Retry(NoBackoff(), 1),
        )
        self._redis = aioredis.Redis(connection_pool=pool)
        # The listener's connection blocks on reads by design: no read timeout there.
        listener_client = aioredis.from_url(
            self.url,
            decode_responses=True,
            socket_connect_timeout=self.connect_timeout,
            socket_keepalive=True,
            health_check_interval=10,
            retry=Retry(NoBackoff(), 1),
        )
        self._scripts = {
            "renew": self._redis.register_script(_RENEW),
            "release": self._redis.register_script(_RELEASE),
            "stop": self._redis.register_script(_STOP),
        }
        self._listener = _StopListener(listener_client, f"{self.prefix}:control")
        self._listener.start()
        problem = await self.problem()
        if problem is not None:
            logger.error("%s; runs will be refused until it answers", problem)

    async def aclose(self) -> None:
        if self._listener is not None:
            await self._listener.close()
            await self._listener._client.aclose()
            self._listener = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def problem(self) -> Optional[str]:
        try:
            await self._redis.ping()
        except Exception as exc:
            return f"{self.name} is unreachable: {exc}"
        return None

    # -- keys ----------------------------------------------------------------------------
    def _keys(self, key: str) -> tuple[str, str, str]:
        base = f"{self.prefix}:{{{key}}}"
        return f"{base}:lease", f"{base}:stop", f"{base}:state"

    def channel(self, key: str) -> str:
        return f"{self.prefix}:{{{key}}}:stop"

    # -- the interface -------------------------------------------------------------------
    async def acquire(self, key: str, run_id: str, lease_seconds: float) -> bool:
        lease, _, _ = self._keys(key)
        return bool(await self._redis.set(lease, run_id, nx=True, px=_ms(lease_seconds)))

    async def renew(self, key: str, run_id: str, lease_seconds: float) -> bool:
        lease, _, _ = self._keys(key)
        return bool(await self._scripts["renew"](keys=[lease], args=[run_id, _ms(lease_seconds)]))

    async def release(self, key: str, run_id: str, state: RunState, state_seconds: float) -> None:
        await self._scripts["release"](keys=list(self._keys(key)), args=[run_id, state.value, _ms(state_seconds)])

    async def request_stop(self, key: str, ttl_seconds: float) -> bool:
        lease, flag, _ = self._keys(key)
        return bool(await self._scripts["stop"](keys=[lease, flag], args=[_ms(ttl_seconds), self.channel(key)]))

    async def stop_requested(self, key: str, run_id: str) -> bool:
        _, flag, _ = self._keys(key)
        return await self._redis.get(flag) == run_id

    async def watch(self, key: str, callback: StopCallback) -> None:
        assert self._listener is not None, "start() the backend first"
        await self._listener.add(self.channel(key), callback)

    async def unwatch(self, key: str) -> None:
        if self._listener is not None:
            await self._listener.remove(self.channel(key))

    async def get_state(self, key: str) -> Optional[RunState]:
        lease, _, state = self._keys(key)
        holder, last = await self._redis.mget(lease, state)
        if holder is not None:
            return RunState.RUNNING
        return RunState(last) if last else None
