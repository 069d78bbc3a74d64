"""The runtime: ``AgentApp`` and the pieces it is made of."""

from agentpack.app.agent_app import AgentApp

__all__ = ["AgentApp"]
