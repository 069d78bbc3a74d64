"""Conversation history per (user, session): AgentScope Runtime 1.0's session-history services.

A :class:`~agentpack.services.session.Session` holds its id, its user's id and its messages.
Messages are given as :class:`~agentpack.protocol.schemas.Message` objects or dicts (one, or
a list) and come back as ``Message`` objects, oldest first.

:class:`InMemorySessionHistoryService` keeps sessions in this process (lost when it stops);
:class:`RedisSessionHistoryService` keeps them in Redis, where every instance of the app sees
them and they outlive any instance.
"""

from __future__ import annotations

import copy
import logging
import time
import uuid
from abc import abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from agentpack.protocol.schemas import Message
from agentpack.services import _redis
from agentpack.services.base import ServiceNotStarted, ServiceWithLifecycleManager
from agentpack.services.session import Session

if TYPE_CHECKING:
    import redis.asyncio as aioredis

logger = logging.getLogger("agentpack.services")

MessageInput = Message | list[Message] | dict[str, Any] | list[dict[str, Any]]


def _normalise(message: Any) -> list[Message]:
    """One message or a list of them, as ``Message`` objects; ``None`` entries are skipped."""
    items = message if isinstance(message, list) else [message]
    normalised = []
    for item in items:
        if item is None:
            continue
        if not isinstance(item, Message):
            if isinstance(item, BaseModel):  # another library's message model with the same fields
                item = item.model_dump()
            item = Message.model_validate(item)
        normalised.append(item)
    return normalised


def _new_session_id(session_id: str | None) -> str:
    """The id asked for (surrounding blanks removed), or a fresh one when none or blank."""
    if session_id is not None and str(session_id).strip():
        return str(session_id).strip()
    return str(uuid.uuid4())


class SessionHistoryService(ServiceWithLifecycleManager):
    """Creates, reads, lists and deletes sessions, and appends messages to them.

    A subclass implements the abstract methods, :meth:`append_message` and :meth:`health`;
    :meth:`start` and :meth:`stop` do nothing unless it overrides them, and
    :meth:`delete_user_sessions` deletes what :meth:`list_sessions` finds one by one.
    """

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    @abstractmethod
    async def create_session(self, user_id: str, session_id: str | None = None) -> Session:
        """Create a session with no messages (a fresh id when ``session_id`` is None or blank);
        an existing session with that id starts over empty."""

    @abstractmethod
    async def get_session(self, user_id: str, session_id: str) -> Session | None:
        """The session with its messages, or None where the service does not create it."""

    @abstractmethod
    async def delete_session(self, user_id: str, session_id: str) -> None:
        """Delete a session and its messages; deleting a missing one does nothing."""

    @abstractmethod
    async def list_sessions(self, user_id: str) -> list[Session]:
        """The user's sessions, oldest first, with ``messages`` left empty."""

    async def append_message(self, session: Session, message: MessageInput) -> None:
        """Append one message or a list of them to ``session`` (in the store, and to
        ``session.messages``)."""

    async def delete_user_sessions(self, user_id: str) -> None:
        """Delete every session of ``user_id``."""
        for session in await self.list_sessions(user_id):
            await self.delete_session(user_id, session.id)


class InMemorySessionHistoryService(SessionHistoryService):
    """Sessions in this process's memory: for development and tests, or a single instance
    that may forget everything when it stops (:meth:`stop` clears the store).

    As in AgentScope Runtime, :meth:`get_session` of a session that does not exist creates it
    (empty) instead of returning None; :class:`RedisSessionHistoryService` returns None.
    """

    def __init__(self) -> None:
        self._store: dict[str, dict[str, Session]] | None = None

    async def start(self) -> None:
        if self._store is None:
            self._store = {}

    async def stop(self) -> None:
        self._store = None

    async def health(self) -> bool:
        return self._store is not None

    def _sessions(self, user_id: Any) -> dict[str, Session]:
        if self._store is None:
            raise ServiceNotStarted(type(self).__name__)
        return self._store.setdefault(_redis.require_id(user_id, "user_id"), {})

    async def create_session(self, user_id: str, session_id: str | None = None) -> Session:
        sessions = self._sessions(user_id)
        session = Session(id=_new_session_id(session_id), user_id=_redis.require_id(user_id, "user_id"))
        sessions[session.id] = session
        return copy.deepcopy(session)

    async def get_session(self, user_id: str, session_id: str) -> Session | None:
        sessions = self._sessions(user_id)
        session = sessions.get(session_id)
        if session is None:
            session = sessions[session_id] = Session(id=session_id, user_id=_redis.require_id(user_id, "user_id"))
        return copy.deepcopy(session)

    async def delete_session(self, user_id: str, session_id: str) -> None:
        self._sessions(user_id).pop(session_id, None)

    async def list_sessions(self, user_id: str) -> list[Session]:
        return [session.model_copy(update={"messages": []}, deep=True) for session in self._sessions(user_id).values()]

    async def append_message(self, session: Session, message: MessageInput) -> None:
        sessions = self._sessions(session.user_id)
        messages = _normalise(message)
        session.messages.extend(messages)
        stored = sessions.get(session.id)
        if stored is None:  # deleted or never created here: it starts with these messages
            stored = sessions[session.id] = Session(id=session.id, user_id=session.user_id)
        stored.messages.extend(copy.deepcopy(messages))

    async def delete_user_sessions(self, user_id: str) -> None:
        self._sessions(user_id).clear()


# -- Redis -------------------------------------------------------------------------------------
# KEYS are always: the user's index of sessions, the session's own key, its messages' list.
# Every key a script touches shares the user's hash tag; list and delete-all build the
# session keys from the index members (the encoded session ids) and ARGV[1], the user's base.

#: Put a session into the user's index and keep the index at least as long as its sessions:
#: with a TTL the index expires no sooner than the session just touched; without one it
#: never expires.
_INDEX = """
local function add_to_index(index, member, score, ttl, only_new)
  local existed = redis.call('EXISTS', index) == 1
  if only_new then
    redis.call('ZADD', index, 'NX', score, member)
  else
    redis.call('ZADD', index, score, member)
  end
  if ttl == '0' then
    redis.call('PERSIST', index)
    return
  end
  local left = redis.call('PTTL', index)
  if (not existed) or (left >= 0 and left < tonumber(ttl)) then
    redis.call('PEXPIRE', index, ttl)
  end
end
"""

#: ARGV: member, session JSON, ttl ms (0: none), score.
_CREATE = (
    _INDEX
    + """
redis.call('DEL', KEYS[3])
redis.call('SET', KEYS[2], ARGV[2])
if ARGV[3] ~= '0' then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
add_to_index(KEYS[1], ARGV[1], ARGV[4], ARGV[3], false)
return 1
"""
)

#: ARGV: member, ttl ms (0: none), score.  Returns {session JSON, messages} or nil.
_GET = (
    _INDEX
    + """
local session = redis.call('GET', KEYS[2])
if not session then return false end
local messages = redis.call('LRANGE', KEYS[3], 0, -1)
if ARGV[2] ~= '0' then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
  add_to_index(KEYS[1], ARGV[1], ARGV[3], ARGV[2], true)
end
return {session, messages}
"""
)

#: ARGV: member, session JSON (used when the session is missing), ttl ms (0: none), score,
#: most messages kept (0: all), then the messages.  Returns the number of messages kept.
_APPEND = (
    _INDEX
    + """
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[3])
  redis.call('SET', KEYS[2], ARGV[2])
end
for i = 6, #ARGV do
  redis.call('RPUSH', KEYS[3], ARGV[i])
end
if ARGV[5] ~= '0' then
  redis.call('LTRIM', KEYS[3], -tonumber(ARGV[5]), -1)
end
if ARGV[3] ~= '0' then
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
end
add_to_index(KEYS[1], ARGV[1], ARGV[4], ARGV[3], true)
return redis.call('LLEN', KEYS[3])
"""
)

#: ARGV: member.
_DELETE = """
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
"""

#: ARGV: the user's base.  Returns the JSON of each live session, oldest first; index
#: entries whose session expired are dropped.
_LIST = """
local found = {}
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local session = redis.call('GET', ARGV[1] .. ':session:' .. member)
  if session then
    found[#found + 1] = session
  else
    redis.call('ZREM', KEYS[1], member)
  end
end
return found
"""

#: ARGV: the user's base.
_DELETE_USER = """
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  redis.call('DEL', ARGV[1] .. ':session:' .. member, ARGV[1] .. ':history:' .. member)
end
redis.call('DEL', KEYS[1])
return 1
"""

_SCRIPTS = {
    "create": _CREATE,
    "get": _GET,
    "append": _APPEND,
    "delete": _DELETE,
    "list": _LIST,
    "delete_user": _DELETE_USER,
}


class RedisSessionHistoryService(_redis.RedisBacked, SessionHistoryService):
    """Sessions in Redis: each session a key of its own plus a list of its messages, and
    an index of each user's sessions (so listing or deleting them scans nothing).

    Every instance of the app that reaches the same Redis (and uses the same ``prefix``)
    sees the same sessions, and they outlive the instances; whether they outlive a restart
    of Redis itself is Redis's own configuration (RDB snapshots, AOF), and a restart is
    logged.  Each operation is one atomic script: appends from any number of instances at
    once are all kept, in the order Redis received them.

    Creating, reading or appending refreshes the session's TTL (``ttl_seconds``; None keeps
    sessions until deleted).  ``max_messages_per_session`` keeps only that many of the newest
    messages.  :meth:`get_session` of a missing session returns None; appending to one
    creates it.  Commands give up after ``socket_timeout`` seconds (connecting after
    ``socket_connect_timeout``) with :class:`~agentpack.services.ServiceUnavailable`.

    ``redis_client``: a client made by the caller, used as is (its own timeouts, never closed
    here).  It must reach a single Redis, or a Redis Cluster through a cluster client (a
    user's keys share one slot).
    """

    SCRIPTS: ClassVar[Mapping[str, str]] = _SCRIPTS

    def __init__(
        self,
        redis_url: str = "redis://localhost:6379/0",
        redis_client: aioredis.Redis | None = None,
        socket_timeout: float | None = 1.0,
        socket_connect_timeout: float | None = 2.0,
        max_connections: int | None = None,
        retry_on_timeout: bool = False,
        ttl_seconds: float | None = 3600,
        max_messages_per_session: int | None = None,
        health_check_interval: float | None = 30.0,
        socket_keepalive: bool = True,
        prefix: str = "agentpack",
    ) -> None:
        if max_messages_per_session is not None and max_messages_per_session < 1:
            raise ValueError(
                f"max_messages_per_session must be at least 1, or None for no limit (got {max_messages_per_session!r})"
            )
        self._max_messages_per_session = max_messages_per_session
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

    # -- keys -------------------------------------------------------------------------------
    def session_keys(self, user_id: str, session_id: str) -> list[str]:
        """The Redis keys of a session: the user's index, the session's own key, its messages."""
        base = self._user_base(user_id)
        member = _redis.encode(str(session_id))
        return [f"{base}:sessions", f"{base}:session:{member}", f"{base}:history:{member}"]

    # -- the interface ----------------------------------------------------------------------
    async def create_session(self, user_id: str, session_id: str | None = None) -> Session:
        session = Session(id=_new_session_id(session_id), user_id=_redis.require_id(user_id, "user_id"), messages=[])
        keys = self.session_keys(session.user_id, session.id)
        document = session.model_dump_json(exclude={"messages"})
        await self._redis.script("create", keys, [_redis.encode(session.id), document, self._ttl(), repr(time.time())])
        return session

    async def get_session(self, user_id: str, session_id: str) -> Session | None:
        keys = self.session_keys(user_id, session_id)
        found = await self._redis.script("get", keys, [_redis.encode(str(session_id)), self._ttl(), repr(time.time())])
        if not found:
            return None
        document, stored = found
        try:
            session = Session.model_validate_json(document)
        except ValueError:
            logger.warning("%s: %s is not a session; treated as missing", type(self).__name__, keys[1])
            return None
        for entry in stored:
            try:
                session.messages.append(Message.model_validate_json(entry))
            except ValueError:
                logger.warning("%s: skipped an entry of %s that is not a message", type(self).__name__, keys[2])
        return session

    async def delete_session(self, user_id: str, session_id: str) -> None:
        keys = self.session_keys(user_id, session_id)
        await self._redis.script("delete", keys, [_redis.encode(str(session_id))])

    async def list_sessions(self, user_id: str) -> list[Session]:
        base = self._user_base(user_id)
        documents = await self._redis.script("list", [f"{base}:sessions"], [base])
        sessions = []
        for document in documents or []:
            try:
                sessions.append(Session.model_validate_json(document))
            except ValueError:
                logger.warning(
                    "%s: skipped a stored session of user %r that does not parse", type(self).__name__, user_id
                )
        return sessions

    async def append_message(self, session: Session, message: MessageInput) -> None:
        messages = _normalise(message)
        keys = self.session_keys(session.user_id, session.id)
        document = session.model_dump_json(exclude={"messages"})
        limit = self._max_messages_per_session or 0
        args = [_redis.encode(session.id), document, self._ttl(), repr(time.time()), limit]
        args += [m.model_dump_json() for m in messages]
        await self._redis.script("append", keys, args)
        session.messages.extend(messages)  # only once stored: a failed append changes nothing
        if limit and len(session.messages) > limit:
            session.messages[:] = session.messages[-limit:]

    async def delete_user_sessions(self, user_id: str) -> None:
        base = self._user_base(user_id)
        await self._redis.script("delete_user", [f"{base}:sessions"], [base])
