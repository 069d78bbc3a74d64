"""Wire formats of the Agent API: pure data and encoding, no I/O."""

from agentpack.protocol.events import OpenContent, OpenMessage, ResponseBuilder
from agentpack.protocol.schemas import (
    AgentRequest,
    AudioContent,
    Content,
    ContentEvent,
    DataContent,
    FileContent,
    ImageContent,
    Message,
    MessageEvent,
    MessageType,
    RefusalContent,
    ResponseEvent,
    RunStatus,
    TextContent,
    VideoContent,
    new_id,
)
from agentpack.protocol.sse import STREAM_HEADERS, encode_event, encode_json

__all__ = [
    "AgentRequest",
    "AudioContent",
    "Content",
    "ContentEvent",
    "DataContent",
    "FileContent",
    "ImageContent",
    "Message",
    "MessageEvent",
    "MessageType",
    "OpenContent",
    "OpenMessage",
    "RefusalContent",
    "ResponseBuilder",
    "ResponseEvent",
    "RunStatus",
    "STREAM_HEADERS",
    "TextContent",
    "VideoContent",
    "encode_event",
    "encode_json",
    "new_id",
]
