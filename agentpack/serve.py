"""``python -m agentpack.serve --app SPEC --host H --port P``: what generated entry points run.

Deliberately small (argparse, no CLI framework), because it sits on every cold start.
"""

from __future__ import annotations

import argparse
import os


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m agentpack.serve")
    parser.add_argument("--app", required=True, help="path/to/file.py[:attr] or package.module:attr")
    parser.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "9000")))
    parser.add_argument("--log-level", default=os.environ.get("AGENTPACK_LOG_LEVEL", "info"))
    args = parser.parse_args(argv)

    import uvicorn

    from agentpack.loader import load_app

    app, _ = load_app(args.app)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=10)


if __name__ == "__main__":
    main()
