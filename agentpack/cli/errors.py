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
