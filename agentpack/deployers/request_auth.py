"""The old path of :mod:`agentpack.deployers.clients.signing` (request signers for deployed agents)."""

from agentpack.deployers.clients.signing import AcsSignatureAuth, AwsSigV4Auth

__all__ = ["AcsSignatureAuth", "AwsSigV4Auth"]
