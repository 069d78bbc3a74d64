"""``agentpack init``: a new project that builds and runs as it is."""

from __future__ import annotations

import json
import re
from pathlib import Path

from agentpack.builders.errors import ProjectError
from agentpack.targets import TARGETS, get_target, target_names

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

CONFIG = """# agentpack project: `agentpack build --target T` (T: {names})
app = "app.py:agent_app"
name = "{name}"
python = "3.12"
requirements = "requirements.txt"
"""

#: Sections written when ``agentpack init`` is given no ``--target``.
DEFAULT_TARGETS = ("fc", "lambda")


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {_toml_value(item)}" for key, item in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def target_section(name: str) -> str:
    """A ``[targets.<name>]`` table listing every key its settings model takes, commented out,
    with an example value and what it means (so the table documents itself)."""
    model = get_target(name).settings
    lines = [f"[targets.{name}]"]
    for key, field in model.model_fields.items():
        example = field.examples[0] if field.examples else field.default
        setting = f"# {key} = {_toml_value(example)}"
        lines.append(f"{setting:<44} # {field.description or ''}".rstrip())
    return "\n".join(lines) + "\n"


def scaffold(directory: Path, name: str | None = None, targets: list[str] | None = None) -> list[Path]:
    name = name or directory.resolve().name
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,63}", name):
        raise ProjectError(f"--name {name!r}: use letters, digits, '-' and '_', starting with a letter")
    chosen = list(dict.fromkeys(targets or DEFAULT_TARGETS))
    unknown = [t for t in chosen if t not in TARGETS]
    if unknown:
        raise ProjectError(f"--target {unknown[0]}: unknown target; choose from {target_names()}")
    config = CONFIG.format(name=name, names=target_names()) + "".join("\n" + target_section(t) for t in chosen)
    files = {
        directory / "agentpack.toml": config,
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
