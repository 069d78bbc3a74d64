"""Finding the app a user points at: two files of the same name in one process stay apart."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from agentpack.loader import AppLoadError, load_app

APP = """from fastapi import FastAPI

app = FastAPI(title={title!r})
"""


def test_two_app_files_of_one_name_load_as_themselves(tmp_path: Path) -> None:
    first, second = tmp_path / "one" / "app.py", tmp_path / "two" / "app.py"
    for path, title in ((first, "one"), (second, "two")):
        path.parent.mkdir()
        path.write_text(APP.format(title=title))
    saved_path, saved_module = list(sys.path), sys.modules.pop("app", None)
    try:
        assert load_app(str(first))[0].title == "one"
        assert load_app(str(second))[0].title == "two", "the second file, not the module the first left behind"
        assert load_app(str(first))[0].title == "one"
    finally:
        sys.path[:] = saved_path
        sys.modules.pop("app", None)
        if saved_module is not None:
            sys.modules["app"] = saved_module


def test_a_missing_file_names_itself(tmp_path: Path) -> None:
    with pytest.raises(AppLoadError, match="no such file"):
        load_app(str(tmp_path / "nowhere.py"))
