"""A2A's defaults and the registry interface, under AgentScope Runtime's names.

Nothing here imports ``a2a`` (the SDK) or builds a pydantic model, so serving the default
A2A routes costs an app nothing until A2A is spoken (``a2a_config``'s model is in
:mod:`agentpack.frontends.a2a.runtime_config`).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from agentpack.frontends import paths

logger = logging.getLogger("agentpack.a2a")

DEFAULT_WELLKNOWN_PATH = paths.A2A_CARD_PATH
#: Where a2a-sdk 0.3 servers also served the card (and some 0.3 clients still look).
PREVIOUS_WELLKNOWN_PATH = paths.A2A_PREVIOUS_CARD_PATH
A2A_JSON_RPC_URL = paths.A2A_JSON_RPC_PATH
DEFAULT_TASK_TIMEOUT = 60
DEFAULT_TASK_EVENT_TIMEOUT = 10
DEFAULT_TRANSPORT = "JSONRPC"


@dataclass
class A2ATransportsProperties:
    """One transport the A2A server answers on, as given to registries."""

    host: str | None = None
    port: int | None = None
    path: str | None = None
    support_tls: bool | None = False
    extra: dict[str, Any] = field(default_factory=dict)
    transport_type: str = DEFAULT_TRANSPORT


class A2ARegistry(ABC):
    """A service-discovery registry the agent registers with when it starts serving.

    ``register`` may be a plain or an ``async`` method; a failure is logged and never keeps
    the agent from serving.  ``deregister`` (agentpack's addition) is called at shutdown.
    """

    @abstractmethod
    def registry_name(self) -> str:
        """A short name for logs, e.g. ``"nacos"``."""

    @abstractmethod
    def register(self, agent_card: Any, a2a_transports_properties: list[A2ATransportsProperties] | None = None) -> Any:
        """Publish the agent's card and where it answers."""

    def deregister(
        self, agent_card: Any, a2a_transports_properties: list[A2ATransportsProperties] | None = None
    ) -> Any:
        """Withdraw what :meth:`register` published (the agent is stopping)."""
        return None


__all__ = [
    "A2ARegistry",
    "A2ATransportsProperties",
    "A2A_JSON_RPC_URL",
    "DEFAULT_TASK_EVENT_TIMEOUT",
    "DEFAULT_TASK_TIMEOUT",
    "DEFAULT_WELLKNOWN_PATH",
    "PREVIOUS_WELLKNOWN_PATH",
]
