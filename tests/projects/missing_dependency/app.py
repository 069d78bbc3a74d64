"""An app importing a package its requirements forgot (the host may well have it)."""

import yaml  # noqa: F401 - missing from requirements.txt on purpose

from agentpack import AgentApp

app = AgentApp()
