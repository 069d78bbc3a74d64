"""Cold start in instructions: what a minimal app's start costs the CPU, counted by valgrind's
callgrind, for bare FastAPI and for agentpack, in one run.

python bench/start_instructions.py [--runs 2] [--tree PATH ...]

A start here is what a server process does before its first answer, in process: import
uvicorn and the app's module, build the app (``bench/apps.py``), load uvicorn's config, run
the lifespan's start-up and answer ``GET /health`` through the ASGI app.  Counted
instructions do not depend on what else the machine is doing, so two figures a few per cent
apart are told apart in one run, where wall-clock starts on a shared 2-core machine differ by
up to 10 % between two sets of starts of the same app (docs/benchmarks.md).  ``--tree`` counts
the agentpack app of other checkouts too (e.g. a worktree of an earlier commit).  Python's
hash seed is fixed, so a run repeats its counts to within a few thousand instructions.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def start(kind: str) -> None:
    """One start of the ``kind`` app, up to its first 200 on /health: the measured child, which
    imports nothing the server would not (the parent's modules, httpx among them, are not here)."""
    import uvicorn  # noqa: F401  (a server imports it before the app)

    sys.path.insert(0, str(HERE))
    import apps
    from uvicorn.config import Config
    from uvicorn.lifespan.on import LifespanOn

    async def main() -> None:
        config = Config(apps.KINDS[kind](), log_level="error", access_log=False)
        config.load()
        lifespan = LifespanOn(config)
        await lifespan.startup()
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/health",
            "raw_path": b"/health",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"bench")],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 2),
        }
        await config.loaded_app(scope, receive, send)
        assert sent[0]["status"] == 200, sent
        await lifespan.shutdown()

    asyncio.run(main())
    print(json.dumps({"modules": len(sys.modules), "pydantic.v1": "pydantic.v1" in sys.modules}))


def count(kind: str, tree: Path) -> tuple[int, dict[str, Any]]:
    """(instructions, what the child said) of one start under callgrind."""
    import re
    import subprocess

    from common import bench_env

    env = {**bench_env(), "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind]
    subprocess.run(command, check=True, cwd=tree, env=env, capture_output=True)  # bytecode caches warm
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command],
        check=True,
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    collected = re.search(r"Collected : (\d+)", result.stderr)
    assert collected is not None, result.stderr[-2000:]
    return int(collected.group(1)), json.loads(result.stdout.strip().splitlines()[-1])


def revision(tree: Path) -> str:
    """The checkout's commit (short), or its path when it is not a git checkout."""
    import subprocess

    found = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return found.stdout.strip() or str(tree)


def main() -> None:
    import argparse
    import os
    import shutil

    from common import ROOT

    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--tree", type=Path, action="append", default=[], help="another agentpack checkout")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind): it counts the instructions")
    sides = [("bare FastAPI", "fastapi", ROOT), ("agentpack", "agentpack", ROOT)]
    sides += [(f"agentpack at {revision(tree)}", "agentpack", tree.resolve()) for tree in args.tree]
    counts: dict[str, list[int]] = {label: [] for label, _, _ in sides}
    facts: dict[str, dict[str, Any]] = {}
    for _ in range(args.runs):
        for label, kind, tree in sides:
            instructions, facts[label] = count(kind, tree)
            counts[label].append(instructions)
    baseline = min(counts["bare FastAPI"])
    result = {
        "python": sys.version.split()[0],
        "runs": args.runs,
        "what": "instructions from exec to the first 200 on /health, in process (callgrind)",
        "instructions": counts,
        "ratio to bare FastAPI (fewest of each)": {
            label: round(min(values) / baseline, 4) for label, values in counts.items()
        },
        "started with": facts,
        "machine": os.uname().machine,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        start(sys.argv[2])
    else:
        main()
