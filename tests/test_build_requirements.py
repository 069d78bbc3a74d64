"""Requirements as the builder reads them, and the target's markers — in-process, no pip, no network."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from agentpack._version import __version__
from agentpack.builders import closure
from agentpack.builders.errors import ProjectError
from agentpack.builders.requirements import (
    agentpack_requirements,
    for_environment,
    project_requirements,
    read_requirements,
)
from agentpack.builders.target_platform import Platform, platform_python
from agentpack.targets import TARGETS


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def names(lines) -> list[str]:
    return [str(line.requirement) for line in lines]


def env(python: str, target: str = "fc", arch: str = "x86_64", full: str | None = None) -> dict[str, str]:
    row = TARGETS[target]
    return Platform(row, arch, python, full or platform_python(row, python, None)).markers()


def test_option_lines_nesting_and_constraints_relative_to_their_files(tmp_path, monkeypatch):
    monkeypatch.setenv("INDEX_TOKEN", "s3cret")
    (tmp_path / "wheels").mkdir()
    (tmp_path / "locks" / "wheels").mkdir(parents=True)
    write(
        tmp_path / "requirements.txt",
        """# the agent
--index-url https://agent:${INDEX_TOKEN}@pypi.example.com/simple
--extra-index-url https://mirror.example.com/simple
-f wheels
--trusted-host pypi.example.com
--prefer-binary
--only-binary :all:
fastapi>=0.110  # web
openai>=1.0 ; python_version >= "3.8"
-r locks/base.txt
--constraint=locks/constraints.txt
agentpack>=0.1
""",
    )
    write(tmp_path / "locks" / "base.txt", "--find-links wheels\nhttpx[http2]==0.27.0 \\\n    ; sys_platform == 'linux'\n")
    write(tmp_path / "locks" / "constraints.txt", "anyio==4.4.0\n-c more/constraints.txt\n")
    write(tmp_path / "locks" / "more" / "constraints.txt", "idna<4\n")
    parsed = read_requirements(tmp_path / "requirements.txt", tmp_path)
    assert names(parsed.requirements) == ["fastapi>=0.110", 'openai>=1.0; python_version >= "3.8"', 'httpx[http2]==0.27.0; sys_platform == "linux"']
    assert [line.origin for line in parsed.requirements] == ["requirements.txt:8", "requirements.txt:9", "locks/base.txt:2"]
    assert names(parsed.constraints) == ["anyio==4.4.0", "idna<4"]
    assert parsed.constraints[1].origin == "locks/more/constraints.txt:1"
    options = parsed.options
    assert options.index_url == "https://agent:s3cret@pypi.example.com/simple"
    # each -f is found relative to the file that names it
    assert options.find_links == (str((tmp_path / "wheels").resolve()), str((tmp_path / "locks" / "wheels").resolve()))
    args = options.args()
    assert args[:4] == ["--index-url", options.index_url, "--extra-index-url", "https://mirror.example.com/simple"]
    assert ["--trusted-host", "pypi.example.com"] == args[-2:]
    assert "s3cret" not in repr(options), "the token stays out of reprs"


@pytest.mark.parametrize(
    "text, message",
    [
        ("-e ./mypkg\n", "requirements.txt:1: --editable ./mypkg: editable installs cannot be packed"),
        ("--no-binary :all:\n", "requirements.txt:1: --no-binary :all:: artifacts take wheels built for the target"),
        ("fastapi --global-option=--x\n", "requirements.txt:1: --global-option: build options do not apply"),
        ("fastapi --index-url https://x\n", "only --hash can"),
        ("--frobnicate\n", "requirements.txt:1: --frobnicate is not a requirements-file option"),
        ("six==1.16.0 --hash=md5:abc\n", "requirements.txt:1: --hash=md5:abc: give sha256:<64 hex digits>"),
        ("--hash=sha256:" + "a" * 64 + "\n", "--hash belongs on a requirement's line"),
        ("-r missing.txt\n", "requirements.txt:1: missing.txt does not exist"),
        ("-r https://example.com/req.txt\n", "remote files are not read"),
        ("-f ./nowhere\n", "requirements.txt:1: --find-links ./nowhere:"),
        ("fastapi>=\n", "requirements.txt:1: 'fastapi>=' is not a valid requirement"),
        ("./mypkg\n", "requirements.txt:1: ./mypkg is a path or URL but not a wheel; agentpack packs wheels only: build one (pip wheel ./mypkg -w wheels)"),
        ("mypkg @ git+https://github.com/me/mypkg\n", "is not a wheel"),
        ("./dist/mypkg-1.0-py3-none-any.whl\n", "dist/mypkg-1.0-py3-none-any.whl does not exist"),
        ("--index-url ${NOT_SET_FOR_THIS_TEST}\n", "${NOT_SET_FOR_THIS_TEST} is not set"),
        ("-i https://a.example/simple\n-i https://b.example/simple\n", "requirements.txt:2: --index-url https://b.example/simple conflicts"),
        ("--require-hashes\nsix==1.16.0\n", "requirements.txt:2: --require-hashes is set but six==1.16.0 has no --hash"),
        ("agentpack>=99\n", f"the build packs the agentpack running it, {__version__}"),
        ('--index-url "https://unbalanced\n', "fix the quoting"),
    ],
)
def test_unusable_lines_fail_with_the_file_the_line_and_the_fix(tmp_path, text, message):
    write(tmp_path / "requirements.txt", text)
    with pytest.raises(ProjectError) as caught:
        read_requirements(tmp_path / "requirements.txt", tmp_path)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_conflicting_index_urls_do_not_show_tokens(tmp_path):
    write(tmp_path / "requirements.txt", "-i https://me:tok1@a.example/simple\n-i https://me:tok2@b.example/simple\n")
    with pytest.raises(ProjectError) as caught:
        read_requirements(tmp_path / "requirements.txt", tmp_path)
    assert "tok1" not in str(caught.value) and "tok2" not in str(caught.value) and "me:***@b.example" in str(caught.value)


def test_include_loops_are_named(tmp_path):
    write(tmp_path / "requirements.txt", "-r a.txt\n")
    write(tmp_path / "a.txt", "-r requirements.txt\n")
    with pytest.raises(ProjectError, match="a.txt:1: requirements.txt includes itself"):
        read_requirements(tmp_path / "requirements.txt", tmp_path)


def test_wheel_paths_and_hashes(tmp_path):
    wheel = write(tmp_path / "wheels" / "my_pkg-1.0-py3-none-any.whl", "not really a wheel")
    digest = hashlib.sha256(b"x").hexdigest()
    write(tmp_path / "requirements.txt", f"./wheels/my_pkg-1.0-py3-none-any.whl ; python_version < '4'\nsix==1.16.0 --hash=sha256:{digest.upper()} \\\n  --hash sha256:{'b' * 64}\n")
    parsed = read_requirements(tmp_path / "requirements.txt", tmp_path)
    mine, six = parsed.requirements
    assert mine.requirement.name == "my-pkg" and mine.requirement.url == wheel.resolve().as_uri()
    assert str(mine.requirement.marker) == 'python_version < "4"'
    assert six.hashes == {f"sha256:{digest}", f"sha256:{'b' * 64}"}


def test_agentpack_in_the_requirements_is_left_out_when_the_pin_allows_this_version(tmp_path):
    write(tmp_path / "requirements.txt", f"agentpack=={__version__}\nAgentPack>=0.0.1\nsix\n")
    parsed = project_requirements(tmp_path, None)
    assert names(parsed.requirements) == ["six"]


def test_project_sources_in_order(tmp_path):
    assert project_requirements(tmp_path, None).requirements == ()
    write(tmp_path / "pyproject.toml", '[project]\nname = "x"\ndependencies = ["six>=1", "tomli; python_version < \'3.11\'"]\n')
    from_pyproject = project_requirements(tmp_path, None)
    assert names(from_pyproject.requirements) == ["six>=1", 'tomli; python_version < "3.11"']
    assert from_pyproject.requirements[1].origin == "pyproject.toml [project].dependencies[1]"
    write(tmp_path / "requirements.txt", "httpx\n")
    assert names(project_requirements(tmp_path, None).requirements) == ["httpx"]
    write(tmp_path / "deps" / "prod.txt", "redis\n")
    assert names(project_requirements(tmp_path, "deps/prod.txt").requirements) == ["redis"]
    with pytest.raises(ProjectError, match="requirements = 'deps/missing.txt'.*fix the path in agentpack.toml"):
        project_requirements(tmp_path, "deps/missing.txt")


@pytest.mark.parametrize(
    "python, target, arch, wanted",
    [
        ("3.10", "fc", "x86_64", {"exceptiongroup>=1", "tomli", "async-timeout>=4.0.3", "numpy"}),
        ("3.11", "fc", "x86_64", {"tomli", "async-timeout>=4.0.3", "numpy"}),  # FC's 3.11 is 3.11.2
        ("3.12", "fc", "x86_64", {"numpy"}),
        ("3.11", "lambda", "arm64", {"tomli", "async-timeout>=4.0.3", "uvloop"}),  # 3.11.0 assumed; aarch64
    ],
)
def test_markers_are_evaluated_for_the_target_not_this_host(tmp_path, python, target, arch, wanted):
    write(
        tmp_path / "requirements.txt",
        """exceptiongroup>=1 ; python_version < "3.11"
tomli ; python_version < "3.12"
async-timeout>=4.0.3 ; python_full_version < "3.11.3"
numpy ; platform_machine == "x86_64"
uvloop ; platform_machine == "aarch64" and sys_platform == "linux"
pywin32 ; sys_platform == "win32"
""",
    )
    parsed = read_requirements(tmp_path / "requirements.txt")
    kept = for_environment(parsed.requirements, env(python, target, arch))
    assert set(names(kept)) == wanted
    assert all(line.requirement.marker is None for line in kept), "pip must not re-evaluate them for its own interpreter"


def test_agentpack_requirements_leave_the_cli_out_and_keep_markers():
    lines = agentpack_requirements()
    wanted = {line.name for line in lines}
    assert {"fastapi", "uvicorn", "pydantic", "anyio"} <= wanted
    assert not wanted & {"typer", "rich", "httpx", "packaging", "tomli"}
    extras = [line for line in lines if line.requirement.marker is not None and "extra" in str(line.requirement.marker)]
    assert extras and not for_environment(extras, env("3.12")), "extras' requirements are not installed"


# -- the closure: what the target needs, from installed metadata ---------------------------------------
def fake_dist(layer: Path, name: str, version: str, requires: list[str] = (), files: dict[str, str] | None = None) -> None:
    """A dist-info as pip writes it, with a RECORD of its files."""
    info = layer / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(f"Requires-Dist: {r}\n" for r in requires)
    (info / "METADATA").write_text(metadata)
    record = [f"{info.name}/METADATA,,", f"{info.name}/RECORD,,"]
    for path, text in (files or {}).items():
        write(layer / path, text)
        record.append(f"{path},,")
    (info / "RECORD").write_text("\n".join(record) + "\n")


@pytest.fixture
def layer(tmp_path) -> Path:
    root = tmp_path / "layer"
    fake_dist(root, "anyio", "4.4.0", ['exceptiongroup>=1.0.2; python_version < "3.11"', "idna>=2.8", 'trio>=0.23; extra == "trio"'], {"anyio/__init__.py": ""})
    fake_dist(root, "idna", "3.7", files={"idna/__init__.py": ""})
    fake_dist(root, "exceptiongroup", "1.2.0", files={"exceptiongroup/__init__.py": ""})
    fake_dist(root, "redis", "5.0.8", ['async-timeout>=4.0.3; python_full_version < "3.11.3"', 'hiredis>=1; extra == "hiredis"'], {"redis/__init__.py": ""})
    return root


def test_closure_finds_what_pip_left_out_for_the_target(layer):
    walked = closure.walk(layer, [Requirement("anyio"), Requirement("redis[hiredis]")], env("3.10"))
    assert sorted(str(r) for r in walked.missing) == ["async-timeout>=4.0.3", "hiredis>=1"]
    assert walked.needed == {"anyio": "4.4.0", "exceptiongroup": "1.2.0", "idna": "3.7", "redis": "5.0.8"}
    assert walked.unneeded == []


def test_closure_finds_what_the_target_does_not_need_and_removes_it(layer):
    walked = closure.walk(layer, [Requirement("anyio"), Requirement("redis")], env("3.12"))
    assert walked.complete and walked.unneeded == ["exceptiongroup"]
    closure.remove(layer, walked.unneeded)
    assert not (layer / "exceptiongroup").exists() and not list(layer.glob("exceptiongroup-*.dist-info"))
    assert (layer / "anyio" / "__init__.py").is_file() and set(closure.installed(layer)) == {"anyio", "idna", "redis"}


def test_closure_checks_versions_and_skips_agentpack(layer):
    walked = closure.walk(layer, [Requirement("idna>=4"), Requirement("agentpack>=0.1")], env("3.12"))
    assert [str(r) for r in walked.missing] == ["idna>=4"]
