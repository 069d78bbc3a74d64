"""Wire formats of the Agent API: pure data and encoding, no I/O.

- :mod:`agentpack.protocol.schemas` — models and vocabularies under AgentScope Runtime's names
  (``AgentRequest``, ``Message``, contents, ``AgentResponse``, ``RunStatus``…)
- :mod:`agentpack.protocol.events` — ``ResponseBuilder``, which numbers and shapes events
- :mod:`agentpack.protocol.event_models` — pydantic models of the events, for clients and tests
- :mod:`agentpack.protocol.sse` — SSE encoding

Nothing is imported here, so importing one submodule costs only that submodule.
"""
