"""The OpenAI Responses API: :mod:`.request` (its request as an Agent API request),
:mod:`.events` (a run's events as its stream) and :mod:`.adapter` (the route).  No package
beyond agentpack's own is needed."""
