"""``AgentApp(agui_config=AGUIAdaptorConfig(route_path=...))``, as AgentScope Runtime spells it."""

from __future__ import annotations

from pydantic import BaseModel, Field

from agentpack.frontends.agui.adapter import AGUI_ENDPOINT_PATH


class AGUIAdaptorConfig(BaseModel):
    """Where AG-UI is served."""

    route_path: str = Field(default=AGUI_ENDPOINT_PATH)


__all__ = ["AGUIAdaptorConfig"]
