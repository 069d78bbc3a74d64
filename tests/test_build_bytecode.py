"""Shipped bytecode: compiled by the target's Python, unchecked-hash, reproducible, used as is."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from agentpack.builders import build as build_module
from agentpack.builders.build import build
from agentpack.builders.interpreters import find_target_python

pytestmark = [pytest.mark.integration, pytest.mark.network, pytest.mark.usefixtures("agentpack_cache")]

ROOT = Path(__file__).resolve().parents[1]
PYTHON = "3.12"  # the fc default, and the quickstart's


@pytest.fixture(scope="module")
def interpreter():
    found = find_target_python(PYTHON)
    if found is None:
        pytest.fail(f"python{PYTHON} is needed for these tests (pyenv install {PYTHON})")
    return found


def copy_example(tmp_path: Path, name: str = "quickstart") -> Path:
    project = tmp_path / name
    shutil.copytree(ROOT / "examples" / name, project, ignore=shutil.ignore_patterns("dist", "__pycache__"))
    return project


def unpack(artifact: str, where: Path) -> Path:
    with zipfile.ZipFile(artifact) as archive:
        archive.extractall(where)
    return where


#: Run by the target's Python: every .pyc next to its source must be its own format, hash-based,
#: unchecked, and hold the hash of that source.
VERIFY = r"""
import importlib.util, json, pathlib, sys
root = pathlib.Path(sys.argv[1])
report = {"pyc": 0, "bad": [], "modules_without_pyc": []}
for pyc in sorted(root.rglob("*.pyc")):
    report["pyc"] += 1
    source = pyc.parent.parent / (pyc.name.split(".")[0] + ".py")
    data = pyc.read_bytes()
    flags = int.from_bytes(data[4:8], "little")
    if not pyc.name.endswith("." + sys.implementation.cache_tag + ".pyc") or pyc.parent.name != "__pycache__":
        report["bad"].append([str(pyc), "name"])
    elif data[:4] != importlib.util.MAGIC_NUMBER:
        report["bad"].append([str(pyc), "magic"])
    elif flags != 0b01:  # hash-based (bit 0), check_source off (bit 1): unchecked-hash
        report["bad"].append([str(pyc), f"flags {flags}"])
    elif data[8:16] != importlib.util.source_hash(source.read_bytes()):
        report["bad"].append([str(pyc), "source hash"])
for source in sorted(root.rglob("*.py")):
    if not (source.parent / "__pycache__" / (source.stem + "." + sys.implementation.cache_tag + ".pyc")).is_file():
        report["modules_without_pyc"].append(str(source.relative_to(root)))
print(json.dumps(report))
"""


def test_pyc_for_the_target_python_in_unchecked_hash_mode(tmp_path, interpreter):
    result = build(copy_example(tmp_path), "fc")
    assert result.bytecode.startswith(f"{interpreter.cache_tag} (unchecked-hash, compiled by python {interpreter.full_version})"), result.bytecode
    names = zipfile.ZipFile(result.artifact).namelist()
    for expected in ("__pycache__/app.cpython-312.pyc", "python/agentpack/app/__pycache__/agent_app.cpython-312.pyc", "python/fastapi/__pycache__/routing.cpython-312.pyc"):
        assert expected in names
    unpacked = unpack(result.artifact, tmp_path / "unpacked")
    checked = subprocess.run([interpreter.path, "-I", "-c", VERIFY, str(unpacked)], capture_output=True, text=True, check=True)
    report = json.loads(checked.stdout)
    assert report["pyc"] > 300 and report["bad"] == []
    # a module left without bytecode is one this Python cannot compile; the summary counts those
    assert len(report["modules_without_pyc"]) < 5, report["modules_without_pyc"]
    manifest = json.loads(zipfile.ZipFile(result.artifact).read("agentpack-manifest.json"))
    assert manifest["bytecode"] == {"cache_tag": "cpython-312", "compiled_with": interpreter.full_version}


def test_the_artifact_imports_from_its_bytecode_without_compiling_or_writing(tmp_path, interpreter):
    result = build(copy_example(tmp_path), "fc")
    unpacked = unpack(result.artifact, tmp_path / "unpacked")
    for source in unpacked.rglob("*.py"):  # unchecked-hash: the sources' mtimes do not matter
        os.utime(source, (2_000_000_000, 2_000_000_000))
    before = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in unpacked.rglob("*")}
    code = "import app, agentpack.serve, uvicorn, fastapi, pydantic, anyio; print('imported')"
    started = subprocess.run(
        [interpreter.path, "-B", "-I", "-v", "-c", f"import sys; sys.path[:0] = {[str(unpacked / 'python'), str(unpacked)]!r}; {code}"],
        capture_output=True,
        text=True,
        cwd=unpacked,
        env={"PYTHONDONTWRITEBYTECODE": "1", "PATH": os.environ.get("PATH", "")},
    )
    assert started.returncode == 0 and "imported" in started.stdout, started.stderr[-2000:]
    loaded = re.findall(r"^# code object from '?([^'\n]+)'?$", started.stderr, flags=re.M)
    from_artifact = [path for path in loaded if path.startswith(str(unpacked))]
    assert len(from_artifact) > 100
    compiled_at_start = [path for path in from_artifact if not path.endswith(".pyc")]
    assert compiled_at_start == [], compiled_at_start[:5]
    after = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in unpacked.rglob("*")}
    assert after == before, "nothing was written into the artifact"


def test_rebuilds_with_bytecode_are_byte_identical_even_from_an_empty_cache(tmp_path, monkeypatch, interpreter):
    first = build(copy_example(tmp_path / "one"), "fc", out_dir=tmp_path / "out-one")
    monkeypatch.setenv("AGENTPACK_CACHE_DIR", str(tmp_path / "fresh-cache"))  # recompiles everything
    second = build(copy_example(tmp_path / "two"), "fc", out_dir=tmp_path / "out-two")
    assert not second.cached_dependencies
    assert Path(first.artifact).read_bytes() == Path(second.artifact).read_bytes()
    assert any(n.endswith(".cpython-312.pyc") for n in zipfile.ZipFile(first.artifact).namelist())


def test_bytecode_can_be_turned_off(tmp_path):
    project = copy_example(tmp_path)
    off_for_this_build = build(project, "fc", out_dir=tmp_path / "a", bytecode_enabled=False)
    assert off_for_this_build.bytecode == "none (turned off for this build)"
    toml = project / "agentpack.toml"
    toml.write_text(toml.read_text().replace('requirements = "requirements.txt"', 'requirements = "requirements.txt"\nbytecode = false', 1))
    off_in_config = build(project, "fc", out_dir=tmp_path / "b")
    assert off_in_config.bytecode == "none (bytecode = false in the config)"
    for result in (off_for_this_build, off_in_config):
        assert not [n for n in zipfile.ZipFile(result.artifact).namelist() if n.endswith(".pyc")]
        assert json.loads(zipfile.ZipFile(result.artifact).read("agentpack-manifest.json"))["bytecode"] is None
    assert off_in_config.size_bytes < build(project, "fc", out_dir=tmp_path / "c", bytecode_enabled=True).size_bytes


def test_without_the_target_python_the_build_ships_source_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(build_module, "find_target_python", lambda python: None)
    monkeypatch.setenv("AGENTPACK_CACHE_DIR", str(tmp_path / "cache"))  # no resolution or check cached by a host that had it
    result = build(copy_example(tmp_path), "fc")
    assert result.bytecode == f"none (python{PYTHON} not found on this host)"
    assert result.import_check.startswith("skipped: no python3.12")
    assert result.resolver.startswith("host pip") and "python3.12 not found on this host" in result.resolver
    assert not [n for n in zipfile.ZipFile(result.artifact).namelist() if n.endswith(".pyc")]


def test_the_cli_summary_names_the_resolver_and_the_bytecode(tmp_path):
    """With no pyenv and no python3.13 on PATH, a Lambda 3.13 build says what it could not do."""
    project = copy_example(tmp_path)
    bare_path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if "pyenv" not in p and not shutil.which("python3.13", path=p))
    env = {**os.environ, "PATH": bare_path, "PYENV_ROOT": str(tmp_path / "no-pyenv"), "COLUMNS": "500"}
    done = subprocess.run([sys.executable, "-m", "agentpack", "build", str(project), "--target", "lambda", "--python", "3.13"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "bytecode: none (python3.13 not found on this host)" in done.stdout
    assert "resolver: host pip" in done.stdout and "markers evaluated for the target: python3.13 not found on this host" in done.stdout
    assert "import check: skipped: no python3.13 on this host" in done.stdout
