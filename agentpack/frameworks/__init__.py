"""Framework converters: what a query handler yields -> Agent API events, and the request's
messages -> the framework's own input (``msgs``).

Each converter is looked up by the name given to ``@app.query(framework=...)`` and imported
only when first asked for, and its framework's package only when the app starts or its first
request arrives — so an app that streams plain text never imports agentscope, LangGraph, agno,
AutoGen or Agent Framework.  A name whose package is not installed fails at decoration time,
naming the extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util

from agentpack.frameworks.base import Framework

#: name -> "module:attribute" of the converter class (AgentScope Runtime's names, and ``text``).
FRAMEWORKS: dict[str, str] = {
    "text": "agentpack.frameworks.text:TextFramework",
    "agentscope": "agentpack.frameworks.agentscope:AgentScopeFramework",
    "langgraph": "agentpack.frameworks.langgraph:LangGraphFramework",
    "agno": "agentpack.frameworks.agno:AgnoFramework",
    "autogen": "agentpack.frameworks.autogen:AutoGenFramework",
    "ms_agent_framework": "agentpack.frameworks.ms_agent_framework:AgentFrameworkFramework",
}

#: name -> (the package the converter needs, the extra that installs it); ``text`` needs none and
#: ``agentscope`` works with agentpack's own ``Msg`` when agentscope is absent.
REQUIRES: dict[str, tuple[str, str]] = {
    "langgraph": ("langchain_core", "langgraph"),
    "agno": ("agno", "agno"),
    "autogen": ("autogen_agentchat", "autogen"),
    "ms_agent_framework": ("agent_framework", "ms_agent_framework"),
}

#: Kept for code that read it: every name AgentScope Runtime accepts is served now.
PLANNED: tuple[str, ...] = ()


class FrameworkNotAvailable(NotImplementedError):
    """The framework's package is not installed (the message names the extra)."""


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def get_framework(name: str) -> Framework:
    """Return the converter for ``name``, failing at decoration time with a message that says what to do."""
    try:
        target = FRAMEWORKS[name]
    except KeyError:
        known = ", ".join(repr(n) for n in FRAMEWORKS)
        raise ValueError(f"unknown framework {name!r}; choose one of {known}") from None
    needed = REQUIRES.get(name)
    if needed is not None and not _installed(needed[0]):
        raise FrameworkNotAvailable(
            f"framework={name!r} needs the {needed[1]} extra, which is not installed: pip install 'agentpack[{needed[1]}]'"
        )
    module_name, _, attr = target.partition(":")
    framework: Framework = getattr(importlib.import_module(module_name), attr)()
    return framework


__all__ = ["FRAMEWORKS", "PLANNED", "REQUIRES", "Framework", "FrameworkNotAvailable", "get_framework"]
