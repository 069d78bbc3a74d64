"""Stopping runs: which session is running where, and how a stop reaches it."""

from agentpack.interrupt.local import LocalRuns, RunState, SessionBusy

__all__ = ["LocalRuns", "RunState", "SessionBusy"]
