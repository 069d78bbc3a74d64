"""How an app runs inside each target (the Lambda handler; FC and AgentRun run it as an HTTP server)."""
