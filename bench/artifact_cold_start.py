"""Cold start of a built artifact with and without shipped bytecode, in the same run.

    python bench/artifact_cold_start.py [--runs 15] [--target fc] [--python 3.12]

Builds examples/quickstart for the target twice — with the ``.pyc`` agentpack compiles by
default, and with ``bytecode = false`` — unpacks each into its own directory, and starts it
the way the platform does: ``sh bootstrap`` with the target's Python (found in pyenv or on
PATH, passed as ``AGENTPACK_PYTHON``), ``PYTHONDONTWRITEBYTECODE=1`` as the bootstrap sets
(FC's ``/code`` and Lambda's ``/var/task`` are read-only, so nothing compiled at start is kept).
Measured: process start -> first 200 on ``/health``, interleaved runs, medians.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx
from common import ROOT, free_port, summary


def build(project: Path, target: str, python: str, cache: Path, out: Path) -> dict:
    env = {**os.environ, "AGENTPACK_CACHE_DIR": str(cache)}
    command = [
        sys.executable,
        "-m",
        "agentpack",
        "build",
        str(project),
        "--target",
        target,
        "--python",
        python,
        "--out",
        str(out),
        "--json",
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def start_once(code: Path, interpreter: str, port_variable: str) -> float:
    """Seconds from exec of the bootstrap to the first 200 on /health."""
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "AGENTPACK_PYTHON": interpreter,
        port_variable: str(port),
        "HOME": os.environ.get("HOME", tempfile.gettempdir()),
    }
    started = time.perf_counter()
    process = subprocess.Popen(
        ["sh", str(code / "bootstrap")], env=env, cwd=code, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = started + 60
        with httpx.Client(timeout=1) as client:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"the artifact in {code} exited with {process.returncode}")
                try:
                    if client.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                        return time.perf_counter() - started
                except httpx.TransportError:
                    pass
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"the artifact in {code} did not answer within 60 s")
                time.sleep(0.002)
    finally:
        process.terminate()
        process.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--target", default="fc", choices=["fc", "agentrun", "local"])
    parser.add_argument("--python", default="3.12")
    args = parser.parse_args()

    from agentpack.builders.interpreters import find_target_python

    interpreter = find_target_python(args.python)
    if interpreter is None:
        raise SystemExit(f"python{args.python} is not on this host; install it (pyenv install {args.python})")
    port_variable = {"fc": "FC_CUSTOM_LISTEN_PORT"}.get(args.target, "PORT")
    work = Path(tempfile.mkdtemp(prefix="agentpack-bench-coldstart-"))
    try:
        project = work / "quickstart"
        shutil.copytree(ROOT / "examples" / "quickstart", project, ignore=shutil.ignore_patterns("dist", "__pycache__"))
        with_pyc = build(project, args.target, args.python, work / "cache", work / "with")
        toml = project / "agentpack.toml"
        toml.write_text(
            toml.read_text().replace(
                'requirements = "requirements.txt"', 'requirements = "requirements.txt"\nbytecode = false', 1
            )
        )
        without = build(project, args.target, args.python, work / "cache", work / "without")
        codes = {}
        for label, result in (("shipped_pyc", with_pyc), ("source_only", without)):
            codes[label] = work / f"code-{label}"
            with zipfile.ZipFile(result["artifact"]) as archive:
                archive.extractall(codes[label])
        for code in codes.values():  # one start each before measuring: the OS page cache, not the measured thing
            start_once(code, interpreter.path, port_variable)
        seconds: dict[str, list[float]] = {label: [] for label in codes}
        for _ in range(args.runs):
            for label, code in codes.items():
                seconds[label].append(start_once(code, interpreter.path, port_variable))
        figures = {label: summary(values) for label, values in seconds.items()}
        print(
            json.dumps(
                {
                    "target": args.target,
                    "python": interpreter.full_version,
                    "runs": args.runs,
                    "cold_start_seconds": figures,
                    "saved_by_pyc_median_seconds": figures["source_only"]["median"] - figures["shipped_pyc"]["median"],
                    "ratio_shipped_pyc_over_source_only": figures["shipped_pyc"]["median"]
                    / figures["source_only"]["median"],
                    "artifact_mb": {
                        "shipped_pyc": {
                            "zipped": round(with_pyc["size_bytes"] / 1e6, 2),
                            "unpacked": round(with_pyc["unpacked_bytes"] / 1e6, 2),
                        },
                        "source_only": {
                            "zipped": round(without["size_bytes"] / 1e6, 2),
                            "unpacked": round(without["unpacked_bytes"] / 1e6, 2),
                        },
                    },
                    "bytecode": with_pyc["bytecode"],
                },
                indent=2,
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
