"""Build speed and artifact sizes: agentpack build vs a naive `pip install --target` + `zip -r`.

    python bench/build_speed.py

For examples/quickstart on the fc target (cp312, manylinux x86_64), in one run:
- agentpack: cold build (empty agentpack cache), code-only rebuild, no-op rebuild;
- naive: `pip install --target --platform … --only-binary=:all:` of the same requirements,
  then `zip -r`, twice — it has no incremental mode, and its two zips differ;
then the artifact size of every target/arch (with the shipped bytecode, --slim, and without
bytecode).  pip's own download cache is warm for both.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT


def timed(command: list[str], **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{command[:4]} failed: {result.stderr[-2000:]}")
    return time.perf_counter() - started, result


def agentpack_build(project: Path, target: str, env: dict, *extra: str) -> tuple[float, dict]:
    seconds, result = timed(
        [sys.executable, "-m", "agentpack", "build", str(project), "--target", target, "--json", *extra], env=env
    )
    return seconds, json.loads(result.stdout.strip().splitlines()[-1])


def naive(project: Path, work: Path, requirements: list[str]) -> tuple[float, str, int]:
    from agentpack.targets import get_target

    tags = get_target("fc").platform_tags("x86_64", "3.12")
    site = work / "site"
    shutil.rmtree(site, ignore_errors=True)
    flags = ["--only-binary=:all:", "--implementation", "cp", "--python-version", "3.12"]
    for tag in tags:
        flags += ["--platform", tag]
    started = time.perf_counter()
    timed([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(site), *flags, *requirements])
    shutil.copy(project / "app.py", site / "app.py")
    artifact = work / "naive.zip"
    artifact.unlink(missing_ok=True)
    if shutil.which("zip"):
        timed(["zip", "-qr", str(artifact), "."], cwd=site)
    else:
        shutil.make_archive(str(artifact.with_suffix("")), "zip", site)
    seconds = time.perf_counter() - started
    return seconds, hashlib.sha256(artifact.read_bytes()).hexdigest(), artifact.stat().st_size


def main() -> None:
    from agentpack.builders.requirements import agentpack_requirements, for_environment
    from agentpack.builders.target_platform import Platform
    from agentpack.targets import get_target

    markers = Platform(get_target("fc"), "x86_64", "3.12", "3.12.4").markers()
    requirements = [str(line.requirement) for line in for_environment(agentpack_requirements(), markers)]
    work = Path(tempfile.mkdtemp(prefix="agentpack-bench-build-"))
    try:
        project = work / "quickstart"
        shutil.copytree(ROOT / "examples" / "quickstart", project, ignore=shutil.ignore_patterns("dist", "__pycache__"))
        env = {**os.environ, "AGENTPACK_CACHE_DIR": str(work / "cache")}
        cold, first = agentpack_build(project, "fc", env)
        noop, unchanged = agentpack_build(project, "fc", env)
        (project / "app.py").write_text((project / "app.py").read_text() + "\n# edited\n")
        code_only, rebuilt = agentpack_build(project, "fc", env)
        naive_first, naive_sha1, naive_size = naive(project, work, requirements)
        naive_second, naive_sha2, _ = naive(project, work, requirements)
        source_only = work / "source-only"  # the same project with bytecode = false
        shutil.copytree(project, source_only, ignore=shutil.ignore_patterns("dist"))
        toml = source_only / "agentpack.toml"
        toml.write_text(
            toml.read_text().replace(
                'requirements = "requirements.txt"', 'requirements = "requirements.txt"\nbytecode = false', 1
            )
        )
        sizes = {}
        for target, arch in (
            ("local", None),
            ("fc", None),
            ("agentrun", None),
            ("lambda", "x86_64"),
            ("lambda", "arm64"),
        ):
            extra = ["--arch", arch] if arch else []
            _, result = agentpack_build(project, target, env, *extra)
            _, slim = agentpack_build(project, target, env, *extra, "--slim", "--out", str(work / "slim"))
            _, plain = agentpack_build(source_only, target, env, *extra)
            sizes[f"{target}/{result['arch']}"] = {
                "zipped_mb": round(result["size_bytes"] / 1e6, 2),
                "unpacked_mb": round(result["unpacked_bytes"] / 1e6, 2),
                "slim_zipped_mb": round(slim["size_bytes"] / 1e6, 2),
                "without_bytecode_zipped_mb": round(plain["size_bytes"] / 1e6, 2),
                "bytecode": result["bytecode"],
            }
        print(
            json.dumps(
                {
                    "python": sys.version.split()[0],
                    "agentpack_seconds": {"cold_build": cold, "no_op_rebuild": noop, "code_only_rebuild": code_only},
                    "agentpack_unchanged_reported": unchanged["unchanged"],
                    "agentpack_code_only_cached_dependencies": rebuilt["cached_dependencies"],
                    "naive_seconds": {"first_build": naive_first, "second_build": naive_second},
                    "naive_zips_identical": naive_sha1 == naive_sha2,
                    "naive_zip_mb": round(naive_size / 1e6, 2),
                    "agentpack_fc_zip_mb": round(first["size_bytes"] / 1e6, 2),
                    "sizes": sizes,
                },
                indent=2,
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
