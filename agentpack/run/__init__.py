"""One agent run: calling the handler (:mod:`~agentpack.run.handler`), turning what it
yields into protocol events in order with exactly one terminal event
(:mod:`~agentpack.run.agent_run`), and the SSE response that carries them
(:mod:`~agentpack.run.stream`).  Knows nothing of AgentApp; the app wires a run to a
session guard through :meth:`AgentRun.on_release`."""
