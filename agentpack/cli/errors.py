"""How the CLI reports a failure: the two branches of :mod:`agentpack.errors`, and nothing else.

A :class:`~agentpack.errors.UserError` is one line naming the fix and exit code 2; an
:class:`~agentpack.errors.OperationFailed` is what failed (the platform's code and request id)
and exit code 1.  Any other exception is a bug and is left to raise, traceback and all — a
``ValueError`` from a mistake in agentpack must not read as "your input is wrong".
"""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from agentpack.errors import EXIT_FAILED, EXIT_USER, AgentpackError, OperationFailed, UserError

err_console = Console(stderr=True, highlight=False, soft_wrap=True)

#: Exit codes shared by every command (docs/deploy.md: 1 the operation failed, 2 the input is wrong).
EXIT_USAGE = EXIT_USER
__all__ = [
    "EXIT_FAILED",
    "EXIT_USAGE",
    "FlagError",
    "err_console",
    "exit_for",
    "parse_pairs",
    "reported",
    "usage_error",
]


class FlagError(UserError, ValueError):
    """A flag's value is malformed (``--env NOEQUALS``).  Also a ``ValueError``, for the views
    that still catch those around ``parse_pairs``."""


def usage_error(message: str) -> typer.Exit:
    """Print ``message`` as the one-line error and return the exit to raise."""
    err_console.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(EXIT_USAGE)


def reported(error: BaseException) -> tuple[int, str, dict[str, Any]] | None:
    """How the CLI reports ``error``: its exit code, the label its one line starts with, and the
    ``{"error": ...}`` of ``--json``; None for anything outside the tree (a bug: let it raise)."""
    if isinstance(error, UserError):
        return error.exit_code, "error", error.to_json()
    if isinstance(error, OperationFailed):
        return error.exit_code, error.label, error.to_json()
    return None


def exit_for(error: AgentpackError) -> int:
    """Print ``error`` as the one line the CLI reports and return its exit code."""
    code, label, _ = reported(error) or (error.exit_code, "error", {})
    err_console.print(f"[bold red]{label}:[/] {escape(str(error))}")
    return code


def parse_pairs(pairs: list[str], flag: str = "--env") -> dict[str, str]:
    """``KEY=VALUE`` flags; the platform's own key rules are checked later, by the settings model."""
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise FlagError(f"{flag} {pair!r}: write KEY=VALUE")
        values[key.strip()] = value
    return values
