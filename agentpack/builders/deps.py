"""Kept for code written against the old single module; new code imports from where these live.

``deps.py`` was split: requirements parsing (``requirements``), the pip step
(``dependencies``), agentpack itself (``vendor``), the import check (``import_check``), the
target's interpreter (``interpreters``) and the cache (``cache``).  The emulators and a few
tests/benchmarks still import the two names below from here.
"""

from agentpack.builders.cache import cache_root
from agentpack.builders.interpreters import find_interpreter

__all__ = ["cache_root", "find_interpreter"]
