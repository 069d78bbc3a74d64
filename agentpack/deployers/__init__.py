"""Deployers: put an app (or a built artifact) somewhere it serves requests.

Four kinds of module, from the top down (each imports only those below it; an import-linter
contract in pyproject.toml keeps it so):

* the Python API — ``managers`` (``FCDeployManager``… publish a project as ``agentpack deploy``
  does) and ``local`` (``LocalDeployManager``: an app object served in a thread of the caller);
* the commands — ``service``: deploy, list, status, rollback, destroy, logs, stop, endpoint, as
  functions the CLI and the managers call;
* the deployers — ``platforms/<target>``: each target's hooks of the one pipeline in
  ``pipeline`` (find → decide → upload → wait → publish → route → record), fed by ``request``
  (options, settings and environment, checked before any call) and recording into ``state``
  (``.agentpack/deployments.json``);
* the cloud clients — ``clients/``: each platform's API over its real SDK, knowing nothing of
  the above; and ``errors``, the two errors all of them raise.

See docs/deploy.md.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LocalDeployManager": "agentpack.deployers.local",
    "FCDeployManager": "agentpack.deployers.managers",
    "AgentRunDeployManager": "agentpack.deployers.managers",
    "LambdaDeployManager": "agentpack.deployers.managers",
    "ModelstudioDeployManager": "agentpack.deployers.managers",
    "LocalProcessDeployManager": "agentpack.deployers.managers",
    "DeployOptions": "agentpack.deployers.request",
    "DeployConfigError": "agentpack.deployers.errors",
    "PlatformError": "agentpack.deployers.errors",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agentpack.deployers' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = list(_EXPORTS)
