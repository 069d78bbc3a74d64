"""``agentpack init``: a new project that builds and runs as it is."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from agentpack.builders.errors import ProjectError

APP = '''"""A streaming agent. Serve it: agentpack run app.py --ask "hello"."""

import asyncio

from agentpack import AgentApp

agent_app = AgentApp(app_name="{name}", app_description="An agent built with agentpack")


@agent_app.query(framework="text")
async def answer(msgs, request):
    question = msgs[-1].text() if msgs else ""
    for word in f"You said: {{question}}".split():
        yield word + " "
        await asyncio.sleep(0.01)
'''

CONFIG = '''# agentpack project: `agentpack build --target fc` (or local, agentrun, lambda)
app = "app.py:agent_app"
name = "{name}"
python = "3.12"
requirements = "requirements.txt"

[targets.fc]
region = "cn-hangzhou"
memory = 1024
timeout = 300

[targets.lambda]
arch = "x86_64"
'''


def scaffold(directory: Path, name: Optional[str] = None) -> list[Path]:
    name = name or directory.resolve().name
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,63}", name):
        raise ProjectError(f"--name {name!r}: use letters, digits, '-' and '_', starting with a letter")
    files = {
        directory / "agentpack.toml": CONFIG.format(name=name),
        directory / "app.py": APP.format(name=name),
        directory / "requirements.txt": "# the agent's own dependencies (agentpack's are added by the build)\n",
    }
    existing = [str(p) for p in files if p.exists()]
    if existing:
        raise ProjectError(f"{', '.join(existing)} already exist; choose an empty directory")
    directory.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    return list(files)
