"""Deploy speed against the control-plane stand-ins: unchanged redeploys, and a code-only change
from the edit to the new version answering.

    python bench/deploy_speed.py

For examples/quickstart on every target, through the real command line (each step is a fresh
``python -m agentpack`` process, as a user or CI runs it), with the real SDKs talking to the
loopback stand-ins (FC, AgentRun), to moto's server (Lambda), or a real detached process
(local).  The stand-ins run what they receive with ``agentpack emulate`` (one instance), so
"answering" means the uploaded bytes answered a ``/process`` request.  Measured per target:

- first deploy (empty platform, warm build cache);
- unchanged redeploy (median of 5), side by side with the same redeploy with ``--force`` (upload
  and publish regardless: what a deployer that cannot tell "unchanged" does every time);
- code-only change: from writing app.py to the first reply of the new version (build, upload,
  the platform's start of the new code, one request).

The machine is shared (2 cores), so figures move by tens of percent between runs.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from common import ROOT

sys.path.insert(0, str(ROOT))

RESULTS = Path(__file__).resolve().parent / "results" / "deploy_speed.json"


def cli(project: Path, env: dict[str, str], *args: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "agentpack", *args, "--json"], cwd=project, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"agentpack {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return seconds, json.loads(done.stdout.strip().splitlines()[-1])


def answers(url: str, marker: str) -> bool:
    body = {"input": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    try:
        reply = httpx.post(f"{url}/process", json=body, timeout=30).text
    except httpx.HTTPError:
        return False
    return marker in reply and '"status":"completed"' in reply.replace(" ", "")


def measure(target: str, project: Path, env: dict[str, str], serving: Callable[[], str]) -> dict[str, Any]:
    first_seconds, _first = cli(project, env, "deploy", "--target", target)
    unchanged = []
    for _ in range(5):
        seconds, result = cli(project, env, "deploy", "--target", target)
        assert result["action"] == "unchanged", result
        unchanged.append(seconds)
    forced = []
    for _ in range(3):
        seconds, result = cli(project, env, "deploy", "--target", target, "--force")
        assert result["action"] != "unchanged", result
        forced.append(seconds)
    app = project / "app.py"
    marker = f"edited-{time.time_ns()}"
    started = time.perf_counter()
    app.write_text(app.read_text().replace("agentpack serves this agent", f"{marker} serves this agent", 1))
    deploy_seconds, result = cli(project, env, "deploy", "--target", target)
    assert result["action"] == "updated", result
    url = serving()
    deadline = time.monotonic() + 120
    while not answers(url, marker):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{target}: the new version never answered at {url}")
        time.sleep(0.05)
    edit_to_answer = time.perf_counter() - started
    return {
        "target": target,
        "artifact_mb": round(next((project / "dist").glob("*.zip")).stat().st_size / 1e6, 2),
        "first_deploy_s": round(first_seconds, 2),
        "unchanged_median_s": round(statistics.median(unchanged), 3),
        "unchanged_max_s": round(max(unchanged), 3),
        "forced_redeploy_median_s": round(statistics.median(forced), 3),
        "code_change_deploy_s": round(deploy_seconds, 2),
        "edit_to_new_version_answering_s": round(edit_to_answer, 2),
    }


def main() -> None:
    import logging

    import boto3
    from moto.awslambda.models import lambda_backends
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.server import ThreadedMotoServer

    from agentpack.builders.cache import cache_root
    from tests.standins import TEST_ACCESS_KEY_ID, TEST_ACCESS_KEY_SECRET, AgentRunStandIn, FCStandIn
    from tests.support import Emulations, cli_env, free_port

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="agentpack-bench-deploy-"))
    rows = []
    try:

        def project_for(target: str) -> Path:
            project = work / target
            shutil.copytree(
                ROOT / "examples" / "quickstart",
                project,
                ignore=shutil.ignore_patterns("dist", "__pycache__", ".agentpack"),
            )
            if target == "lambda":
                config = project / "agentpack.toml"
                config.write_text(
                    config.read_text().replace(
                        "[targets.lambda]\n",
                        '[targets.lambda]\nregion = "us-east-1"\nrole = "arn:aws:iam::123456789012:role/bench"\nstreaming = true\n',
                    )
                )
            if target == "local":
                with (project / "agentpack.toml").open("a") as config:
                    config.write(f"\n[targets.local]\nport = {free_port()}\n")
            return project

        base = cli_env(AGENTPACK_CACHE_DIR=str(cache_root()), HOME=str(work))
        alibaba = {
            "ALIBABA_CLOUD_ACCESS_KEY_ID": TEST_ACCESS_KEY_ID,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": TEST_ACCESS_KEY_SECRET,
            "ALIBABA_CLOUD_REGION_ID": "cn-hangzhou",
        }
        for target, standin_class, variable in (
            ("fc", FCStandIn, "AGENTPACK_FC_ENDPOINT"),
            ("agentrun", AgentRunStandIn, "AGENTPACK_AGENTRUN_ENDPOINT"),
        ):
            scratch = work / f"emulations-{target}"
            scratch.mkdir()
            emulations = Emulations(target, scratch, instances=1)
            standin = standin_class(on_code=emulations.hook).start()
            try:
                project = project_for(target)
                env = {**base, **alibaba, variable: f"http://{standin.endpoint}"}
                state = project / ".agentpack" / "deployments.json"
                rows.append(
                    measure(
                        target,
                        project,
                        env,
                        lambda: json.loads(state.read_text())["deployments"][f"{target}/quickstart"]["url"],
                    )
                )
            finally:
                standin.stop()
                emulations.close()

        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        host, port = moto.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        options = {
            "endpoint_url": endpoint,
            "region_name": "us-east-1",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
        boto3.client("iam", **options).create_role(RoleName="bench", AssumeRolePolicyDocument=json.dumps(trust))
        lam = boto3.client("lambda", **options)
        scratch = work / "emulations-lambda"
        scratch.mkdir()
        emulations = Emulations("lambda", scratch, instances=1)

        def lambda_serving() -> str:
            version = lam.get_alias(FunctionName="quickstart", Name="live")["FunctionVersion"]
            config = lam.get_function_configuration(FunctionName="quickstart", Qualifier=version)
            code = lambda_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_function("quickstart", version).code_bytes
            return emulations.serve(code, config["Environment"]["Variables"], float(config["Timeout"]))

        try:
            env = {
                **base,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AGENTPACK_LAMBDA_ENDPOINT": endpoint,
            }
            rows.append(measure("lambda", project_for("lambda"), env, lambda_serving))
        finally:
            emulations.close()
            moto.stop()

        project = project_for("local")
        try:
            state = project / ".agentpack" / "deployments.json"
            rows.append(
                measure(
                    "local",
                    project,
                    base,
                    lambda: json.loads(state.read_text())["deployments"]["local/quickstart"]["url"],
                )
            )
        finally:
            subprocess.run(
                [sys.executable, "-m", "agentpack", "destroy", "quickstart", "--yes"],
                cwd=project,
                env=base,
                capture_output=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps({"rows": rows, "python": sys.version.split()[0], "cpus": os.cpu_count()}, indent=1) + "\n"
    )
    print(
        "| target | artifact | first deploy | unchanged redeploy (median / max of 5) "
        "| the same redeploy with `--force` (upload, publish) | code change: deploy | edit → new version answering |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['target']} | {row['artifact_mb']} MB | {row['first_deploy_s']} s "
            f"| **{row['unchanged_median_s']} s** / {row['unchanged_max_s']} s | "
            f"{row['forced_redeploy_median_s']} s | {row['code_change_deploy_s']} s | **{row['edit_to_new_version_answering_s']} s** |"
        )


if __name__ == "__main__":
    main()
