"""The dependency direction of DESIGN §2, as import-linter contracts (in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_imports_keep_the_layers():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert lint, "import-linter is not installed; pip install -e '.[test]'"
    result = subprocess.run([lint, "--config", "pyproject.toml"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_importing_the_loader_or_a_task_queue_does_not_load_the_app():
    code = (
        "import sys\nimport agentpack.loader, agentpack.tasks.embedded, agentpack.interrupt.guard\n"
        "loaded = [m for m in ('agentpack.app.agent_app', 'fastapi', 'agentpack.run.agent_run') if m in sys.modules]\n"
        "print(loaded)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
