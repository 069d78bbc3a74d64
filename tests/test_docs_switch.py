"""``/docs``, ``/redoc`` and ``/openapi.json`` (issue 21): on locally, off in what a build
generates unless its environment or the app's own keywords turn them on."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentpack import AgentApp
from agentpack.targets import DOCS_ENV, TARGETS, EntryContext
from tests.support import free_port, in_process

DOCS_PATHS = ("/docs", "/redoc", "/openapi.json")
KEY = "k-docs-000000000000000000000000001"


def make_app(**keywords: Any) -> AgentApp:
    app = AgentApp(**keywords)

    @app.query(framework="text")
    async def handler(msgs, request):
        yield "hi"

    return app


def statuses(app: AgentApp, headers: dict[str, str] | None = None) -> dict[str, int]:
    async def read() -> dict[str, int]:
        async with in_process(app) as client:
            return {path: (await client.get(path, headers=headers)).status_code for path in (*DOCS_PATHS, "/health")}

    return asyncio.run(read())


def test_the_docs_are_on_by_default_and_off_with_agentpack_docs_0(monkeypatch):
    monkeypatch.delenv(DOCS_ENV, raising=False)
    assert statuses(make_app()) == {"/docs": 200, "/redoc": 200, "/openapi.json": 200, "/health": 200}
    monkeypatch.setenv(DOCS_ENV, "1")
    assert statuses(make_app())["/openapi.json"] == 200
    monkeypatch.setenv(DOCS_ENV, "0")
    off = make_app()
    assert statuses(off) == {"/docs": 404, "/redoc": 404, "/openapi.json": 404, "/health": 200}
    assert off.openapi()["paths"]["/process"]  # the schema is still there for code that asks for it


def test_with_auth_an_absent_docs_page_is_a_401_like_any_unknown_path(monkeypatch):
    monkeypatch.setenv(DOCS_ENV, "0")
    app = make_app(api_keys=[KEY])
    assert set(statuses(app).values()) == {401, 200}  # /health is open
    assert statuses(app)["/openapi.json"] == 401
    assert statuses(app, {"Authorization": f"Bearer {KEY}"})["/openapi.json"] == 404


def test_the_apps_own_docs_keywords_win_over_the_environment(monkeypatch):
    monkeypatch.setenv(DOCS_ENV, "0")
    assert statuses(make_app(docs_url="/docs"))["/openapi.json"] == 200
    assert statuses(make_app(openapi_url="/schema.json"))["/docs"] == 200
    monkeypatch.setenv(DOCS_ENV, "1")
    assert statuses(make_app(openapi_url=None))["/openapi.json"] == 404


def test_a_bad_value_names_the_variable(monkeypatch):
    monkeypatch.setenv(DOCS_ENV, "maybe")
    with pytest.raises(ValueError, match="AGENTPACK_DOCS='maybe'"):
        make_app()


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_targets_entry_point_turns_the_docs_off_unless_its_environment_says_otherwise(target):
    row = TARGETS[target]
    files = row.entry_files(EntryContext("app.py:app", row.default_python, row.default_port, "python", streaming=True))
    starters = [f for f in files if f.executable or (f.path.endswith(".py") and f.text)]
    assert starters and all(
        f'export {DOCS_ENV}="${{{DOCS_ENV}:-0}}"' in f.text or f'os.environ.setdefault("{DOCS_ENV}", "0")' in f.text
        for f in starters
    ), [f.path for f in starters]


@pytest.mark.integration  # starts the generated bootstrap as a process
@pytest.mark.parametrize("environment, expected", [({}, 404), ({DOCS_ENV: "1"}, 200)])
def test_a_generated_bootstrap_serves_no_docs_unless_its_environment_says_1(tmp_path, environment, expected):
    """The `local` target's generated bootstrap, run as a deployment runs it."""
    shutil.copy(Path(__file__).parent.parent / "examples" / "quickstart" / "app.py", tmp_path / "app.py")
    row = TARGETS["local"]
    [bootstrap] = row.entry_files(EntryContext("app.py:app", row.default_python, row.default_port, ""))
    (tmp_path / "bootstrap").write_text(bootstrap.text)
    port = free_port()
    env = {
        key: value for key, value in os.environ.items() if key != DOCS_ENV and not key.startswith("AGENTPACK_API_KEY")
    }
    repo = str(Path(__file__).parent.parent)
    env.update(
        PORT=str(port), AGENTPACK_PYTHON=sys.executable, PYTHONPATH=repo, **environment
    )  # agentpack from this checkout
    process = subprocess.Popen(
        ["sh", str(tmp_path / "bootstrap")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the bootstrap did not serve /health"
            time.sleep(0.05)
        assert {path: httpx.get(f"{url}{path}").status_code for path in DOCS_PATHS} == dict.fromkeys(
            DOCS_PATHS, expected
        )
    finally:
        process.terminate()
        process.wait(timeout=30)
