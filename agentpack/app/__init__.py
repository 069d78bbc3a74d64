"""The runtime: ``AgentApp`` and the pieces it is made of.

``AgentApp`` is imported on first use, so importing a submodule (the runtime, the task
routes) does not pull in the whole app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentpack.app.agent_app import AgentApp

__all__ = ["AgentApp"]


def __getattr__(name: str) -> Any:
    if name == "AgentApp":
        from agentpack.app.agent_app import AgentApp

        return AgentApp
    raise AttributeError(f"module 'agentpack.app' has no attribute {name!r}")
