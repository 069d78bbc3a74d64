"""agentpack: run a FastAPI-based agent anywhere.

Public names are imported on first use, so ``import agentpack`` costs almost nothing and
never pulls in FastAPI, Redis, Celery or a cloud SDK before they are needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agentpack._version import __version__

_EXPORTS = {
    "AgentApp": "agentpack.app.agent_app",
    "AgentRequest": "agentpack.protocol.schemas",
    "Message": "agentpack.protocol.schemas",
    "LocalDeployManager": "agentpack.deployers.local",
    "Msg": "agentpack.frameworks.agentscope",
}

if TYPE_CHECKING:
    from agentpack.app.agent_app import AgentApp
    from agentpack.deployers.local import LocalDeployManager
    from agentpack.frameworks.agentscope import Msg
    from agentpack.protocol.schemas import AgentRequest, Message


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agentpack' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = ["__version__", *_EXPORTS]
