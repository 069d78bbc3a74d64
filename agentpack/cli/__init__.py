"""The ``agentpack`` command.  Thin: it parses, calls the layers below and renders."""

from agentpack.cli.main import app, main

__all__ = ["app", "main"]
