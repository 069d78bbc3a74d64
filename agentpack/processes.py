"""The processes agentpack starts on this machine to run an artifact — emulated instances and
execution environments, the ``local`` target's server — and what they share:

- :func:`child_env`: a clean environment (the artifact's interpreter and the system on
  ``PATH``, a UTF-8 locale, no user site-packages, nothing of the caller's variables);
- :func:`end_process_group`: ending a process group the way a platform ends an instance —
  time to exit on its own after a shutdown hook, then SIGTERM and a grace, then SIGKILL for
  whatever of the group is left (the process if it lingers, anything it started);
- :data:`WATCHDOG`: the leader of a detached server's process group, which reports how the
  server ended and ends whatever it started with it (the ``local`` target);
- :func:`port_lock`: one start on a port at a time, across commands and projects;
- what the system says about a process: whether it lives, its start time (which tells a
  process from a later one with the same pid), its group, its environment, and the TCP
  sockets it listens on.

Portability: where Linux's ``/proc`` exists it is read directly; elsewhere (macOS, the BSDs)
``os.kill(pid, 0)`` tells liveness and ``ps`` the start time and groups.  Two facts stay
Linux-only — a process's environment and *which address* its sockets listen on — and
:func:`proc_available` lets callers say so (the emulator does, in one line at start).

Every such process is started in a session of its own (``start_new_session=True``), so its pid
is also its process group's id.  Part of the packager: artifacts do not carry this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

__all__ = [
    "WATCHDOG",
    "accepts_connections",
    "child_env",
    "describe_exit",
    "end_leftover_group",
    "end_process_group",
    "end_process_group_async",
    "listening_sockets",
    "pid_alive",
    "port_lock",
    "proc_available",
    "process_environ",
    "process_group",
    "process_start",
    "signal_group",
    "terminate_as_interrupt",
    "interrupts_deferred",
]

#: Where Linux keeps what it knows of each process; elsewhere the portable path is taken.
PROC = Path("/proc")


def proc_available() -> bool:
    """Whether this system has Linux's ``/proc`` (a test may point :data:`PROC` elsewhere)."""
    return (PROC / "self" / "stat").exists()


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


# -- what the system says about a process ---------------------------------------------------------
def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (a zombie counts; see :func:`process_start`)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` from the third (state) on; None when the process is gone.

    The second field, the command name in parentheses, may itself hold spaces and ')'."""
    try:
        return (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _ps(*arguments: str) -> list[str]:
    """``ps``'s answer as lines (none when it fails): the portable path where there is no /proc."""
    try:
        done = subprocess.run(["ps", *arguments], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return done.stdout.splitlines() if done.returncode == 0 else []


def _reap(pid: int) -> None:
    """Collect a zombie child of this process, so its pid is free (no-op for others)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def process_group(pid: int) -> set[int]:
    """``pid`` and every process in its process group (the start command may fork)."""
    members = {pid}
    if proc_available():
        for entry in os.listdir(PROC):
            if entry.isdigit():
                fields = _stat(int(entry))
                if fields is not None and int(fields[2]) == pid:  # field 5: pgrp
                    members.add(int(entry))
        return members
    for line in _ps("-A", "-o", "pid=,pgid="):
        parts = line.split()
        if len(parts) == 2 and parts[1] == str(pid):
            members.add(int(parts[0]))
    return members


def process_start(pid: int) -> str | None:
    """The process's start time, None when it is gone or a zombie.

    With the pid it names one process for good: a later process with the same pid has another
    start time.  Linux: field 22 of its stat (clock ticks since boot); elsewhere ``ps``'s
    ``lstart``.  A zombie child of this process is reaped on the way.
    """
    if proc_available():
        fields = _stat(pid)
        if fields is None:
            return None
        if fields[0] in ("Z", "X"):
            _reap(pid)
            return None
        return fields[19]
    if not pid_alive(pid):
        return None
    lines = _ps("-o", "stat=,lstart=", "-p", str(pid))
    if not lines or not lines[0].strip():
        return None
    state, _, started = lines[0].strip().partition(" ")
    if state.startswith("Z"):
        _reap(pid)
        return None
    return " ".join(started.split())


def process_environ(pid: int) -> dict[str, str]:
    """The environment the process started with ({} when it cannot be read — always, without /proc)."""
    try:
        raw = (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {key.decode(errors="replace"): value.decode(errors="replace") for key, _, value in pairs}


def listening_sockets(pids: Iterable[int]) -> list[tuple[str, int]] | None:
    """``(address, port)`` of every TCP socket in LISTEN state owned by ``pids``; None where the
    system does not say (no /proc: use :func:`accepts_connections`)."""
    if not proc_available():
        return None
    inodes: set[str] = set()
    for pid in pids:
        try:
            for fd in os.listdir(PROC / str(pid) / "fd"):
                try:
                    target = os.readlink(PROC / str(pid) / "fd" / fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = []
    for table, v6 in (("tcp", False), ("tcp6", True)):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
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


def accepts_connections(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port`` (the portable readiness check)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def describe_exit(returncode: int) -> str:
    """``exited with code 3`` or ``was killed by signal SIGKILL`` (a negative Popen returncode)."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = str(-returncode)
    return f"was killed by signal {name}"


def end_leftover_group(pid: int, started: str | None) -> bool:
    """SIGKILL what is left of process group ``pid`` after its leader (started at ``started``) died.

    A process group keeps its id while any member lives, and the system gives no new process
    that id meanwhile; so when no process has the pid, or the one that has it is the leader
    itself, the group is the one agentpack started.  When another process has taken the pid,
    the old group was empty (its id was free for reuse) and nothing is signalled.  Returns
    whether a signal was sent.
    """
    current = process_start(pid)
    if current is not None and current != started:
        return False
    return signal_group(pid, signal.SIGKILL)


# -- the leader of a detached server's group -------------------------------------------------------
#: Run as ``python -I -c WATCHDOG <command...>`` in a session of its own: it starts the server
#: in its group, waits, writes how the server ended to its output (the server's log), and
#: SIGKILLs the group — so processes the server started never outlive it, whether it crashed,
#: was stopped (SIGTERM to the group reaches the server, this leader only waits) or was
#: killed.  Plain stdlib, nothing imported from agentpack: it runs with the artifact's Python.
WATCHDOG = """
import os, signal, subprocess, sys
signal.signal(signal.SIGTERM, lambda *_: None)
try:
    server = subprocess.Popen(sys.argv[1:])
except OSError as exc:
    print(f"--- agentpack: could not start {sys.argv[1]}: {exc}", flush=True)
    sys.exit(127)
code = server.wait()
if code >= 0:
    how = f"exited with code {code}"
else:
    try:
        how = "was killed by signal " + signal.Signals(-code).name
    except ValueError:
        how = f"was killed by signal {-code}"
print(f"--- agentpack: the server (pid {server.pid}) {how}; ending its process group", flush=True)
os.killpg(0, signal.SIGKILL)
"""


# -- a command changing processes, interrupted ----------------------------------------------------------
@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt meanwhile, as Ctrl+C does: a command that stops
    and starts processes (a CI job cancelled, a terminal closed) then runs its clean-up — the old
    server back, the state written — instead of dying between the two.  Main thread only."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ctrl+C, SIGTERM and SIGHUP wait until the block is done, then raise KeyboardInterrupt.

    Around ``Popen``: an interrupt that lands while the child is being started would leave a
    running child whose ``Popen`` was never returned, so nobody could end it.  The handlers are
    Python's, so the child (after exec) gets the default ones.  Main thread only.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def remember(signum: int, frame: object) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, remember) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        raise KeyboardInterrupt(signal.Signals(received[0]).name)


# -- one start on a port at a time ---------------------------------------------------------------------
@contextlib.contextmanager
def port_lock(port: int) -> Iterator[None]:
    """Held while a command checks that ``port`` is free and starts a server on it.

    Two ``agentpack deploy --target local`` under different names (or projects) on one port
    would otherwise both find it free, both start, and the loser would pass its readiness check
    on the winner's answer.  The lock is per user, in the system's temporary directory.
    """
    directory = Path(tempfile.gettempdir()) / f"agentpack-{os.getuid()}-ports"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    with (directory / f"{port}.lock").open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
