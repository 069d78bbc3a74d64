"""``RedisInterruptBackend``: sessions and stops shared by every process that reaches one Redis.

Keys per session, all carrying the hash tag ``{user:session}`` so they live in one Redis
Cluster slot and the scripts below can touch them together::

    agentpack:{u:s}:lease   run id of the run holding the session   (expires: lease time)
    agentpack:{u:s}:held    hash: run (the same run id) and node (its process's name), kept
                            until the run is released (expires: HELD_LEASES lease times): a
                            lease that lapsed while Redis was out of reach still names its run,
                            which may be alive and about to renew it
    agentpack:{u:s}:stop    run id a stop was requested for         (expires: state time)
    agentpack:{u:s}:state   hash: state (STOPPED / FINISHED / ERROR) and run (its id) of the
                            last run                                (expires: state time)

``u`` and ``s`` are the percent-encoded ids (see :func:`~agentpack.interrupt.base.session_key`).

Stop notices go over the channel ``agentpack:{u:s}:stop``.  A process keeps one pub/sub
connection for all its runs (subscribing per session on it), reconnects by itself, and
re-subscribes what it listens to; nothing here scans keys.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from agentpack._aio import wait_bounded
from agentpack.interrupt.base import BaseInterruptBackend, Renewal, RunState, StopCallback

if TYPE_CHECKING:
    from agentpack.interrupt.records import Records

logger = logging.getLogger("agentpack.interrupt.redis")

#: Renew the lease if it is still ours; take it again if it vanished (Redis restarted) —
#: unless this run was already released (a renewal sent just before the release must not
#: bring the lease back).  1 held, 2 re-taken, 3 already ended, 0 another run holds it.
_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('HSET', KEYS[3], 'run', ARGV[1], 'node', ARGV[4])
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
  return 1
end
if holder then return 0 end
if redis.call('HGET', KEYS[2], 'run') == ARGV[1] then return 3 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[3], 'run', ARGV[1], 'node', ARGV[4])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return 2
"""

#: Take a free session: {1} taken, {0} held by a run, or {2, node} when its last lease lapsed
#: without a release (Redis was out of reach longer than a lease) and ARGV[4] is not '1': that
#: run, on that node, may still be alive and renew at any moment.
_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return {0} end
local held = redis.call('HGET', KEYS[2], 'run')
if held and held ~= ARGV[1] and ARGV[4] ~= '1' then return {2, redis.call('HGET', KEYS[2], 'node')} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[2], 'run', ARGV[1], 'node', ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return {1}
"""

#: End a run: drop its lease and stop flag, record its final state and id (unless another run holds the session).
_RELEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then redis.call('DEL', KEYS[1]) end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
if redis.call('HGET', KEYS[4], 'run') == ARGV[1] then redis.call('DEL', KEYS[4]) end
if holder == ARGV[1] or not holder then
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[3], 'state', ARGV[2], 'run', ARGV[1])
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
end
return 1
"""

#: Stop the run holding the session: a durable flag naming it, then a notice on the channel.
#: A run whose lease lapsed while Redis was out of reach, and that was never released, may
#: still be the session's run: without ARGV[3] = '1' the answer is {2, its node} (the caller
#: checks that the node is connected, then asks again with '1'); otherwise {1} stopped, {0} none.
_STOP = """
local holder = redis.call('GET', KEYS[1])
if not holder then
  local held = redis.call('HGET', KEYS[3], 'run')
  if held and redis.call('HGET', KEYS[4], 'run') ~= held then
    if ARGV[3] ~= '1' then return {2, redis.call('HGET', KEYS[3], 'node')} end
    holder = held
  end
end
if not holder then return {0} end
redis.call('SET', KEYS[2], holder, 'PX', ARGV[1])
redis.call('PUBLISH', ARGV[2], holder)
return {1}
"""

#: Give a lease back, if it is still this run's (taking it turned out to be premature).
_DROP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if redis.call('HGET', KEYS[2], 'run') == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"""

#: RUNNING while a lease is held, else the recorded final state (or nil).
_STATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 'RUNNING' end
return redis.call('HGET', KEYS[2], 'state')
"""

_RENEWALS = {1: Renewal.HELD, 2: Renewal.RETAKEN, 3: Renewal.ENDED, 0: Renewal.LOST}

#: How many lease times the ``held`` key outlives a lease that is not renewed: an outage of
#: Redis (frozen, partitioned) up to that long loses no session.  A run that died without a
#: release costs the session's next run one wait of :meth:`RedisInterruptBackend._wait_window`.
HELD_LEASES = 6

#: How long the set of processes that took their leases back after a restart is kept.
RECOVERED_SECONDS = 120.0


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class _StopListener:
    """One pub/sub connection shared by every run of the process, kept alive across outages."""

    def __init__(self, client: Any, control_channel: str, on_reconnect: Callable[[], None]) -> None:
        self._client = client
        self._control = control_channel
        self._on_reconnect = on_reconnect
        self._callbacks: dict[str, StopCallback] = {}
        self._confirmations: dict[str, asyncio.Future[None]] = {}
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()  # UNSUBSCRIBEs on their way
        self.connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="agentpack-redis-stop-listener")

    async def close(self, timeout: float) -> None:
        """Stop listening and close the connection, within ``timeout`` even if Redis is frozen."""
        if self._pending:
            await wait_bounded(asyncio.gather(*self._pending, return_exceptions=True), timeout)
        if self._task is not None:
            self._task.cancel()
            await wait_bounded(asyncio.gather(self._task, return_exceptions=True), timeout)
            self._task = None
        await wait_bounded(self._client.aclose(), timeout)

    async def _run(self) -> None:
        delay = 0.05
        lost = False
        while True:
            pubsub = self._client.pubsub()
            try:
                sent = set(self._callbacks)
                await pubsub.subscribe(self._control, *sent)
                self._pubsub = pubsub
                added_meanwhile = set(self._callbacks) - sent  # add() found no connection to send on
                if added_meanwhile:
                    await pubsub.subscribe(*added_meanwhile)
                self.connected.set()
                delay = 0.05
                if lost:  # back after an outage: the store may have lost every lease and flag
                    lost = False
                    self._on_reconnect()
                async for message in pubsub.listen():
                    kind = message.get("type")
                    if kind == "message":
                        callback = self._callbacks.get(message["channel"])
                        if callback is not None:
                            try:
                                callback(message["data"])
                            except Exception:  # one run's bug must not drop every run's notices
                                logger.exception("stop notice callback failed for %s", message["channel"])
                    elif kind == "subscribe":
                        waiter = self._confirmations.pop(message["channel"], None)
                        if waiter is not None and not waiter.done():
                            waiter.set_result(None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.connected.is_set():
                    logger.warning("lost the Redis stop channel (%s); reconnecting", exc)
                lost = True
                self.connected.clear()
                self._pubsub = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            finally:
                self._pubsub = None
                try:
                    await wait_bounded(pubsub.aclose(), 1.0)
                except Exception:  # already broken; nothing left to release
                    pass

    async def add(self, channel: str, callback: StopCallback, confirm_within: float = 1.0) -> None:
        """Listen on ``channel`` and wait (briefly) until Redis confirms the subscription.

        Once confirmed, any stop published later reaches the callback, so a stop-flag check
        made after this returns closes the window between taking the lease and listening.
        While disconnected, the channel is subscribed when the connection is back.
        """
        self._callbacks[channel] = callback
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirmations[channel] = waiter
        try:
            await self._send("subscribe", channel)
            confirmed, _ = await wait_bounded(waiter, confirm_within)
            if not confirmed:  # the flag, checked at every lease renewal, still covers it
                logger.debug("no confirmation for %s within %.1fs", channel, confirm_within)
        finally:
            self._confirmations.pop(channel, None)

    async def remove(self, channel: str) -> None:
        """Stop delivering notices of ``channel`` now; the UNSUBSCRIBE goes out in the background
        (nothing waits for it: a late notice finds no callback)."""
        self._callbacks.pop(channel, None)
        task = asyncio.get_running_loop().create_task(self._send("unsubscribe", channel))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _send(self, command: str, channel: str) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            return
        try:
            sent, _ = await wait_bounded(getattr(pubsub, command)(channel), 1.0)
            if not sent:
                logger.debug("%s %s did not go out within 1s", command, channel)
        except Exception as exc:  # the reader loop notices too, reconnects and re-subscribes
            logger.debug("%s %s failed: %s", command, channel, exc)


def _server_info(text: str) -> tuple[str | None, float]:
    """``run_id`` and ``uptime_in_seconds`` from the text of ``INFO server``."""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))
    uptime = fields.get("uptime_in_seconds", "").strip()
    return fields.get("run_id", "").strip() or None, float(uptime) if uptime.isdigit() else 0.0


class RedisInterruptBackend(BaseInterruptBackend):
    """Leases, stop flags and notices in Redis.

    Commands time out after ``command_timeout`` (retried once only when a pooled connection
    turns out to be broken, as after a Redis restart), so a frozen or unreachable Redis is a
    503 within about that time, never a hang.  Opening a connection may take longer,
    ``connect_timeout``: a burst on a cold pool opens dozens at once while the event loop is
    busy with the burst itself, and a connect that merely waited for the loop is not Redis
    failing (a refused connection still fails at once).  A burst of runs waits up to
    ``pool_timeout`` for one of ``max_connections`` pooled connections: longer than a connect
    may take, so runs queued behind connects still being opened are served, not refused.

    A Redis that restarted has lost every lease.  The backend notices (each new connection
    reads the server's ``run_id``) and then, for one renewal period, lets runs elsewhere
    take their leases back before it starts a session or gives up on a stop: without that
    wait a stop sent in that window would find no run, and a second run of a running
    session would be let in.
    """

    #: every command has a socket timeout (and the pub/sub sends are bounded)
    bounded = True

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "agentpack",
        connect_timeout: float = 2.0,
        command_timeout: float = 0.5,
        max_connections: int = 64,
        pool_timeout: float = 5.0,
    ) -> None:
        import importlib.util

        if importlib.util.find_spec("redis") is None:
            raise ModuleNotFoundError(
                "the Redis interrupt backend (interrupt_redis_url= or AGENTPACK_REDIS_URL) needs the redis package; "
                "add redis>=5 to the requirements (pip install 'agentpack[redis]')",
                name="redis",
            )
        self.url = url
        self.prefix = prefix
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.max_connections = max_connections
        self.pool_timeout = pool_timeout
        parts = urlsplit(url)
        self.name = f"Redis at {parts.hostname or parts.path}{':' + str(parts.port) if parts.port else ''}"
        self._redis: Any = None
        self._listener: _StopListener | None = None
        self._scripts: dict[str, Any] = {}
        self._server_id: str | None = None
        self._restarted_at: float | None = None  # monotonic time a restart of Redis was seen to happen
        # This process's name on its stop-channel connection (CLIENT SETNAME, sent again on every
        # reconnect): a lapsed lease names it, and while Redis lists no client of that name, no
        # run of this process can be alive to renew the lease.
        # The family part tells this prefix's processes from other apps' on the same Redis.
        self._family = f"agentpack-{hashlib.sha1(prefix.encode()).hexdigest()[:8]}-"
        self.node = f"{self._family}{uuid.uuid4().hex[:16]}"
        self._holding: dict[str, tuple[str, float]] = {}  # key -> (run id, lease seconds) held here
        self._restart_server: str | None = None  # the run_id of the Redis that restarted
        self._tasks: set[asyncio.Task[None]] = set()

    def clone(self) -> RedisInterruptBackend:
        return RedisInterruptBackend(
            self.url, self.prefix, self.connect_timeout, self.command_timeout, self.max_connections, self.pool_timeout
        )

    # -- connection ----------------------------------------------------------------------
    async def start(self) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError

        # One retry, and only for a broken connection (a pooled socket that Redis closed when
        # it restarted): a timeout is not retried, so a frozen Redis costs one command_timeout.
        # Waiting for a free pooled connection is load, not failure: it gets longer.
        retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url,
            decode_responses=True,
            max_connections=self.max_connections,
            timeout=self.pool_timeout,
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=self.command_timeout,
            retry=retry,
            redis_connect_func=self._on_connect,
        )
        self._redis = aioredis.Redis(connection_pool=pool)
        # The listener's connection blocks on reads by design: no read timeout there.  And no
        # retry: redis-py would reconnect and re-subscribe by itself, silently, and a stop
        # published while the connection was down would be noticed only at the next renewal.
        # A lost connection must reach _StopListener, which re-reads every stop flag on reconnect.
        listener_client = aioredis.from_url(
            self.url,
            decode_responses=True,
            socket_connect_timeout=self.connect_timeout,
            socket_keepalive=True,
            health_check_interval=10,
            client_name=self.node,
            retry=Retry(NoBackoff(), 0),
        )
        self._scripts = {
            name: self._redis.register_script(source)
            for name, source in (
                ("acquire", _ACQUIRE),
                ("renew", _RENEW),
                ("release", _RELEASE),
                ("stop", _STOP),
                ("drop", _DROP),
                ("state", _STATE),
            )
        }
        self._listener = _StopListener(listener_client, f"{self.prefix}:control", self.reconnected)
        self._listener.start()
        problem = await self.problem()
        if problem is not None:
            logger.error("%s; runs will be refused until it answers", problem)
            return
        try:  # loaded once now, so a burst of first runs does not each meet NOSCRIPT and load them
            for script in self._scripts.values():
                await self._redis.script_load(script.script)
        except Exception as exc:  # the scripts load themselves on first use anyway
            logger.debug("could not preload the scripts: %s", exc)
        if self._server_id is not None:  # nothing of this process's can have been lost: say so at once
            await self._report_recovered(self._server_id)

    async def _on_connect(self, connection: Any) -> None:
        """Every new command connection: the usual handshake, then which Redis this is."""
        await connection.on_connect()
        await connection.send_command("INFO", "server")
        server_id, uptime = _server_info(await connection.read_response())
        if server_id is None:
            return
        if self._server_id is not None and server_id != self._server_id:
            logger.warning("%s restarted; runs are taking their sessions back", self.name)
            self._restarted_at = time.monotonic() - uptime
            self._restart_server = server_id
            asyncio.get_running_loop().call_soon(self.reconnected)
            self._spawn(self._report_recovered(server_id))
        self._server_id = server_id

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work, name="agentpack-redis-recovery")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def reconnected(self) -> None:
        super().reconnected()
        # The stop channel is back.  A restart is seen by the first command connection made
        # after it: make one now, so that an idle process notices and reports too.
        if self._redis is not None:
            self._spawn(self._ping_quietly())

    async def _ping_quietly(self) -> None:
        try:
            await self._redis.ping()
        except Exception:  # still out of reach: the next command will see it
            pass

    def _recovered_key(self, server_id: str) -> str:
        return f"{self.prefix}:recovered:{server_id}"

    async def _report_recovered(self, server_id: str) -> None:
        """Take back every lease this process holds, then say so: once every process on the
        stop channel has, a session without a lease is one nobody held (see ``_all_returned``)."""
        try:
            for key, (run_id, lease_seconds) in list(self._holding.items()):
                await self.renew(key, run_id, lease_seconds)
            await self._redis.sadd(self._recovered_key(server_id), self.node)
            await self._redis.pexpire(self._recovered_key(server_id), _ms(RECOVERED_SECONDS))
        except Exception as exc:  # the others wait out the renewal period instead
            logger.debug("could not report this process's leases back: %s", exc)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await wait_bounded(asyncio.gather(*self._tasks, return_exceptions=True), self.command_timeout * 2)
        if self._listener is not None:
            await self._listener.close(self.command_timeout * 2)
            self._listener = None
        if self._redis is not None:
            await wait_bounded(self._redis.aclose(close_connection_pool=True), self.command_timeout * 2)
            self._redis = None

    async def problem(self) -> str | None:
        try:
            await self._redis.ping()
        except Exception as exc:
            return f"{self.name} is unreachable: {exc or type(exc).__name__}"
        return None

    def records(self, namespace: str) -> Records:
        from agentpack.interrupt.records import RedisRecords

        def client() -> Any:
            if self._redis is None:
                raise ConnectionError(f"{self.name} is not connected (the app has not started)")
            return self._redis

        return RedisRecords(client, f"{self.prefix}:{namespace}")

    # -- keys ----------------------------------------------------------------------------
    def _keys(self, key: str) -> tuple[str, str, str]:
        base = f"{self.prefix}:{{{key}}}"
        return f"{base}:lease", f"{base}:stop", f"{base}:state"

    def _held_key(self, key: str) -> str:
        return f"{self.prefix}:{{{key}}}:held"

    def channel(self, key: str) -> str:
        return f"{self.prefix}:{{{key}}}:stop"

    # -- after a restart -----------------------------------------------------------------
    def _recovery_deadline(self, lease_seconds: float) -> float | None:
        """Until when, after a restart, runs elsewhere may still be taking their leases back.

        A live run renews every third of the lease (and at once when its own connection
        comes back), so after ``lease_seconds / 3`` plus a reconnect delay every live run
        holds its lease again.
        """
        if self._restarted_at is None:
            return None
        deadline = self._restarted_at + self._wait_window(lease_seconds)
        return deadline if time.monotonic() < deadline else None

    def _wait_window(self, lease_seconds: float) -> float:
        """How long a live run may take to hold its lease again once Redis answers: it renews
        every third of the lease, plus a reconnect and a command."""
        return lease_seconds / 3 + 2 * self.command_timeout + 1.0

    async def _node_alive(self, node: str | None) -> bool:
        """Whether the process ``node`` still has its stop-channel connection to Redis.

        A process that died has none (the kernel closed it), so its lapsed leases are free at
        once; one that is cut off from Redis still shows (Redis keeps the connection until TCP
        gives up).  Where CLIENT LIST is not allowed (some managed Redis services rename it;
        assumed, not seen) the run is presumed alive and waited for."""
        if not node:
            return True
        try:
            clients = await self._redis.client_list(_type="pubsub")
        except Exception as exc:
            logger.debug("CLIENT LIST is not available (%s); waiting for the lapsed lease's run", exc)
            return True
        return any(client.get("name") == node for client in clients)

    async def _wait_for_lapsed(self, lease_key: str, held_key: str, run_id: str, lease_seconds: float) -> None:
        """The session's last lease lapsed without a release: wait until its run renews it, the
        run is released, or a run that is alive would have renewed by now."""
        deadline = time.monotonic() + self._wait_window(lease_seconds)
        while time.monotonic() < deadline:
            if await self._redis.exists(lease_key):
                return
            held = await self._redis.hget(held_key, "run")
            if held is None or held == run_id:
                return
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    async def _let_runs_return(self, lease_key: str, lease_seconds: float) -> None:
        """Shortly after a restart, wait until the session's lease is back, every process has
        taken its leases back, or the window passed; outside that window this costs nothing."""
        deadline = self._recovery_deadline(lease_seconds)
        if deadline is None:
            return
        while time.monotonic() < deadline:
            if await self._redis.exists(lease_key) or await self._all_returned():
                return
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        self._restarted_at = None  # the window is over for every session

    async def _all_returned(self) -> bool:
        """Whether every process of this prefix has taken its leases back since the restart.

        A process's stop channel reconnects within its backoff (1 s at most) once Redis is back,
        so after that settling time the connected processes are all there is: each names its
        connection (``node``) and reports in a set once its leases are back.  Without CLIENT
        LIST (some managed services rename it; assumed) the answer is no, and the caller waits
        out the renewal period as before."""
        if self._restarted_at is None or self._restart_server is None:
            return False
        if time.monotonic() < self._restarted_at + 1.0 + 2 * (self.connect_timeout + self.command_timeout):
            return False
        try:
            clients = await self._redis.client_list(_type="pubsub")
            reported = set(await self._redis.smembers(self._recovered_key(self._restart_server)))
        except Exception:
            return False
        connected = {client.get("name") for client in clients}
        ours = {name for name in connected if name and name.startswith(self._family)}
        return bool(ours) and ours <= reported

    # -- the interface -------------------------------------------------------------------
    async def _take(
        self, lease: str, held: str, run_id: str, lease_seconds: float, takeover: bool
    ) -> tuple[int, str | None]:
        args = [run_id, _ms(lease_seconds), _ms(lease_seconds * HELD_LEASES), "1" if takeover else "0", self.node]
        answer = await self._scripts["acquire"](keys=[lease, held], args=args)
        return int(answer[0]), (answer[1] if len(answer) > 1 and answer[1] else None)

    async def acquire(self, key: str, run_id: str, lease_seconds: float) -> bool:
        lease, _, _ = self._keys(key)
        held = self._held_key(key)
        await self._let_runs_return(lease, lease_seconds)
        taken, node = await self._take(lease, held, run_id, lease_seconds, takeover=False)
        if taken == 2:
            # The last run's lease lapsed but it was never released: Redis was out of reach
            # for longer than a lease.  If that run is alive it renews within one window; if its
            # process is gone, nothing will.
            if await self._node_alive(node):
                await self._wait_for_lapsed(lease, held, run_id, lease_seconds)
            taken, _ = await self._take(lease, held, run_id, lease_seconds, takeover=True)
        if taken == 1 and self._recovery_deadline(lease_seconds) is not None:
            # This very command found Redis restarted (its connection was re-made): a run
            # elsewhere may not have taken its lease back yet.  Give it that chance first.
            await self._scripts["drop"](keys=[lease, held], args=[run_id])
            await self._let_runs_return(lease, lease_seconds)
            taken, _ = await self._take(lease, held, run_id, lease_seconds, takeover=True)
        if taken == 1:
            self._holding[key] = (run_id, lease_seconds)
        return taken == 1

    async def renew(self, key: str, run_id: str, lease_seconds: float) -> Renewal:
        lease, _, state = self._keys(key)
        keys = [lease, state, self._held_key(key)]
        args = [run_id, _ms(lease_seconds), _ms(lease_seconds * HELD_LEASES), self.node]
        return _RENEWALS[int(await self._scripts["renew"](keys=keys, args=args))]

    async def release(self, key: str, run_id: str, state: RunState, state_seconds: float) -> None:
        if self._holding.get(key, ("",))[0] == run_id:
            del self._holding[key]
        keys = [*self._keys(key), self._held_key(key)]
        await self._scripts["release"](keys=keys, args=[run_id, state.value, _ms(state_seconds)])

    async def request_stop(self, key: str, ttl_seconds: float, lease_seconds: float = 10.0) -> bool:
        lease, flag, state = self._keys(key)
        keys = [lease, flag, self._held_key(key), state]

        async def stop(lapsed_too: bool) -> tuple[int, str | None]:
            args = [_ms(ttl_seconds), self.channel(key), "1" if lapsed_too else "0"]
            answer = await self._scripts["stop"](keys=keys, args=args)
            return int(answer[0]), (answer[1] if len(answer) > 1 and answer[1] else None)

        stopped, node = await stop(lapsed_too=False)
        if stopped == 2:  # the run's lease lapsed in an outage: stop it if its process is there
            stopped = (await stop(lapsed_too=True))[0] if await self._node_alive(node) else 0
        if stopped == 1:
            return True
        if self._recovery_deadline(lease_seconds) is None:
            return False
        await self._let_runs_return(lease, lease_seconds)
        return (await stop(lapsed_too=False))[0] == 1

    async def stop_requested(self, key: str, run_id: str) -> bool:
        _, flag, _ = self._keys(key)
        stopped_run: str | None = await self._redis.get(flag)
        return stopped_run == run_id

    async def watch(self, key: str, callback: StopCallback) -> None:
        assert self._listener is not None, "start() the backend first"
        await self._listener.add(self.channel(key), callback)

    async def unwatch(self, key: str) -> None:
        if self._listener is not None:
            await self._listener.remove(self.channel(key))

    async def get_state(self, key: str) -> RunState | None:
        lease, _, state = self._keys(key)
        value = await self._scripts["state"](keys=[lease, state])
        return RunState(value) if value else None
