"""``python -m agentpack.serve --app SPEC --host H --port P [--platform fc|agentrun]``: what
generated entry points (an artifact's ``bootstrap``) run.

Deliberately small (argparse, no CLI framework), because it sits on every cold start.
With ``--platform``, the app is served behind that platform's adapter
(:mod:`agentpack.adapters.http_function`: lifecycle hooks, request ids, invocation context).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

#: Seconds open streams get to finish on SIGTERM or ``/pre-stop`` before they are ended.
GRACE_SECONDS = float(os.environ.get("AGENTPACK_GRACEFUL_SHUTDOWN", "10"))


class ShutdownNotCrash(logging.Filter):
    """Logs uvicorn's "Cancel N running task(s), timeout graceful shutdown exceeded" at INFO:
    each stream it cancels is ended with its ``canceled`` event and logged at INFO by
    agentpack, and a platform scaling in (FC, AgentRun) must not read as a crash."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and str(record.msg).startswith("Cancel %s running task"):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _demote_shutdown_cancels(config: dict[str, Any]) -> dict[str, Any]:
    config.setdefault("filters", {})["shutdown_not_crash"] = {"()": ShutdownNotCrash}
    for handler in config.get("handlers", {}).values():
        handler["filters"] = [*handler.get("filters", []), "shutdown_not_crash"]
    return config


def log_config(log_level: str = "info") -> dict[str, Any]:
    """uvicorn's loggers, agentpack's and the app's, at ``log_level``, as JSON lines or text
    with the request, session and user ids (:func:`agentpack.logs.log_config`, docs/logs.md):
    without agentpack's logger its INFO lines (a run's start and end, a stream ended by a
    shutdown) would go nowhere."""
    from agentpack.logs import log_config as structured

    return _demote_shutdown_cancels(structured(log_level))


#: Set (to "1") by agentpack's emulators on the instances they start: an instance whose parent is
#: gone -- an emulator killed with no chance to stop it -- ends itself instead of serving on.
EXIT_WITH_PARENT = "AGENTPACK_EXIT_WITH_PARENT"


def _exit_with_parent() -> None:
    """Watch this process's parent from a daemon thread; once it changes (the parent died and
    this process was re-parented), ask the server to stop as SIGTERM would.  Portable: no /proc
    and no prctl, so the same check works on macOS."""
    if os.environ.get(EXIT_WITH_PARENT) != "1":
        return
    import signal
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)
        try:  # the output most likely went to the parent, whose end of the pipe is closed now
            print("agentpack: the emulator that started this instance is gone; stopping", file=sys.stderr, flush=True)
        except OSError:
            pass

    threading.Thread(target=watch, name="agentpack-parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m agentpack.serve")
    parser.add_argument("--app", required=True, help="path/to/file.py[:attr] or package.module:attr")
    parser.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "9000")))
    parser.add_argument("--log-level", default=os.environ.get("AGENTPACK_LOG_LEVEL", "info"))
    parser.add_argument("--platform", choices=("fc", "agentrun"), default=os.environ.get("AGENTPACK_PLATFORM") or None)
    args = parser.parse_args(argv)

    import uvicorn

    from agentpack.addresses import announce_serving
    from agentpack.loader import AppLoadError, load_app

    announce_serving(args.host, args.port)
    _exit_with_parent()

    try:
        app, _ = load_app(args.app)
    except AppLoadError as exc:
        print(f"agentpack: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as exc:  # the app's own code failed as it was imported: its frames, one line
        from agentpack.app_errors import describe

        trace, summary = describe(exc, f"importing {args.app.partition(':')[0]}")
        print(f"{trace}agentpack: {summary}", file=sys.stderr)
        raise SystemExit(1) from None
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "log_level": args.log_level,
        "timeout_graceful_shutdown": GRACE_SECONDS,
    }
    if args.platform is None:
        uvicorn.run(app, log_config=log_config(args.log_level), **options)
        return
    from agentpack.adapters.http_function import FunctionAdapter
    from agentpack.adapters.http_function import log_config as function_log_config

    server: uvicorn.Server

    def request_shutdown() -> None:
        server.should_exit = True

    adapter = FunctionAdapter(app, request_shutdown, args.platform)
    server = uvicorn.Server(
        uvicorn.Config(adapter, log_config=_demote_shutdown_cancels(function_log_config(args.log_level)), **options)
    )
    server.run()


if __name__ == "__main__":
    main()
