"""What a validation error shows back of the input it refuses: a bounded excerpt.

FastAPI's 422 lists every error with the whole value that failed (``input``), so a 2 MB value
came back as 2 MB, once per error.  Every 422 agentpack writes (``/process`` and the other
routes through the app's handler, AG-UI's own) goes through :func:`bounded_errors`, so an
answer stays small whatever the request sent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

#: Characters of a bad value's JSON a 422 shows back.
INPUT_EXCERPT_CHARS = 200
#: Errors a 422 lists; the answer says how many more there were.
MAX_ERRORS_LISTED = 20


def excerpt(value: Any) -> Any:
    """``value`` when its JSON is short, else the first :data:`INPUT_EXCERPT_CHARS` characters
    of it followed by ``…`` and how long it was."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    if len(text) <= INPUT_EXCERPT_CHARS:
        return value
    return f"{text[:INPUT_EXCERPT_CHARS]}… ({len(text)} characters)"


def bounded_errors(errors: Sequence[Any]) -> tuple[list[dict[str, Any]], int]:
    """The first :data:`MAX_ERRORS_LISTED` of pydantic's errors, each ``input`` cut to an
    excerpt, and how many were left out."""
    listed = []
    for error in errors[:MAX_ERRORS_LISTED]:
        error = dict(error)
        if "input" in error:
            error["input"] = excerpt(error["input"])
        listed.append(error)
    return listed, max(0, len(errors) - MAX_ERRORS_LISTED)
