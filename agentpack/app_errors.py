"""An exception raised by the user's own code, shown as the user needs it: their frames, then
one summary line.

``agentpack run`` and the generated entry point (``python -m agentpack.serve``) import the app;
when that import raises, Python's traceback is mostly typer, click, importlib and agentpack
(40 of 50 lines).  Only the frames in the user's files are kept -- plus the frame that raised,
when that is in a library, so that the failing call is seen -- and the last line says what
raised what, where.  Kept free of heavy imports: it runs on every cold start's failure path.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import traceback

_AGENTPACK_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _library_roots() -> tuple[str, ...]:
    roots = {sysconfig.get_paths().get(key) for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots |= {os.path.join(prefix, "lib") for prefix in {sys.prefix, sys.base_prefix}}
    # an artifact's dependency folder (FC's code/python, Lambda's task root): pip --target wrote it
    beside = os.path.dirname(_AGENTPACK_DIR.rstrip(os.sep))
    try:
        if any(name.endswith(".dist-info") for name in os.listdir(beside)):
            roots.add(beside)
    except OSError:
        pass
    return tuple(os.path.abspath(root) + os.sep for root in roots if root)


def is_user_frame(filename: str) -> bool:
    """Whether ``filename`` is the user's code (not agentpack, a library, the stdlib, or frozen)."""
    if filename.startswith("<"):
        return False
    path = os.path.abspath(filename)
    if path.startswith(_AGENTPACK_DIR) or "site-packages" in path or "dist-packages" in path:
        return False
    return not path.startswith(_library_roots())


def describe(error: BaseException, doing: str) -> tuple[str, str]:
    """``error`` as the user's frames (a traceback's lines, possibly empty) and one summary line:
    ``<doing> raised <Type>: <message> (<file>:<line>, in <function>)``."""
    frames = traceback.extract_tb(error.__traceback__)
    shown = [frame for frame in frames if is_user_frame(frame.filename)]
    if frames and (not shown or shown[-1] is not frames[-1]):
        shown.append(frames[-1])  # where it was raised, in a library: the call that failed
    trace = "".join(["Traceback (the app's frames):\n", *traceback.format_list(shown)]) if shown else ""
    where = next((f for f in reversed(frames) if is_user_frame(f.filename)), frames[-1] if frames else None)
    at = f" ({os.path.relpath(where.filename)}:{where.lineno}, in {where.name})" if where is not None else ""
    message = str(error).splitlines()[0] if str(error) else ""
    return trace, f"{doing} raised {type(error).__name__}{': ' + message if message else ''}{at}"
