"""The agent card: built from the app and ``a2a_config``, served to A2A 1.0 and 0.3 clients alike.

One card carries both protocol lines: its ``supportedInterfaces`` list the JSON-RPC endpoint
for A2A 1.0 and for 0.3, and the served JSON also has the 0.3 card's top-level fields
(``url``, ``preferredTransport``, ``protocolVersion``), so a client of either a2a-sdk line
finds the endpoint.  ``capabilities.streaming`` is true (runs stream); push notifications are
not offered.

The card's URL is where the agent really answers, in this order: the card's own ``url``;
``a2a_config.host``/``port``; ``a2a_config.public_url`` or ``AGENTPACK_PUBLIC_URL`` (set by
``agentpack deploy`` and ``emulate``); the URL the request for the card came in on
(``X-Forwarded-Proto``/``-Host`` honoured); ``AGENTPACK_SERVE_URL`` (set by ``run()``,
``agentpack run`` and the artifacts' server).  Never a guessed port.
"""

from __future__ import annotations

import logging
import os
from typing import Any
from urllib.parse import urlsplit

from a2a.compat.v0_3 import types as v03
from a2a.compat.v0_3.conversions import to_compat_agent_card, to_core_agent_card
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.types import a2a_pb2
from a2a.utils.errors import VersionNotSupportedError
from google.protobuf.json_format import MessageToDict, ParseDict
from google.protobuf.message import Message as ProtoMessage

from agentpack.frontends.a2a.config import DEFAULT_TRANSPORT
from agentpack.frontends.a2a.runtime_config import AgentCardWithRuntimeConfig

logger = logging.getLogger("agentpack.a2a")

AGENT_VERSION = "1.0.0"
DEFAULT_MODES = ["text"]
#: Fields the runtime decides; a user's value is ignored with a warning.
RUNTIME_FIELDS = ("capabilities", "protocol_version", "supports_authenticated_extended_card", "signatures")
_ALIASES = {alias: name for name, field in v03.AgentCard.model_fields.items() if (alias := field.alias)}


def dialog_skill() -> dict[str, Any]:
    return {
        "id": "dialog",
        "name": "Natural Language Dialog Skill",
        "description": "Talks with users in natural language, turn by turn",
        "tags": ["natural language", "dialog", "conversation"],
        "examples": ["Hello, how are you?", "Can you help me with something?"],
    }


def _from_core(card: a2a_pb2.AgentCard) -> dict[str, Any]:
    """A 1.0 card's fields in 0.3 terms (what the rest of this module reads)."""
    core = a2a_pb2.AgentCard()
    core.CopyFrom(card)
    if core.supported_interfaces and not any(i.protocol_version.startswith("0.") for i in core.supported_interfaces):
        first = core.supported_interfaces[0]
        core.supported_interfaces.append(
            a2a_pb2.AgentInterface(url=first.url, protocol_binding=first.protocol_binding, protocol_version="0.3")
        )
    try:
        return to_compat_agent_card(core).model_dump(exclude_none=True, by_alias=False)
    except VersionNotSupportedError:  # a card without interfaces: its other fields still count
        return {
            k: v
            for k, v in MessageToDict(core, preserving_proto_field_name=True).items()
            if k != "supported_interfaces"
        }


def _field_name(key: str) -> str:
    """A card field's 0.3 name, from its camelCase alias or its own name."""
    return _ALIASES.get(key, key)


def user_card_fields(card: Any) -> dict[str, Any]:
    """The fields of a user's card — a dict (0.3 or 1.0 shape, camelCase or snake_case), an
    a2a-sdk 0.3 ``AgentCard`` or a 1.x one — as 0.3 field names."""
    if card is None:
        return {}
    if isinstance(card, ProtoMessage):
        return _from_core(card)
    if isinstance(card, dict):
        if "supportedInterfaces" in card or "supported_interfaces" in card:
            return _from_core(ParseDict(card, a2a_pb2.AgentCard(), ignore_unknown_fields=True))
        return {_field_name(key): value for key, value in card.items()}
    dump = getattr(card, "model_dump", None)
    if callable(dump):
        return {_field_name(key): value for key, value in dump(exclude_none=True, mode="json").items()}
    raise TypeError(f"agent_card must be a dict or an a2a AgentCard, got {type(card).__name__}")


def endpoint_url(
    config: AgentCardWithRuntimeConfig,
    rpc_path: str,
    root_path: str = "",
    request_base: str | None = None,
) -> str:
    """Where the JSON-RPC endpoint answers (see the module doc for the order)."""
    path = "/" + "/".join(p.strip("/") for p in (root_path, rpc_path) if p.strip("/"))
    fields = user_card_fields(config.agent_card)
    if fields.get("url"):
        return str(fields["url"])
    if config.host:
        host = config.host.rstrip("/")
        base = host if host.startswith(("http://", "https://")) else f"http://{host}"
        if config.port is not None:
            base = f"{base}:{config.port}"
        return base + path
    for candidate in (
        config.public_url,
        os.environ.get("AGENTPACK_PUBLIC_URL"),
        request_base,
        os.environ.get("AGENTPACK_SERVE_URL"),
    ):
        if candidate:
            return candidate.rstrip("/") + path
    return path


def compat_card(
    config: AgentCardWithRuntimeConfig, name: str, description: str, url: str, security: dict[str, Any] | None = None
) -> v03.AgentCard:
    """The card as a2a-sdk 0.3 models it (what ``get_agent_card()`` returns, as upstream's does).

    ``security`` (``security_schemes`` and ``security``) is what the app enforces; a card that
    declares its own keeps them."""
    fields = user_card_fields(config.agent_card)
    for key in RUNTIME_FIELDS:
        if fields.get(key) is not None:
            logger.warning("[A2A] ignoring the agent card's %s: the runtime decides it", key)
    provider = fields.get("provider")
    if isinstance(provider, str):
        provider = {"organization": provider, "url": url}
    card = {
        "name": fields.get("name", name),
        "description": fields.get("description", description),
        "url": url,
        "version": fields.get("version", AGENT_VERSION),
        "preferred_transport": fields.get("preferred_transport", DEFAULT_TRANSPORT),
        "additional_interfaces": fields.get("additional_interfaces") or [],
        "default_input_modes": fields.get("default_input_modes", DEFAULT_MODES),
        "default_output_modes": fields.get("default_output_modes", DEFAULT_MODES),
        "skills": fields.get("skills", [dialog_skill()]),
        "capabilities": {"streaming": True, "push_notifications": False, "state_transition_history": False},
    }
    for key in ("provider", "documentation_url", "icon_url", "security_schemes", "security"):
        value = provider if key == "provider" else fields.get(key, (security or {}).get(key))
        if value is not None:
            card[key] = value
    return v03.AgentCard.model_validate(card)


def core_card(compat: v03.AgentCard) -> a2a_pb2.AgentCard:
    """The A2A 1.0 card: the same fields, with the endpoint listed for 1.0 first, then 0.3."""
    core = to_core_agent_card(compat)
    core.supported_interfaces.insert(
        0,
        a2a_pb2.AgentInterface(
            url=compat.url, protocol_binding=compat.preferred_transport or DEFAULT_TRANSPORT, protocol_version="1.0"
        ),
    )
    return core


def served_card(core: a2a_pb2.AgentCard) -> dict[str, Any]:
    """The JSON both protocol lines read (the SDK adds the 0.3 fields to the 1.0 card)."""
    return agent_card_to_dict(core)


def request_base(headers: Any, scheme: str, server: tuple[str, int] | None) -> str | None:
    """The base URL a request came in on, as its client sees it."""
    proto = (headers.get("x-forwarded-proto") or scheme or "http").split(",")[0].strip()
    host = (headers.get("x-forwarded-host") or headers.get("host") or "").split(",")[0].strip()
    if not host and server:
        host = f"{server[0]}:{server[1]}"
    if not host or urlsplit(f"{proto}://{host}").hostname is None:
        return None
    return f"{proto}://{host}"


__all__ = ["compat_card", "core_card", "endpoint_url", "request_base", "served_card", "user_card_fields"]
