"""The per-target deployers: each fills in the hooks of the one pipeline in
``agentpack.deployers.pipeline`` for its target, and the row of ``agentpack.targets`` names it.

``fc`` (a Function Compute custom-runtime function), ``agentrun`` (an AgentRun agent runtime),
``aws_lambda`` (a Lambda function) and ``local`` (the ``local`` target: the artifact served by a
detached process on this machine — not ``agentpack.deployers.local``, which serves an app
object in a thread of the caller).
"""
