"""``AgentApp(a2a_config=AgentCardWithRuntimeConfig(...))``: the agent card's fields and how the
A2A server runs, under AgentScope Runtime's name and keywords (importable without the SDK)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from agentpack.frontends.a2a.config import (
    DEFAULT_TASK_EVENT_TIMEOUT,
    DEFAULT_TASK_TIMEOUT,
    DEFAULT_WELLKNOWN_PATH,
    A2ARegistry,
)


class AgentCardWithRuntimeConfig(BaseModel):
    """The agent card's fields (``agent_card``: a dict, or an ``AgentCard`` of a2a-sdk 0.3 or
    1.x) and how the A2A server runs.

    ``host``/``port`` say where the agent answers when that is neither the URL it was reached
    at nor ``AGENTPACK_PUBLIC_URL`` (behind a proxy, say); unlike AgentScope Runtime, no port
    is guessed (it read env ``PORT`` or 8080).  ``public_url`` (agentpack's addition) is the
    agent's external base URL.  ``task_timeout`` bounds a task's whole run and
    ``task_event_timeout`` the silence between two of its events (seconds; a task over either
    ends ``failed``, saying which).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="allow")

    agent_card: dict[str, Any] | Any | None = None
    host: str | None = None
    port: int | None = None
    public_url: str | None = None
    registry: A2ARegistry | list[A2ARegistry] | None = None
    task_timeout: int | None = DEFAULT_TASK_TIMEOUT
    task_event_timeout: int | None = DEFAULT_TASK_EVENT_TIMEOUT
    wellknown_path: str | None = DEFAULT_WELLKNOWN_PATH

    @field_validator("registry", mode="before")
    @classmethod
    def _one_registry_is_a_list(cls, value: Any) -> Any:
        if value is None or isinstance(value, list):
            return value
        return [value]

    @field_validator("registry")
    @classmethod
    def _registries(cls, value: Any) -> Any:
        for registry in value or []:
            if not isinstance(registry, A2ARegistry) and not (
                callable(getattr(registry, "register", None)) and callable(getattr(registry, "registry_name", None))
            ):
                raise TypeError(f"registry entries must be A2ARegistry instances, got {type(registry).__name__}")
        return value

    @classmethod
    def coerce(cls, value: Any) -> AgentCardWithRuntimeConfig:
        """The config from ``None``, a dict, this model, or an equivalent model of AgentScope Runtime."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls.model_validate(value)
        dump = getattr(value, "model_dump", None)
        if callable(dump):  # AgentScope Runtime's own class: same fields
            fields = {name: getattr(value, name) for name in dump() if hasattr(value, name)}
            return cls.model_validate(fields)
        raise TypeError(f"a2a_config must be a dict or an AgentCardWithRuntimeConfig, got {type(value).__name__}")


__all__ = ["AgentCardWithRuntimeConfig"]
