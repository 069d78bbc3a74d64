"""Cold start (exec -> first 200 on /health) and import time, agentpack vs bare FastAPI, same run.

python bench/cold_start.py [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from common import ROOT, bench_env, start_server, stop_server, summary


def time_import(statement: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True, cwd=ROOT, env=bench_env())
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    imports = {
        "python -c pass": "pass",
        "import fastapi": "import fastapi",
        "import agentpack": "import agentpack",
        "from fastapi import FastAPI": "from fastapi import FastAPI",
        "from agentpack import AgentApp": "from agentpack import AgentApp",
    }
    import_times: dict[str, list[float]] = {k: [] for k in imports}
    cold: dict[str, list[float]] = {"fastapi": [], "agentpack": []}
    for statement in imports.values():  # first runs write the bytecode caches; not measured
        time_import(statement)
    for _ in range(args.runs):  # interleaved so both sides see the same machine state
        for label, statement in imports.items():
            import_times[label].append(time_import(statement))
        for kind in cold:
            process, _, seconds = start_server(kind)
            stop_server(process)
            cold[kind].append(seconds)

    result = {
        "python": sys.version.split()[0],
        "runs": args.runs,
        "import_seconds": {k: summary(v) for k, v in import_times.items()},
        "cold_start_seconds": {k: summary(v) for k, v in cold.items()},
    }
    result["ratios"] = {
        "import agentpack / import fastapi": result["import_seconds"]["import agentpack"]["median"]
        / result["import_seconds"]["import fastapi"]["median"],
        "from agentpack import AgentApp / from fastapi import FastAPI": result["import_seconds"][
            "from agentpack import AgentApp"
        ]["median"]
        / result["import_seconds"]["from fastapi import FastAPI"]["median"],
        "cold start agentpack / fastapi": result["cold_start_seconds"]["agentpack"]["median"]
        / result["cold_start_seconds"]["fastapi"]["median"],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
