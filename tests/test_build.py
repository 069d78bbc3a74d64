"""`agentpack build`: real pip resolution for each target platform, reproducible zips, failures."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from agentpack import targets
from agentpack.builders.build import MANIFEST, build, plan_build, write_artifact
from agentpack.builders.errors import BuildError, ProjectError

pytestmark = [pytest.mark.integration, pytest.mark.network, pytest.mark.usefixtures("agentpack_cache")]

ROOT = Path(__file__).resolve().parents[1]
AGENTPACK = [sys.executable, "-m", "agentpack"]


def copy_example(tmp_path: Path, name: str = "quickstart") -> Path:
    project = tmp_path / name
    shutil.copytree(ROOT / "examples" / name, project, ignore=shutil.ignore_patterns("dist", "__pycache__"))
    return project


def entries(artifact: str) -> dict[str, zipfile.ZipInfo]:
    with zipfile.ZipFile(artifact) as archive:
        return {info.filename: info for info in archive.infolist()}


def source_of(pyc: str) -> str:
    """``a/__pycache__/b.cpython-312.pyc`` -> ``a/b.py``."""
    directory, _, file = ("/" + pyc).rpartition("/__pycache__/")
    return f"{directory}/{file.split('.')[0]}.py".lstrip("/")


def check_manifest(artifact: str) -> dict:
    with zipfile.ZipFile(artifact) as archive:
        manifest = json.loads(archive.read(MANIFEST))
        names = set(archive.namelist()) - {MANIFEST}
        assert set(manifest["files"]) == names, "the manifest lists exactly the packed files"
        for name in names:
            assert manifest["files"][name] == hashlib.sha256(archive.read(name)).hexdigest(), name
    return manifest


@pytest.mark.parametrize(
    "example, target, arch",
    [
        ("quickstart", "local", None),
        ("quickstart", "fc", None),
        ("agentscope_style", "agentrun", None),
        ("quickstart", "lambda", "x86_64"),
        ("quickstart", "lambda", "arm64"),
    ],
)
def test_examples_build_for_every_target(tmp_path, example, target, arch):
    project = copy_example(tmp_path, example)
    result = build(project, target, arch=arch)
    manifest = check_manifest(result.artifact)
    row = targets.get_target(target)
    assert manifest["target"] == target and manifest["arch"] == (arch or row.default_arch)
    names = entries(result.artifact)
    deps = f"{row.deps_dir}/" if row.deps_dir else ""
    assert f"{deps}agentpack/app/agent_app.py" in names and f"{deps}fastapi/__init__.py" in names
    assert "app.py" in names
    assert any(n.startswith(f"{deps}pydantic_core/") and n.endswith(".so") for n in names)
    dependency_names = {d["name"].lower() for d in manifest["dependencies"]}
    assert {"fastapi", "uvicorn", "pydantic", "agentpack"} <= dependency_names
    assert "rich" not in dependency_names  # agentpack's CLI dependencies stay out of artifacts
    if target == "lambda":
        assert "agentpack_lambda.py" in names
        assert "mangum" in dependency_names, "the Lambda adapter's requirement is packed for this target only"
    else:
        assert "mangum" not in dependency_names
    if target == "lambda":
        so_files = [n for n in names if n.endswith(".so") and "pydantic_core" in n]
        assert all(("x86_64" if arch == "x86_64" else "aarch64") in n for n in so_files), so_files
    else:
        bootstrap = names["bootstrap"]
        assert stat.S_IMODE(bootstrap.external_attr >> 16) == 0o755
        script = zipfile.ZipFile(result.artifact).read("bootstrap").decode()
        # Cloud runtimes route to every interface; a laptop serves loopback unless HOST says otherwise.
        expected_host = '--host "${HOST:-127.0.0.1}"' if target == "local" else "--host 0.0.0.0"
        assert expected_host in script, script
    if arch == "arm64":
        assert result.import_check.startswith("skipped")
    elif target != "local" or shutil.which(f"python{result.python}"):
        assert result.import_check.startswith("passed"), result.import_check


def test_the_plan_is_complete_before_anything_is_written(tmp_path):
    project = copy_example(tmp_path)
    plan = plan_build(project, "fc")
    assert not (project / "dist").exists(), "planning writes nothing but the cache"
    assert plan.artifact == project / "dist" / "quickstart-fc-3.12-x86_64.zip"
    assert plan.manifest["port"] == 9000 and "app.py" in plan.files and "bootstrap" in plan.files
    result = write_artifact(plan)
    assert set(check_manifest(result.artifact)["files"]) == set(plan.files)


def test_the_port_setting_reaches_the_bootstrap(tmp_path):
    project = copy_example(tmp_path)
    toml = project / "agentpack.toml"
    toml.write_text(toml.read_text().replace("memory = 1024", "memory = 1024\nport = 9100"))
    script = zipfile.ZipFile(build(project, "fc").artifact).read("bootstrap").decode()
    assert '"${FC_CUSTOM_LISTEN_PORT:-9100}"' in script


def test_fc_bootstrap_listens_on_the_fc_port(tmp_path):
    result = build(copy_example(tmp_path), "fc")
    script = zipfile.ZipFile(result.artifact).read("bootstrap").decode()
    assert '"${FC_CUSTOM_LISTEN_PORT:-9000}"' in script
    assert "/var/fc/lang/python3.12/bin/python3" in script
    assert "agentpack.serve --app 'app.py:app'" in script


def test_rebuilds_are_byte_identical_whatever_the_mtimes_or_directory(tmp_path, monkeypatch):
    first_project = copy_example(tmp_path / "one")
    first = build(first_project, "fc", out_dir=tmp_path / "out-one")
    second_project = copy_example(tmp_path / "two")
    for path in second_project.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    monkeypatch.chdir(tmp_path)
    second = build(second_project, "fc", out_dir=tmp_path / "out-two")
    assert first.sha256 == second.sha256
    assert Path(first.artifact).read_bytes() == Path(second.artifact).read_bytes()
    assert first.bytecode.startswith("cpython-312") and "__pycache__/app.cpython-312.pyc" in entries(first.artifact)
    for info in entries(first.artifact).values():
        assert info.date_time == (1980, 1, 1, 0, 0, 0)
        assert stat.S_IMODE(info.external_attr >> 16) in (0o644, 0o755)


def test_source_date_epoch_sets_the_timestamps(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    result = build(copy_example(tmp_path), "fc")
    assert {info.date_time for info in entries(result.artifact).values()} == {(2023, 11, 14, 22, 13, 20)}


def test_cache_unchanged_and_code_only_rebuilds(tmp_path, agentpack_cache):
    project = copy_example(tmp_path)
    first = build(project, "fc")
    again = build(project, "fc")
    assert again.unchanged and again.sha256 == first.sha256 and again.cached_dependencies
    (project / "app.py").write_text((project / "app.py").read_text() + "\n# a code change\n")
    changed = build(project, "fc")
    assert not changed.unchanged and changed.sha256 != first.sha256 and changed.cached_dependencies
    (project / "requirements.txt").write_text("agentpack\nsix==1.16.0\n")
    new_deps = build(project, "fc")
    assert not new_deps.cached_dependencies
    assert any(d["name"] == "six" for d in check_manifest(new_deps.artifact)["dependencies"])


def test_secrets_and_junk_are_never_packed(tmp_path):
    project = copy_example(tmp_path)
    (project / ".env").write_text("OPENAI_API_KEY=sk-secret\n")
    (project / "id_rsa").write_text("-----BEGIN PRIVATE KEY-----\n")
    (project / ".git").mkdir()
    (project / ".git" / "config").write_text("[core]\n")
    venv = project / "myenv"
    venv.mkdir()
    (venv / "pyvenv.cfg").write_text("home = /usr\n")
    (project / "prompts").mkdir()
    (project / "prompts" / "system.txt").write_text("Be helpful.")
    names = entries(build(project, "fc").artifact)
    assert "prompts/system.txt" in names
    assert not [n for n in names if n in (".env", "id_rsa") or n.startswith((".git/", "myenv/", "dist/"))]


def test_include_narrows_the_code(tmp_path):
    project = copy_example(tmp_path)
    (project / "notes.md").write_text("private notes")
    toml = project / "agentpack.toml"
    toml.write_text(toml.read_text().replace('requirements = "requirements.txt"', 'requirements = "requirements.txt"\ninclude = ["app.py"]'))
    names = entries(build(project, "fc").artifact)
    assert "app.py" in names and "notes.md" not in names and "requirements.txt" not in names


def test_slim_keeps_metadata_and_still_imports(tmp_path):
    project = copy_example(tmp_path)
    full = build(project, "fc", out_dir=tmp_path / "full")
    slim = build(project, "fc", out_dir=tmp_path / "slim", slim=True)
    assert slim.size_bytes < full.size_bytes
    names = entries(slim.artifact)
    assert any(n.startswith("python/fastapi-") and n.endswith(".dist-info/METADATA") for n in names)
    assert not [n for n in names if n.endswith(".pyi") or "/tests/" in n]
    # what stays in __pycache__ is the bytecode this build compiled for the target, next to its source
    for name in (n for n in names if n.endswith(".pyc")):
        assert name.endswith(".cpython-312.pyc") and source_of(name) in names, name
    assert slim.import_check.startswith("passed"), slim.import_check


def test_over_budget_fails_before_writing_with_the_biggest_packages(tmp_path, monkeypatch):
    tiny = dataclasses.replace(targets.TARGETS["fc"], zip_limit=1024 * 1024)
    monkeypatch.setitem(targets.TARGETS, "fc", tiny)
    project = copy_example(tmp_path)
    with pytest.raises(BuildError, match="over the fc limit of 1 MB") as caught:
        build(project, "fc")
    assert caught.value.details[0]["package"] == "pydantic_core"
    assert not (project / "dist").exists() or not list((project / "dist").iterdir())


def test_no_wheel_for_the_platform_fails_with_a_table(tmp_path):
    project = copy_example(tmp_path)
    (project / "requirements.txt").write_text("pywin32==311\n")
    with pytest.raises(BuildError) as caught:
        build(project, "fc")
    row = caught.value.details[0]
    assert row["package"] == "pywin32"
    assert "win" in row["wheel tags that exist"] and row["what to do"]
    assert not (project / "dist").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: (p / "app.py").unlink(), "app.py is not in"),
        (lambda p: _set_app(p, "app.py:missing"), "assigns no 'missing'"),
        (lambda p: _set_app(p, "app.py:ANSWER"), "not an ASGI app"),
        (lambda p: (p / "agentpack.toml").write_text("app = [unclosed"), "not valid TOML"),
        (lambda p: (p / "agentpack.toml").write_text('app = "app.py:app"\nnmae = "typo"\n'), "nmae is not a known key"),
        (lambda p: (p / "agentpack.toml").write_text('app = "app.py:app"\n[targets.fc]\narch = "arm64"\n'), "[targets.fc] does not take arch"),
        (lambda p: (p / "agentpack.toml").unlink(), "agentpack init"),
        (lambda p: (p / "requirements.txt").write_text("agentpack\nthis-package-does-not-exist-agentpack-test==1.0\n"), "no package named"),
        (lambda p: (p / "requirements.txt").write_text("agentpack\n-e ./mypkg\n"), "requirements.txt:2: --editable ./mypkg: editable installs cannot be packed"),
        (lambda p: (p / "agentpack.toml").write_text('app = "app.py:app"\n[targets.fc]\nmemory = 100\n'), "[targets.fc] memory = 100: must be a multiple of 64 MB"),
        (lambda p: (p / "agentpack.toml").write_text('app = "app.py:app"\npython = "3.13"\n'), 'python = "3.13"'),
    ],
)
def test_bad_input_is_a_project_error_and_leaves_nothing(tmp_path, change, message):
    project = copy_example(tmp_path)
    change(project)
    with pytest.raises(ProjectError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build(project, "fc")
    assert not (project / "dist").exists()


def _set_app(project: Path, spec: str) -> None:
    toml = project / "agentpack.toml"
    toml.write_text(toml.read_text().replace('app = "app.py:app"', f'app = "{spec}"'))


def test_cli_build_json_init_and_errors(tmp_path):
    project = tmp_path / "newagent"
    created = subprocess.run([*AGENTPACK, "init", str(project)], capture_output=True, text=True, timeout=60)
    assert created.returncode == 0 and (project / "agentpack.toml").is_file()
    result = subprocess.run([*AGENTPACK, "build", str(project), "--target", "fc", "--json"], capture_output=True, text=True, timeout=600, env=os.environ)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"artifact", "sha256", "size_bytes", "unpacked_bytes", "target"} <= set(answer)
    assert answer["size_bytes"] == Path(answer["artifact"]).stat().st_size
    for args, message in (
        (["build", str(project), "--target", "gcp"], "unknown target 'gcp'"),
        (["build", str(project), "--target", "fc", "--arch", "arm64"], "--arch arm64"),
        (["build", str(project), "--target", "fc", "--python", "3.9"], "--python 3.9"),
        (["build", str(tmp_path / "nowhere"), "--target", "fc"], "not a directory"),
        (["init", str(project)], "already exist"),
    ):
        failed = subprocess.run([*AGENTPACK, *args], capture_output=True, text=True, timeout=120)
        assert failed.returncode == 2, (args, failed.stderr)
        assert message in failed.stderr and "Traceback" not in failed.stderr
        assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr


def test_a_pure_python_sdist_is_built_into_a_wheel(tmp_path):
    project = copy_example(tmp_path)
    (project / "requirements.txt").write_text("agentpack\ndocopt==0.6.2\n")  # published as an sdist only
    result = build(project, "fc")
    manifest = check_manifest(result.artifact)
    assert {"name": "docopt", "version": "0.6.2"} in manifest["dependencies"]
    assert "python/docopt.py" in entries(result.artifact)
    assert result.import_check.startswith("passed"), result.import_check


def test_a_redis_url_setting_packs_the_redis_client(tmp_path):
    """The deployer sets AGENTPACK_REDIS_URL from redis_url, so the app will import redis: the
    artifact must carry it even though the project does not list it."""
    project = copy_example(tmp_path)
    config = project / "agentpack.toml"
    config.write_text(config.read_text().replace("[targets.fc]\n", '[targets.fc]\nredis_url = "${REDIS_URL}"\n'))
    without = {d["name"].lower() for d in check_manifest(build(copy_example(tmp_path / "plain"), "fc", tmp_path / "plain-out").artifact)["dependencies"]}
    packed = {d["name"].lower() for d in check_manifest(build(project, "fc", tmp_path / "out").artifact)["dependencies"]}
    assert "redis" not in without and "redis" in packed
