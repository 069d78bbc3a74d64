"""Framework converters: what a query handler yields -> Agent API events.

Each converter is looked up by the name given to ``@app.query(framework=...)`` and imported
only when first asked for, so an app that streams plain text never imports agentscope.
"""

from __future__ import annotations

import importlib

from agentpack.frameworks.base import Framework

#: name -> "module:attribute" of the converter class.
FRAMEWORKS: dict[str, str] = {
    "text": "agentpack.frameworks.text:TextFramework",
    "agentscope": "agentpack.frameworks.agentscope:AgentScopeFramework",
}

#: Names that AgentScope Runtime accepts and whose converters agentpack has not shipped yet.
PLANNED = ("langgraph", "agno", "autogen")


class FrameworkNotAvailable(NotImplementedError):
    """The framework name is known but agentpack does not convert its output yet."""


def get_framework(name: str) -> Framework:
    """Return the converter for ``name``, failing at decoration time with a message that says what to use."""
    if name in PLANNED:
        raise FrameworkNotAvailable(
            f"framework={name!r} is recognised but agentpack does not ship its converter yet; "
            f"use framework='agentscope' (yield (msg, last) tuples) or framework='text' (yield str)"
        )
    try:
        target = FRAMEWORKS[name]
    except KeyError:
        known = ", ".join(repr(n) for n in (*FRAMEWORKS, *PLANNED))
        raise ValueError(f"unknown framework {name!r}; choose one of {known}") from None
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)()


__all__ = ["FRAMEWORKS", "PLANNED", "Framework", "FrameworkNotAvailable", "get_framework"]
