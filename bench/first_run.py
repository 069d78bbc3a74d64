"""README's first command on a fresh clone, step by step: venv, install, build, first token.

    python bench/first_run.py [--runs 2] [--warm-pip]

Each run clones this repository into a new directory and runs what README's quick start runs
(``python3 -m venv .venv``, ``pip install -q -e .``, ``agentpack emulate examples/quickstart
--target fc --ask ...``), timing each step.  The emulate step is timed to the reply's first
token on stdout and to its end (``--once``);
a separate ``agentpack build`` of the same project with a fresh build cache says how much of it
is the build.  pip's cache is a fresh directory per run ("a fresh machine") unless --warm-pip.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, summary

QUESTION = "What is agentpack?"
#: What examples/quickstart/app.py yields first.
FIRST_TOKEN = b"You asked"


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def first_token(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Seconds to the reply's first token on stdout, and to the end of the command."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    seen, token = b"", None
    while token is None:
        chunk = os.read(process.stdout.fileno(), 4096)
        if not chunk:
            break
        seen += chunk
        if FIRST_TOKEN in seen:  # the example's first yield
            token = time.perf_counter() - started
    seen += process.stdout.read()
    code = process.wait()
    if code != 0 or token is None:
        raise SystemExit(f"{' '.join(command)} failed (exit {code}): {seen.decode(errors='replace')}")
    return token, time.perf_counter() - started


def one_run(warm_pip: Path | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="agentpack-first-run-") as scratch:
        clone = Path(scratch) / "agentpack"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTPACK_", "VIRTUAL_ENV"))}
        env["PIP_CACHE_DIR"] = str(warm_pip or Path(scratch) / "pip-cache")
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        env["AGENTPACK_CACHE_DIR"] = str(Path(scratch) / "agentpack-cache")
        steps = {"venv": timed([sys.executable, "-m", "venv", ".venv"], clone, env)}
        steps["install"] = timed([".venv/bin/pip", "install", "-q", "-e", "."], clone, env)
        agentpack = str(clone / ".venv/bin/agentpack")
        emulate = [
            agentpack,
            "emulate",
            "examples/quickstart",
            "--target",
            "fc",
            "--port",
            "0",
            "--ask",
            QUESTION,
            "--once",
        ]
        steps["emulate: first token"], steps["emulate: whole"] = first_token(emulate, clone, env)
        env["AGENTPACK_CACHE_DIR"] = str(Path(scratch) / "agentpack-cache-2")  # the build alone, cache as fresh
        steps["build (fresh cache)"] = timed([agentpack, "build", "examples/quickstart", "--target", "fc"], clone, env)
        steps["command 1: first token"] = steps["venv"] + steps["install"] + steps["emulate: first token"]
        return steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument(
        "--warm-pip", action="store_true", help="reuse one pip cache across runs (its first run fills it)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="agentpack-pip-") as pip_cache:
        runs = [one_run(Path(pip_cache) if args.warm_pip else None) for _ in range(args.runs)]
    report = {step: summary([run[step] for run in runs]) for step in runs[0]}
    print(
        json.dumps({"runs": args.runs, "pip cache": "warm" if args.warm_pip else "fresh", "seconds": report}, indent=2)
    )


if __name__ == "__main__":
    main()
