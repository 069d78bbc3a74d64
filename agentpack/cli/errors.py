"""How the CLI reports a user's mistake: one line naming the fix, exit code 2, no traceback."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

err_console = Console(stderr=True, highlight=False, soft_wrap=True)

#: Exit codes shared by every command (DESIGN §5).
EXIT_FAILED = 1
EXIT_USAGE = 2


def usage_error(message: str) -> typer.Exit:
    """Print ``message`` as the one-line error and return the exit to raise."""
    err_console.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(EXIT_USAGE)


def parse_pairs(pairs: list[str], flag: str = "--env") -> dict[str, str]:
    """``KEY=VALUE`` flags; the platform's own key rules are checked later, by the settings model."""
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} {pair!r}: write KEY=VALUE")
        values[key.strip()] = value
    return values
