"""Agent state per (user, session), in rounds: AgentScope Runtime 1.0's state services.

A state is a JSON-serialisable dict (an agent's ``state_dict()``).  Each save goes into a
round: the round id given, or the next one (the highest so far plus one, 1 for the first).
Exporting without a round id returns the highest round's state.  ``session_id`` defaults to
``"default"``.

:class:`InMemoryStateService` keeps states in this process (lost when it stops);
:class:`RedisStateService` keeps them in Redis, where every instance of the app sees them
and they outlive any instance.
"""

from __future__ import annotations

import copy
import json
import logging
from abc import abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from agentpack.services import _redis
from agentpack.services.base import ServiceNotStarted, ServiceWithLifecycleManager

if TYPE_CHECKING:
    import redis.asyncio as aioredis

logger = logging.getLogger("agentpack.services")

_DEFAULT_SESSION_ID = "default"


class StateService(ServiceWithLifecycleManager):
    """Stores agent states by user, session and round.

    A subclass implements :meth:`save_state`, :meth:`export_state` and :meth:`health`;
    :meth:`start` and :meth:`stop` do nothing unless it overrides them.
    """

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    @abstractmethod
    async def save_state(
        self,
        user_id: str,
        state: dict[str, Any],
        session_id: str | None = None,
        round_id: int | None = None,
    ) -> int:
        """Save ``state`` in round ``round_id`` (replacing what it held), or in a new round
        after the highest one when ``round_id`` is None; return the round id used."""

    @abstractmethod
    async def export_state(
        self,
        user_id: str,
        session_id: str | None = None,
        round_id: int | None = None,
    ) -> dict[str, Any] | None:
        """The state saved in round ``round_id`` (the highest round when None), or None."""


class InMemoryStateService(StateService):
    """States in this process's memory: for development and tests, or a single instance that
    may forget everything when it stops (:meth:`stop` clears the store)."""

    def __init__(self) -> None:
        self._store: dict[tuple[str, str], dict[int, dict[str, Any]]] | None = None

    async def start(self) -> None:
        if self._store is None:
            self._store = {}

    async def stop(self) -> None:
        self._store = None

    async def health(self) -> bool:
        return self._store is not None

    def _rounds(self, user_id: Any, session_id: str | None, create: bool) -> dict[int, dict[str, Any]]:
        if self._store is None:
            raise ServiceNotStarted(type(self).__name__)
        key = (_redis.require_id(user_id, "user_id"), session_id or _DEFAULT_SESSION_ID)
        return self._store.setdefault(key, {}) if create else self._store.get(key, {})

    async def save_state(
        self,
        user_id: str,
        state: dict[str, Any],
        session_id: str | None = None,
        round_id: int | None = None,
    ) -> int:
        rounds = self._rounds(user_id, session_id, create=True)
        if round_id is None:
            round_id = max(max(rounds), 0) + 1 if rounds else 1
        rounds[int(round_id)] = copy.deepcopy(state)  # later changes by the caller do not leak in
        return int(round_id)

    async def export_state(
        self,
        user_id: str,
        session_id: str | None = None,
        round_id: int | None = None,
    ) -> dict[str, Any] | None:
        rounds = self._rounds(user_id, session_id, create=False)
        if not rounds:
            return None
        state = rounds.get(max(rounds) if round_id is None else int(round_id))
        return copy.deepcopy(state)  # nor do changes made to what is returned


#: Save a state: into round ARGV[1], or after the highest round when ARGV[1] is empty.
#: The hash field "latest" holds the highest round id.  Returns the round id.
_SAVE = """
local latest = redis.call('HGET', KEYS[1], 'latest')
local round = ARGV[1]
if round == '' then
  local highest = 0
  if latest and tonumber(latest) > 0 then highest = tonumber(latest) end
  round = string.format('%d', highest + 1)
end
redis.call('HSET', KEYS[1], round, ARGV[2])
if (not latest) or tonumber(round) > tonumber(latest) then
  redis.call('HSET', KEYS[1], 'latest', round)
end
if ARGV[3] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return round
"""

#: Read round ARGV[1] (the highest when empty), refreshing the TTL when found.
_EXPORT = """
local round = ARGV[1]
if round == '' then
  round = redis.call('HGET', KEYS[1], 'latest')
  if not round then return false end
end
local value = redis.call('HGET', KEYS[1], round)
if value and ARGV[2] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return value
"""


class RedisStateService(_redis.RedisBacked, StateService):
    """States in Redis: one hash per (user, session), a field per round.

    Every instance of the app that reaches the same Redis (and uses the same ``prefix``)
    sees the same states, and they outlive the instances.  Whether they outlive a restart
    of Redis itself is Redis's own configuration (RDB snapshots, AOF); a restart is logged.

    A save or read refreshes the (user, session)'s TTL (``ttl_seconds``; None keeps states
    until deleted).  Saving and numbering a round is one atomic script, so instances saving
    at the same time never get the same round id.  Commands give up after
    ``socket_timeout`` seconds (connecting after ``socket_connect_timeout``) with
    :class:`~agentpack.services.ServiceUnavailable`.

    ``redis_client``: a client made by the caller, used as is (its own timeouts, never
    closed here).  It must reach a single Redis, or a Redis Cluster through a cluster client
    (a user's keys share one slot).
    """

    SCRIPTS: ClassVar[Mapping[str, str]] = {"save": _SAVE, "export": _EXPORT}

    def __init__(
        self,
        redis_url: str = "redis://localhost:6379/0",
        redis_client: aioredis.Redis | None = None,
        socket_timeout: float | None = 1.0,
        socket_connect_timeout: float | None = 2.0,
        max_connections: int | None = None,
        retry_on_timeout: bool = False,
        ttl_seconds: float | None = 3600,
        health_check_interval: float | None = 30.0,
        socket_keepalive: bool = True,
        prefix: str = "agentpack",
    ) -> None:
        self._connect(
            redis_url,
            redis_client,
            socket_timeout,
            socket_connect_timeout,
            max_connections,
            retry_on_timeout,
            health_check_interval,
            socket_keepalive,
            ttl_seconds,
            prefix,
        )

    def state_key(self, user_id: str, session_id: str | None = None) -> str:
        """The Redis key of a (user, session)'s states."""
        base = self._user_base(user_id)
        return f"{base}:state:{_redis.encode(session_id or _DEFAULT_SESSION_ID)}"

    async def save_state(
        self,
        user_id: str,
        state: dict[str, Any],
        session_id: str | None = None,
        round_id: int | None = None,
    ) -> int:
        key = self.state_key(user_id, session_id)
        document = json.dumps(state, ensure_ascii=False)
        round_arg = "" if round_id is None else str(int(round_id))
        saved = await self._redis.script("save", [key], [round_arg, document, self._ttl()])
        return int(saved)

    async def export_state(
        self,
        user_id: str,
        session_id: str | None = None,
        round_id: int | None = None,
    ) -> dict[str, Any] | None:
        key = self.state_key(user_id, session_id)
        round_arg = "" if round_id is None else str(int(round_id))
        document = await self._redis.script("export", [key], [round_arg, self._ttl()])
        if document is None:
            return None
        try:
            state: dict[str, Any] | None = json.loads(document)
            return state
        except ValueError:
            logger.warning(
                "%s: the state in %s (round %s) is not JSON; treated as missing",
                type(self).__name__,
                key,
                round_arg or "latest",
            )
            return None
