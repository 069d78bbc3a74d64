"""How ``agentpack emulate`` looks: one progress line per step, the URL with the cold-start time,
the emulated instances' logs, and optionally one streamed reply (``--ask``)."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Any, Optional

from rich.console import Console
from rich.markup import escape

from agentpack.cli.errors import EXIT_FAILED, EXIT_USAGE, err_console

STEPS = {"build": "build", "unpack": "unpack", "start": "start", "ready": "ready"}


def parse_env(pairs: list[str]) -> dict[str, str]:
    """``--env KEY=VALUE`` flags; a malformed one is a usage error naming it."""
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise ValueError(f"--env {pair!r}: write KEY=VALUE with a key of letters, digits and '_' (not starting with a digit)")
        env[key] = value
    return env


def process_path(url: str) -> str:
    """The app's ``/process`` path, as its ``GET /`` advertises it."""
    import httpx

    try:
        return httpx.get(f"{url}/", timeout=10).json().get("endpoints", {}).get("process") or "/process"
    except (httpx.HTTPError, ValueError, AttributeError):
        return "/process"


def run_emulate(
    source: Path, target: str, port: int, instances: int, env_pairs: list[str], as_json: bool, ask: Optional[str], once: bool, timeout: Optional[float]
) -> int:
    from agentpack.builders.errors import BuildError
    from agentpack.emulators.aws_lambda import EmulatorStartError as LambdaStartError
    from agentpack.emulators.http_function import EmulatorStartError
    from agentpack.emulators.session import EmulationError, start

    console = Console(stderr=as_json, highlight=False, soft_wrap=True)
    try:
        env = parse_env(env_pairs)
    except ValueError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
        return EXIT_USAGE
    if once and not ask:
        err_console.print("[bold red]error:[/] --once needs --ask MESSAGE (it stops after that reply)")
        return EXIT_USAGE

    def progress(step: str, detail: str) -> None:
        console.print(f"[bold]{STEPS.get(step, step):>6}[/] {detail}")

    held: list[str] = []

    def log(line: str) -> None:
        if ask is not None:  # held back: they would cut through the streamed reply
            held.append(line)
            del held[:-200]
        else:
            console.out(line, style="dim", highlight=False)

    try:
        emulation = start(source, target, port=port, instances=instances, env=env, progress=progress, log=log, timeout=timeout)
    except EmulationError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
        return EXIT_USAGE
    except BuildError as exc:
        err_console.print(f"[bold red]build failed:[/] {escape(str(exc))}")
        return EXIT_FAILED
    except (EmulatorStartError, LambdaStartError) as exc:
        err_console.print(f"[bold red]the artifact did not start under the {target} emulator:[/]\n{escape(str(exc))}")
        return EXIT_FAILED
    except ValueError as exc:  # a setting the platform refuses (e.g. a reserved env name)
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
        return EXIT_USAGE
    code = 0
    try:
        if as_json:
            print(json.dumps(emulation.describe()), flush=True)
        if ask is not None:
            from agentpack.cli.ask import render_stream

            code = render_stream(emulation.url + process_path(emulation.url), ask)
            if code != 0 and held:
                console.out("\n".join(held[-40:]), style="dim", highlight=False)
            if once:
                return code
        if not as_json:
            console.print(f"[dim]serving {target} at {emulation.url} — press Ctrl+C to stop[/]")
        _wait_for_signal()
        return code
    finally:
        emulation.stop()


def _wait_for_signal() -> None:
    """Block until Ctrl+C or SIGTERM (then every instance is stopped by the caller)."""
    stop = threading.Event()
    previous: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
