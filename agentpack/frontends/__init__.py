"""The protocols an agent speaks besides the Agent API's ``/process``: A2A (:mod:`.a2a`), the
OpenAI Responses API (:mod:`.responses`) and AG-UI (:mod:`.agui`).

Each maps its own wire onto the agent's runs (:mod:`.base`) — the same session guard,
interrupts, time limits and terminal states as ``/process`` — and none imports another.
Nothing is imported here: an app loads a protocol's modules, and its optional package
(``a2a-sdk``, ``ag-ui-protocol``), only when it serves that protocol.
"""
