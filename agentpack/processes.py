"""The processes agentpack starts on this machine to run an artifact — emulated instances and
execution environments, the ``local`` target's server — and what they share:

- :func:`child_env`: a clean environment (the artifact's interpreter and the system on
  ``PATH``, a UTF-8 locale, no user site-packages, nothing of the caller's variables);
- :func:`end_process_group`: ending a process group the way a platform ends an instance —
  time to exit on its own after a shutdown hook, then SIGTERM and a grace, then SIGKILL for
  whatever of the group is left (the process if it lingers, anything it started);
- what Linux's ``/proc`` says about a process: its group, its start time (which tells a
  process from a later one with the same pid), its environment, and the TCP sockets it
  listens on.

Every such process is started in a session of its own (``start_new_session=True``), so its pid
is also its process group's id.  Part of the packager: artifacts do not carry this module.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = [
    "child_env",
    "end_process_group",
    "end_process_group_async",
    "listening_sockets",
    "process_environ",
    "process_group",
    "process_start",
    "signal_group",
]


# -- the environment ---------------------------------------------------------------------------
def child_env(python: str, **variables: str | None) -> dict[str, str]:
    """The environment of a process that runs an artifact with the interpreter ``python``.

    ``PATH`` has the interpreter's directory first, then the system's; ``LANG`` is C.UTF-8,
    ``HOME`` /tmp, and ``PYTHONNOUSERSITE`` keeps the user's site-packages out.  ``variables``
    are added over these (``None`` removes one: ``HOME=None``).
    """
    env = {
        "PATH": f"{Path(python).parent}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": "/tmp",
        "PYTHONNOUSERSITE": "1",
    }
    for name, value in variables.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


# -- ending a process group --------------------------------------------------------------------
def signal_group(pid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pid``; False when no process of the group is left."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _gone_within(alive: Callable[[], bool], seconds: float, poll: float) -> bool:
    deadline = time.monotonic() + seconds
    while alive():
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
    return True


def end_process_group(
    pid: int,
    alive: Callable[[], bool],
    *,
    grace: float,
    settle: float = 0.0,
    kill_wait: float = 5.0,
    poll: float = 0.02,
) -> bool:
    """End process group ``pid`` (its leader's pid) the way a platform ends an instance.

    First up to ``settle`` seconds for it to exit by itself (a shutdown hook such as
    ``/pre-stop`` has begun its graceful shutdown), then SIGTERM and up to ``grace`` seconds
    (none when ``grace`` is 0), then SIGKILL to whatever of the group is left — the leader if it
    lingers, anything it started — and up to ``kill_wait`` seconds.  ``alive`` says whether the
    leader still runs (its owner knows best: ``Popen.poll() is None`` for a child, which also
    reaps it).  Blocks; returns whether the leader is gone.
    """
    for sig, wait in ((None, settle), (signal.SIGTERM, grace)):
        if wait <= 0:
            continue
        if not alive():
            break
        if sig is not None:
            signal_group(pid, sig)
        if _gone_within(alive, wait, poll):
            break
    signal_group(pid, signal.SIGKILL)
    return _gone_within(alive, kill_wait, poll)


async def end_process_group_async(
    pid: int,
    alive: Callable[[], bool],
    *,
    grace: float,
    settle: float = 0.0,
    kill_wait: float = 5.0,
    poll: float = 0.02,
) -> bool:
    """:func:`end_process_group` on a worker thread, so the event loop (which reaps asyncio's
    child processes) runs on meanwhile."""
    end = functools.partial(end_process_group, pid, alive, grace=grace, settle=settle, kill_wait=kill_wait, poll=poll)
    return await asyncio.get_running_loop().run_in_executor(None, end)


# -- /proc ---------------------------------------------------------------------------------------
def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` from the third (state) on; None when the process is gone.

    The second field, the command name in parentheses, may itself hold spaces and ')'."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_group(pid: int) -> set[int]:
    """``pid`` and every process in its process group (the start command may fork)."""
    members = {pid}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None and int(fields[2]) == pid:  # field 5: pgrp
                members.add(int(entry))
    return members


def process_start(pid: int) -> str | None:
    """The process's start time (field 22 of its stat), None when it is gone or a zombie.

    With the pid it names one process for good: a later process with the same pid has another
    start time.  A zombie child of this process is reaped on the way.
    """
    fields = _stat(pid)
    if fields is None:
        return None
    if fields[0] in ("Z", "X"):
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return None
    return fields[19]


def process_environ(pid: int) -> dict[str, str]:
    """The environment the process started with ({} when it cannot be read)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {key.decode(errors="replace"): value.decode(errors="replace") for key, _, value in pairs}


def listening_sockets(pids: Iterable[int]) -> list[tuple[str, int]]:
    """``(address, port)`` of every TCP socket in LISTEN state owned by ``pids``."""
    inodes: set[str] = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            found.append((_address(address, v6), int(port, 16)))
    return found


def _address(hexed: str, v6: bool) -> str:
    if not v6:
        return ".".join(str(b) for b in reversed(bytes.fromhex(hexed)))
    if set(hexed) == {"0"}:
        return "::"
    return "::1" if hexed == "00000000000000000000000001000000" else hexed
