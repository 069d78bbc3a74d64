"""How ``agentpack build`` looks: a progress display while it works, a summary when it is done."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agentpack.cli.errors import EXIT_FAILED, EXIT_USAGE, err_console
from agentpack.cli.waiting import BUILD_STEPS

if TYPE_CHECKING:
    from agentpack.builders.build import BuildOptions

STEPS = BUILD_STEPS


def run_build(project: Path, target: str, options: BuildOptions, as_json: bool) -> int:
    """``agentpack build`` with the flags' ``options``; returns the exit code."""
    from agentpack.builders.build import build
    from agentpack.builders.errors import BuildError, ProjectError

    console = Console(stderr=as_json, highlight=False)
    status = None if as_json else console.status("starting")

    def progress(step: str) -> None:
        if status is not None:
            status.update(STEPS.get(step, step))

    try:
        if status is not None:
            status.start()
        result = build(project, target, options=options, progress=progress)
    except ProjectError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
        if as_json:  # scripts still get one JSON object on the last line of stdout
            print(json.dumps({"error": {"code": "UserError", "message": str(exc)}}))
        return EXIT_USAGE
    except OSError as exc:  # e.g. --out where nothing can be written
        err_console.print(
            f"[bold red]error:[/] cannot write the artifact: {escape(str(exc))}; check --out and the disk"
        )
        if as_json:
            print(json.dumps({"error": {"code": "UserError", "message": f"cannot write the artifact: {exc}"}}))
        return EXIT_USAGE
    except BuildError as exc:
        err_console.print(f"[bold red]build failed:[/] {escape(str(exc))}")
        if as_json:
            print(json.dumps({"error": {"code": "BuildFailed", "message": str(exc), "details": exc.details}}))
        if exc.details:
            table = Table(show_header=True, header_style="bold")
            for column in exc.details[0]:
                table.add_column(column)
            for row in exc.details:
                table.add_row(*(str(v) for v in row.values()))
            err_console.print(table)
        return EXIT_FAILED
    finally:
        if status is not None:
            status.stop()
    if as_json:
        print(json.dumps(result.to_json()))
        return 0
    verb = "unchanged" if result.unchanged else "built"
    console.print(f"[bold green]{verb}[/] {result.artifact}")
    console.print(
        f"  {result.target} · python {result.python} · {result.arch} · {result.size_bytes / 1e6:.1f} MB zipped, "
        f"{result.unpacked_bytes / 1e6:.1f} MB unpacked · {result.dependencies} dependencies"
        f"{' (cached)' if result.cached_dependencies else ''}"
    )
    console.print(f"  sha256 {result.sha256}")
    console.print(f"  resolver: {result.resolver or 'no dependencies'}")
    console.print(f"  bytecode: {result.bytecode}")
    console.print(f"  import check: {result.import_check}")
    if result.ui:
        console.print("  chat page: packed (served at /ui where AGENTPACK_UI=1)")
    if result.largest_packages:
        table = Table("largest packages", "MB", show_header=True, header_style="bold")
        for row in result.largest_packages:
            table.add_row(row["package"], f"{row['bytes'] / 1e6:.1f}")
        console.print(table)
    return 0
