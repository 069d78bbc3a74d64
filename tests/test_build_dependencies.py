"""Dependencies resolved for the target's Python, and requirement files with pip options — real pip builds."""

from __future__ import annotations

import base64
import csv
import hashlib
import http.server
import io
import json
import shutil
import threading
import zipfile
from pathlib import Path

import pytest

from agentpack.builders import dependencies
from agentpack.builders.build import MANIFEST, build
from agentpack.builders.errors import BuildError

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.integration, pytest.mark.network]


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory, monkeypatch):
    """A cache of this module's own, so resolutions cached by other modules do not answer for it."""
    monkeypatch.setenv("AGENTPACK_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "dependencies-cache"))


def copy_example(tmp_path: Path, name: str = "quickstart") -> Path:
    project = tmp_path / name
    shutil.copytree(ROOT / "examples" / name, project, ignore=shutil.ignore_patterns("dist", "__pycache__"))
    return project


def manifest(artifact: str) -> dict:
    with zipfile.ZipFile(artifact) as archive:
        return json.loads(archive.read(MANIFEST))


def dependency_names(artifact: str) -> set[str]:
    return {d["name"].lower().replace("_", "-") for d in manifest(artifact)["dependencies"]}


def with_requirements(tmp_path: Path, text: str) -> Path:
    project = copy_example(tmp_path)
    (project / "requirements.txt").write_text(text)
    return project


MARKED = 'agentpack\ntomli>=2 ; python_version < "3.11"\nredis==5.0.8\n'


@pytest.mark.parametrize("python, wanted, unwanted", [("3.10", {"exceptiongroup", "tomli", "async-timeout"}, set()), ("3.12", set(), {"exceptiongroup", "tomli", "async-timeout"})])
def test_markers_follow_the_target_python_with_its_own_pip(tmp_path, python, wanted, unwanted):
    """This host runs 3.11: pip here would drop anyio's exceptiongroup for a 3.10 target (and the
    artifact would not import), and keep backports a 3.12 target does not need."""
    result = build(with_requirements(tmp_path, MARKED), "fc", python=python)
    names = dependency_names(result.artifact)
    assert wanted <= names and not unwanted & names, names
    assert f"under python{python}" in result.resolver, result.resolver
    assert result.import_check.startswith("passed"), result.import_check


@pytest.mark.parametrize("python, wanted, unwanted", [("3.10", {"exceptiongroup", "tomli", "async-timeout"}, set()), ("3.12", set(), {"exceptiongroup", "tomli", "async-timeout"})])
def test_markers_follow_the_target_python_with_this_hosts_pip(tmp_path, monkeypatch, python, wanted, unwanted):
    """Where the target's Python cannot run pip here, host pip resolves and the markers are evaluated for the target."""
    monkeypatch.setenv("AGENTPACK_CACHE_DIR", str(tmp_path / "cache"))
    original = dependencies.Pip.for_target
    monkeypatch.setattr(dependencies.Pip, "for_target", classmethod(lambda cls, plat, interpreter: original(plat, None)))
    result = build(with_requirements(tmp_path, MARKED), "fc", python=python)
    names = dependency_names(result.artifact)
    assert wanted <= names and not unwanted & names, names
    assert result.resolver.startswith("host pip"), result.resolver
    if python == "3.10":
        assert "+exceptiongroup" in result.resolver and "+async-timeout" in result.resolver, "the summary says what the target's markers added"
    assert result.import_check.startswith("passed"), result.import_check


def test_the_platforms_own_release_decides_full_version_markers(tmp_path):
    """FC's Python 3.11 is 3.11.2: redis needs async-timeout there (python_full_version < "3.11.3"),
    although this host's 3.11.7 — and so its pip — would leave it out."""
    result = build(with_requirements(tmp_path, "agentpack\nredis==5.0.8\n"), "fc", python="3.11")
    assert "async-timeout" in dependency_names(result.artifact)
    assert "+async-timeout" in result.resolver
    assert result.import_check.startswith("passed"), result.import_check


# -- requirement files with pip options ------------------------------------------------------------------
def make_wheel(directory: Path, name: str, version: str) -> Path:
    """A minimal, valid pure-Python wheel."""
    directory.mkdir(parents=True, exist_ok=True)
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n".encode(),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/top_level.txt": f"{name}\n".encode(),
    }
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        writer.writerow([path, f"sha256={digest}", len(data)])
    writer.writerow([f"{info}/RECORD", "", ""])
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
        archive.writestr(f"{info}/RECORD", record.getvalue())
    return wheel


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_find_links_constraints_and_hashes_from_nested_files(tmp_path):
    project = copy_example(tmp_path)
    wheel = make_wheel(project / "deps" / "wheels", "tinypkg", "1.0")
    (project / "deps" / "pins.txt").write_text("anyio==4.4.0\n")
    (project / "deps" / "locked.txt").write_text(f"--find-links wheels\n-c pins.txt\ntinypkg==1.0 \\\n    --hash=sha256:{sha256(wheel)}\n")
    (project / "requirements.txt").write_text("agentpack\n-r deps/locked.txt\n")
    result = build(project, "fc")
    deps = {d["name"]: d["version"] for d in manifest(result.artifact)["dependencies"]}
    assert deps["tinypkg"] == "1.0" and deps["anyio"] == "4.4.0", "the wheel from --find-links, the version from -c"
    assert "python/tinypkg/__init__.py" in zipfile.ZipFile(result.artifact).namelist()
    assert result.import_check.startswith("passed"), result.import_check


def test_a_hash_that_does_not_match_fails_naming_the_line(tmp_path):
    project = copy_example(tmp_path)
    make_wheel(project / "wheels", "tinypkg", "1.0")
    (project / "requirements.txt").write_text(f"agentpack\n--find-links ./wheels\ntinypkg==1.0 --hash=sha256:{'0' * 64}\n")
    with pytest.raises(BuildError, match=r"requirements.txt:3: tinypkg 1.0 from .* has sha256:[0-9a-f]{64}, which is not among its --hash values"):
        build(project, "fc")
    assert not (project / "dist").exists()


class _Index(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


def test_an_extra_index_url_is_passed_to_pip(tmp_path):
    root = tmp_path / "index"
    wheel = make_wheel(root / "files", "privatepkg", "2.0")
    (root / "simple" / "privatepkg").mkdir(parents=True)
    (root / "simple" / "privatepkg" / "index.html").write_text(
        f'<html><body><a href="../../files/{wheel.name}#sha256={sha256(wheel)}">{wheel.name}</a></body></html>'
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a, **k: _Index(*a, directory=str(root), **k))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/simple/"
        project = with_requirements(tmp_path, f"--extra-index-url {url}\nagentpack\nprivatepkg==2.0\n")
        result = build(project, "lambda")
    finally:
        server.shutdown()
        server.server_close()
    assert {"name": "privatepkg", "version": "2.0"} in manifest(result.artifact)["dependencies"]
