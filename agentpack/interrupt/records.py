"""Small records that every instance sharing an interrupt backend must see — an A2A task's
state, read by ``tasks/get`` on whichever instance the client reaches.

The backend that makes sessions and stops visible across instances keeps these too
(:meth:`~agentpack.interrupt.base.BaseInterruptBackend.records`): in memory for the local
backend, in Redis for the Redis one.  Each record expires after its own time to live, and
the memory store also holds at most ``max_records`` (the oldest go first), so nothing grows
without bound.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Protocol


class Records(Protocol):
    """Text values under keys of one namespace, each with a time to live."""

    async def get(self, key: str) -> str | None: ...

    async def put(self, key: str, value: str, ttl_seconds: float) -> None: ...


class MemoryRecords:
    """Records of one process: at most ``max_records``, each until its time to live passes."""

    def __init__(self, max_records: int = 10_000) -> None:
        self.max_records = max_records
        self._values: OrderedDict[str, tuple[str, float]] = OrderedDict()

    async def get(self, key: str) -> str | None:
        entry = self._values.get(key)
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]

    async def put(self, key: str, value: str, ttl_seconds: float) -> None:
        self._values.pop(key, None)
        self._values[key] = (value, time.monotonic() + ttl_seconds)
        while len(self._values) > self.max_records:
            self._values.popitem(last=False)

    def __len__(self) -> int:
        return len(self._values)


class RedisRecords:
    """Records in Redis under ``<prefix>:<key>`` (one ``SET … PX`` / ``GET`` each).

    ``client`` is called for the connection on each use, so the records can be made before the
    backend has connected.
    """

    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self.prefix = prefix

    async def get(self, key: str) -> str | None:
        value: str | None = await self._client().get(f"{self.prefix}:{key}")  # decode_responses: str
        return value

    async def put(self, key: str, value: str, ttl_seconds: float) -> None:
        await self._client().set(f"{self.prefix}:{key}", value, px=max(1, int(ttl_seconds * 1000)))


__all__ = ["MemoryRecords", "Records", "RedisRecords"]
