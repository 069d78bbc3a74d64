"""State and session-history services, in memory or in Redis, started by the app's lifespan.

The names, constructor keywords and methods are AgentScope Runtime 1.0's
(``agentscope_runtime.engine.services.agent_state`` / ``.session_history``), so code written
for them runs after changing its imports.  Importing this package does not import redis;
the Redis services import it when they start.

    from agentpack.services import RedisSessionHistoryService, RedisStateService

    async with RedisStateService("redis://redis:6379/0") as states:
        round_id = await states.save_state("user-1", {"turns": 3}, session_id="s-1")
        state = await states.export_state("user-1", session_id="s-1")
"""

from agentpack.services.agent_state import InMemoryStateService, RedisStateService, StateService
from agentpack.services.base import (
    Service,
    ServiceLifecycleManagerMixin,
    ServiceNotStarted,
    ServiceUnavailable,
    ServiceWithLifecycleManager,
)
from agentpack.services.session import Session
from agentpack.services.session_history import (
    InMemorySessionHistoryService,
    RedisSessionHistoryService,
    SessionHistoryService,
)

__all__ = [
    "InMemorySessionHistoryService",
    "InMemoryStateService",
    "RedisSessionHistoryService",
    "RedisStateService",
    "Service",
    "ServiceLifecycleManagerMixin",
    "ServiceNotStarted",
    "ServiceUnavailable",
    "ServiceWithLifecycleManager",
    "Session",
    "SessionHistoryService",
    "StateService",
]
