"""agentpack: run a FastAPI-based agent anywhere.

Public names are imported on first use, so ``import agentpack`` costs almost nothing and
never pulls in FastAPI, Redis, Celery or a cloud SDK before they are needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agentpack._version import __version__

#: The Agent API models and vocabularies, named as in AgentScope Runtime's
#: ``agentscope_runtime.engine.schemas.agent_schemas`` (see docs/migrating.md).
SCHEMA_NAMES = (
    "AgentContent",
    "AgentRequest",
    "AgentResponse",
    "AgentRole",
    "AudioContent",
    "BaseRequest",
    "BaseResponse",
    "Content",
    "ContentType",
    "DataContent",
    "Error",
    "Event",
    "FileContent",
    "FunctionCall",
    "FunctionCallOutput",
    "FunctionParameters",
    "FunctionTool",
    "ImageContent",
    "McpCall",
    "McpCallOutput",
    "Message",
    "MessageType",
    "RefusalContent",
    "Role",
    "RunStatus",
    "TextContent",
    "Tool",
    "ToolCall",
    "ToolCallOutput",
    "Usage",
    "VideoContent",
)

_EXPORTS = {
    "AgentApp": "agentpack.app.agent_app",
    "LocalDeployManager": "agentpack.deployers.local",
    "FCDeployManager": "agentpack.deployers.managers",
    "AgentRunDeployManager": "agentpack.deployers.managers",
    "LambdaDeployManager": "agentpack.deployers.managers",
    "ModelstudioDeployManager": "agentpack.deployers.managers",
    "AgentpackError": "agentpack.errors",
    "UserError": "agentpack.errors",
    "OperationFailed": "agentpack.errors",
    "SessionBusy": "agentpack.interrupt.base",
    "BackendUnavailable": "agentpack.interrupt.base",
    "DeployConfigError": "agentpack.deployers.errors",
    "PlatformError": "agentpack.deployers.errors",
    "DeployError": "agentpack.deployers.local",
    "Msg": "agentpack.frameworks.agentscope",
    "ProtocolAdapter": "agentpack.frontends.base",
    "A2AFastAPIDefaultAdapter": "agentpack.frontends.a2a.adapter",
    "AgentCardWithRuntimeConfig": "agentpack.frontends.a2a.runtime_config",
    "A2ARegistry": "agentpack.frontends.a2a.config",
    "A2ATransportsProperties": "agentpack.frontends.a2a.config",
    "NacosRegistry": "agentpack.frontends.a2a.nacos",
    "ResponseAPIDefaultAdapter": "agentpack.frontends.responses.adapter",
    "AGUIDefaultAdapter": "agentpack.frontends.agui.adapter",
    "AGUIAdaptorConfig": "agentpack.frontends.agui.config",
    "FlexibleRunAgentInput": "agentpack.frontends.agui.request",
    **dict.fromkeys(
        (
            "StateService",
            "InMemoryStateService",
            "RedisStateService",
            "SessionHistoryService",
            "InMemorySessionHistoryService",
            "RedisSessionHistoryService",
        ),
        "agentpack.services",
    ),
    **dict.fromkeys(SCHEMA_NAMES, "agentpack.protocol.schemas"),
}

if TYPE_CHECKING:
    from agentpack.app.agent_app import AgentApp
    from agentpack.deployers.errors import DeployConfigError, PlatformError
    from agentpack.deployers.local import DeployError, LocalDeployManager
    from agentpack.deployers.managers import (
        AgentRunDeployManager,
        FCDeployManager,
        LambdaDeployManager,
        ModelstudioDeployManager,
    )
    from agentpack.errors import AgentpackError, OperationFailed, UserError
    from agentpack.frameworks.agentscope import Msg
    from agentpack.frontends.a2a.adapter import A2AFastAPIDefaultAdapter
    from agentpack.frontends.a2a.config import A2ARegistry, A2ATransportsProperties
    from agentpack.frontends.a2a.nacos import NacosRegistry
    from agentpack.frontends.a2a.runtime_config import AgentCardWithRuntimeConfig
    from agentpack.frontends.agui.adapter import AGUIDefaultAdapter
    from agentpack.frontends.agui.config import AGUIAdaptorConfig
    from agentpack.frontends.agui.request import FlexibleRunAgentInput
    from agentpack.frontends.base import ProtocolAdapter
    from agentpack.frontends.responses.adapter import ResponseAPIDefaultAdapter
    from agentpack.interrupt.base import BackendUnavailable, SessionBusy
    from agentpack.protocol.schemas import (
        AgentContent,
        AgentRequest,
        AgentResponse,
        AgentRole,
        AudioContent,
        BaseRequest,
        BaseResponse,
        Content,
        ContentType,
        DataContent,
        Error,
        Event,
        FileContent,
        FunctionCall,
        FunctionCallOutput,
        FunctionParameters,
        FunctionTool,
        ImageContent,
        McpCall,
        McpCallOutput,
        Message,
        MessageType,
        RefusalContent,
        Role,
        RunStatus,
        TextContent,
        Tool,
        ToolCall,
        ToolCallOutput,
        Usage,
        VideoContent,
    )
    from agentpack.services import (
        InMemorySessionHistoryService,
        InMemoryStateService,
        RedisSessionHistoryService,
        RedisStateService,
        SessionHistoryService,
        StateService,
    )


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
