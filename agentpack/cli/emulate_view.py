"""How ``agentpack emulate`` looks: one progress line per step, the URL with the cold-start time,
the emulated instances' logs, and optionally one streamed reply (``--ask``)."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from agentpack.cli.errors import EXIT_FAILED, EXIT_USAGE, err_console, parse_pairs
from agentpack.cli.waiting import BUILD_STEPS, Waiting
from agentpack.client import agent_paths

if TYPE_CHECKING:
    from agentpack.emulators.emulation import EmulationOptions


def run_emulate(
    source: Path,
    target: str | None,
    options: EmulationOptions,
    env_pairs: list[str],
    as_json: bool,
    ask: str | None,
    once: bool,
) -> int:
    """``agentpack emulate`` with the flags' ``options`` (``--env KEY=VALUE`` pairs still to parse)."""
    from agentpack.builders.errors import BuildError
    from agentpack.emulators.background import EmulatorStartError
    from agentpack.emulators.emulation import EmulationError, start

    console = Console(stderr=as_json, highlight=False, soft_wrap=True)

    def fail(code: int, label: str, message: str) -> int:
        err_console.print(f"[bold red]{label}:[/] {escape(message)}")
        if as_json:  # scripts still get one JSON object on the last line of stdout
            print(
                json.dumps(
                    {"error": {"code": "UserError" if code == EXIT_USAGE else "EmulationFailed", "message": message}}
                ),
                flush=True,
            )
        return code

    if target is None and source.is_file():  # an artifact records its target: named in what is printed
        from agentpack.builders.artifact import read_manifest
        from agentpack.builders.errors import ProjectError

        try:
            target = str(read_manifest(source).get("target") or "") or None
        except ProjectError:
            pass  # start() says what is wrong with it
    try:
        env = parse_pairs(env_pairs)
    except ValueError as exc:
        return fail(EXIT_USAGE, "error", str(exc))
    env.update(instance_log_format({**options.env, **env}, console.is_terminal))
    if once and not ask:
        return fail(EXIT_USAGE, "error", "--once needs --ask MESSAGE (it stops after that reply)")

    def progress(step: str, detail: str) -> None:
        if step == "build":
            detail = BUILD_STEPS.get(detail, detail)  # the builder's own steps, in agentpack build's words
        console.print(f"[bold]{step:>6}[/] {escape(detail)}")
        waiting.started(detail)

    waiting = Waiting(lambda line: console.print(f"[dim]{'':>6} {escape(line)}[/]"))

    held: list[str] = []
    holding = [ask is not None]  # while the reply streams: lines would cut through it
    # Set when nobody reads the output any more (`emulate … | head`): the emulation ends as on
    # Ctrl+C, so its instances stop and its unpacked copy is removed.
    stop = threading.Event()

    def log(line: str) -> None:
        if holding[0]:
            held.append(line)
            del held[:-200]
            return
        try:
            console.out(line, style="dim", highlight=False)
        except (BrokenPipeError, SystemExit):  # rich raises SystemExit(1) on a broken pipe
            stop.set()

    try:
        with waiting:
            emulation = start(source, target, options, env={**options.env, **env}, progress=progress, log=log)
    except EmulationError as exc:
        return fail(EXIT_USAGE, "error", str(exc))
    except BuildError as exc:
        return fail(EXIT_FAILED, "build failed", str(exc))
    except EmulatorStartError as exc:
        if ask is None:  # its output was shown as it came: not a second time
            exc = EmulatorStartError(exc.args[0], code=exc.code, exit_code=exc.exit_code, init_error=exc.init_error)
        return fail(EXIT_FAILED, f"the artifact did not start under the {target} emulator", "\n" + str(exc))
    except ValueError as exc:  # a setting the platform refuses (e.g. a reserved env name)
        return fail(EXIT_USAGE, "error", str(exc))
    code = 0
    try:
        if as_json:
            print(json.dumps(emulation.describe()), flush=True)
        if ask is not None:
            from agentpack.cli.ask import render_stream

            code = render_stream(emulation.url + agent_paths(emulation.url)["process"], ask)
            holding[0] = False  # the reply is over: later lines are shown as they come
            if code != 0 and held:
                console.out("\n".join(held[-40:]), style="dim", highlight=False)
            if once:
                return code
        if not as_json:
            if options.ui:
                console.print(f"[bold green]chat page[/] at {emulation.url}/ui")
            try:
                console.print(f"[dim]serving {emulation.target} at {emulation.url} — press Ctrl+C to stop[/]")
            except (BrokenPipeError, SystemExit):
                stop.set()
        _wait_for_signal(stop)
        return code
    finally:
        emulation.stop()


def instance_log_format(env: dict[str, str], terminal: bool) -> dict[str, str]:
    """The instances' log format: their output is a pipe, so they would write JSON lines as on the
    platform; someone reading a terminal gets text lines instead, unless ``--env`` or this shell
    set ``AGENTPACK_LOG_FORMAT`` (docs/logs.md)."""
    import os

    from agentpack.logs import FORMAT_ENV

    if FORMAT_ENV in env:
        return {}
    if os.environ.get(FORMAT_ENV):
        return {FORMAT_ENV: os.environ[FORMAT_ENV]}
    return {FORMAT_ENV: "text"} if terminal else {}


def _wait_for_signal(stop: threading.Event) -> None:
    """Block until Ctrl+C or SIGTERM, or ``stop`` is set (then every instance is stopped by the caller)."""
    previous: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
