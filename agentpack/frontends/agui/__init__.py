"""AG-UI: :mod:`.request` (``RunAgentInput`` as an Agent API request; imports ``ag_ui``),
:mod:`.events` (a run's events as AG-UI events) and :mod:`.adapter` (the route)."""
