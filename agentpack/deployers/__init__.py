"""Deployers: put an app (or a built artifact) somewhere it serves requests.

``agentpack deploy --target T`` and the managers below publish a project's artifact with the
target's deployer (named by its row in ``agentpack.targets``); ``LocalDeployManager`` serves an
app object in a thread of the caller.  See docs/deploy.md.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LocalDeployManager": "agentpack.deployers.local",
    "FCDeployManager": "agentpack.deployers.managers",
    "AgentRunDeployManager": "agentpack.deployers.managers",
    "LambdaDeployManager": "agentpack.deployers.managers",
    "LocalProcessDeployManager": "agentpack.deployers.managers",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agentpack.deployers' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = list(_EXPORTS)
