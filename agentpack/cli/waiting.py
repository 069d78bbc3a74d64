"""Say what a command is waiting for, and for how long, when it has been quiet a while.

Deploys wait on builds, uploads and the platforms' control planes; a command that prints
nothing for two minutes reads as hung.  :class:`Waiting` remembers the last thing the command
started (a progress step, or the control-plane call the cloud clients log to ``agentpack.api``
and botocore to ``botocore.endpoint`` at DEBUG) and, after :data:`NOTICE_AFTER` seconds of
silence, prints ``waiting for <that> (N s)``, then again every :data:`NOTICE_EVERY` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType

#: Seconds of silence before the first "waiting for" line, and between the following ones.
NOTICE_AFTER = 5.0
NOTICE_EVERY = 10.0

#: What the builder's steps are (``agentpack build`` shows the same words).
BUILD_STEPS = {
    "resolve": "resolving dependencies",
    "download": "downloading wheels for the target",
    "compile": "compiling bytecode with the target's Python",
    "layout": "laying out the artifact",
    "zip": "writing the zip",
    "check": "checking that dependencies import",
}

_CALL_LOGGERS = ("agentpack.api", "botocore.endpoint")


class _CallHandler(logging.Handler):
    """Turns a logged control-plane call into what is being waited for."""

    def __init__(self, waiting: Waiting) -> None:
        super().__init__(logging.DEBUG)
        self.waiting = waiting

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "agentpack.api":
            action = str(record.args[0]) if isinstance(record.args, tuple) and record.args else record.getMessage()
        else:  # botocore: "Making request for %s with params: %s", the operation model first
            args = record.args if isinstance(record.args, tuple) else ()
            action = getattr(args[0], "name", "") if args else ""
            if not action:
                return
        self.waiting.started(f"the platform's answer to {action}")


class Waiting:
    """A context: while open, a thread prints a notice when the command has been quiet too long."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.what = "the command"
        self.since = time.monotonic()
        self.quiet_since = self.since
        self.notices = 0
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="agentpack-waiting", daemon=True)
        self._handler = _CallHandler(self)
        self._levels: dict[str, int] = {}

    def started(self, what: str) -> None:
        """Something new began: it is what is waited for from now on."""
        with self._lock:
            self.what = what
            self.since = self.quiet_since = time.monotonic()
            self.notices = 0

    def spoke(self) -> None:
        """The command printed something: the silence starts again (what is waited for stays)."""
        with self._lock:
            self.quiet_since = time.monotonic()
            self.notices = 0

    def _watch(self) -> None:
        while not self._done.wait(0.2):
            with self._lock:
                now = time.monotonic()
                due = NOTICE_AFTER + self.notices * NOTICE_EVERY
                if now - self.quiet_since < due:
                    continue
                self.notices += 1
                line = f"waiting for {self.what} ({now - self.since:.0f} s)"
            self.say(line)

    def __enter__(self) -> Waiting:
        for name in _CALL_LOGGERS:
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.setLevel(logging.DEBUG)
            logger.addHandler(self._handler)
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._done.set()
        self._thread.join(timeout=1)
        for name, level in self._levels.items():
            logger = logging.getLogger(name)
            logger.removeHandler(self._handler)
            logger.setLevel(level)
