"""``deploy --target local`` under faults, done to real processes: after every failure the state
file and the processes agree (issue 19, item 22), and the portable path works without /proc
(item 21).

Each test deploys a small app whose start fails when ``MODE=broken``, which can be made slow to
start, and which starts a child process on request (``POST /spawn``), so the tests can crash it,
interrupt its redeploy, race two deploys on one port and look for what it started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agentpack import processes
from agentpack.deployers import service
from agentpack.deployers.errors import DeployConfigError, PlatformError
from agentpack.deployers.request import DeployOptions
from agentpack.processes import pid_alive, process_start
from tests.support import cli_env, free_port, http, wait_until

pytestmark = [pytest.mark.usefixtures("agentpack_cache"), pytest.mark.integration]  # real servers and deploys

APP = '''
import os, subprocess, sys, time
from agentpack import AgentApp

VERSION = "{version}"
if os.environ.get("MODE") == "broken":
    sys.exit("MODE=broken: refusing to start")
time.sleep({start_delay})

app = AgentApp(app_name="faults")


@app.query(framework="text")
async def answer(self, msgs, request, **kwargs):
    yield VERSION


@app.endpoint("/whoami", methods=["GET"])
async def whoami():
    return {{"pid": os.getpid(), "version": VERSION, "mode": os.environ.get("MODE")}}


@app.endpoint("/spawn", methods=["POST"])
async def spawn():
    child = subprocess.Popen(["sleep", "600"])  # in the server's process group, as a tool's helper would be
    return {{"pid": child.pid}}
'''


def make_project(tmp_path: Path, port: int, version: str = "v1", start_delay: float = 0) -> Path:
    project = tmp_path / "faults"
    project.mkdir(exist_ok=True)
    (project / "app.py").write_text(APP.format(version=version, start_delay=start_delay))
    (project / "requirements.txt").write_text("")
    (project / "agentpack.toml").write_text(
        f'app = "app.py:app"\nname = "faults"\npython = "3.12"\nrequirements = "requirements.txt"\n\n'
        f'[targets.local]\nport = {port}\nenv = {{ MODE = "good" }}\n'
    )
    return project


def state(project: Path) -> dict:
    path = project / ".agentpack" / "deployments.json"
    return json.loads(path.read_text())["deployments"] if path.exists() else {}


def whoami(port: int) -> dict:
    return http.get(f"http://127.0.0.1:{port}/whoami").json()


def serves(port: int) -> bool:
    return processes.accepts_connections(port)


def gone(pid: int) -> bool:
    return process_start(pid) is None


@pytest.fixture
def cleanup():
    """Whatever a failed test left running is killed (by process group)."""
    groups: list[int] = []
    yield groups
    for pgid in groups:
        processes.signal_group(pgid, signal.SIGKILL)


def recorded_pid(project: Path, name: str = "faults") -> int:
    return int(state(project)[f"local/{name}"]["resource"]["pid"])


def test_a_redeploy_failing_on_a_variable_restarts_the_old_version_with_the_old_variables(tmp_path, cleanup):
    port = free_port()
    project = make_project(tmp_path, port)
    service.deploy(project, "local")
    cleanup.append(recorded_pid(project))
    before = whoami(port)
    assert before["mode"] == "good"

    with pytest.raises(PlatformError, match="MODE=broken"):
        service.deploy(project, "local", DeployOptions(env={"MODE": "broken"}))

    cleanup.append(recorded_pid(project))
    now = whoami(port)  # the old version serves again, with its own variables
    assert now["version"] == "v1" and now["mode"] == "good" and now["pid"] != before["pid"]
    status = service.status(project, "faults")
    assert status.platform["state"] == "ready", status.platform
    assert process_start(recorded_pid(project)) == state(project)["local/faults"]["resource"]["started"]

    _, existed = service.destroy(project, "faults")
    assert existed
    wait_until(lambda: not serves(port) and gone(now["pid"]), 20, "destroy left the restarted server running")
    assert state(project) == {}


@pytest.mark.parametrize("interrupt", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_redeploy_interrupted_records_the_restarted_old_version(tmp_path, cleanup, interrupt):
    port = free_port()
    project = make_project(tmp_path, port)
    service.deploy(project, "local")
    cleanup.append(recorded_pid(project))
    old = whoami(port)

    make_project(tmp_path, port, version="v2", start_delay=60)  # a new version that is slow to start
    log = project / ".agentpack" / "local" / "faults" / "server.log"
    deploy = subprocess.Popen(  # PYTHONFAULTHANDLER: a deploy that hangs is made to say where (SIGABRT below)
        [sys.executable, "-m", "agentpack", "deploy", "--target", "local"],
        cwd=project, env=cli_env(PYTHONFAULTHANDLER="1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_until(lambda: log.read_text().count("starting") >= 2, 120, lambda: f"the new version never started:\n{log.read_text()}")
        wait_until(lambda: not serves(port) or whoami(port)["pid"] != old["pid"], 30, "the old version was not stopped")
        deploy.send_signal(interrupt)  # Ctrl+C (or a CI job cancelled) while the new version starts
        try:
            deploy.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            deploy.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
            _, err = deploy.communicate(timeout=30)
            pytest.fail(f"the deploy did not end within 60 s of {interrupt.name}; its stacks:\n{err[-6000:]}")
    finally:
        if deploy.poll() is None:
            deploy.kill()
    assert deploy.returncode != 0

    cleanup.append(recorded_pid(project))
    wait_until(lambda: serves(port), 30, "nothing serves after the interrupted redeploy")
    assert whoami(port)["version"] == "v1"
    assert service.status(project, "faults").platform["state"] == "ready"
    pid = whoami(port)["pid"]
    service.destroy(project, "faults")
    wait_until(lambda: not serves(port) and gone(pid), 20, "destroy left the server on the port")


def test_two_deploys_under_different_names_on_one_port_one_wins_the_other_leaves_nothing(tmp_path, cleanup):
    port = free_port()
    project = make_project(tmp_path, port, start_delay=1)
    env = cli_env()
    built = subprocess.run([sys.executable, "-m", "agentpack", "build", "--target", "local"], cwd=project, env=env,
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr  # both deploys then find the artifact in the cache
    deploys = {
        name: subprocess.Popen([sys.executable, "-m", "agentpack", "deploy", "--target", "local", "--name", name, "--json"],
                               cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in ("first", "second")
    }
    results = {name: (p.wait(timeout=300), *p.communicate()) for name, p in deploys.items()}
    records = state(project)
    for record in records.values():
        cleanup.append(int(record["resource"]["pid"]))
    codes = sorted(code for code, _, _ in results.values())
    assert codes == [0, 2], results
    winner = next(name for name, (code, _, _) in results.items() if code == 0)
    loser = next(name for name in results if name != winner)
    assert f"port {port} is in use by local deployment {winner!r}" in results[loser][2], results[loser]
    assert list(records) == [f"local/{winner}"]
    assert not (project / ".agentpack" / "local" / loser).exists()
    assert pid_alive(recorded_pid(project, winner)) and serves(port)
    service.destroy(project, winner)
    wait_until(lambda: not serves(port), 20, "the winner still serves after destroy")


def test_what_the_server_started_dies_with_it_on_crash_redeploy_and_destroy(tmp_path, cleanup):
    port = free_port()
    project = make_project(tmp_path, port)
    log = project / ".agentpack" / "local" / "faults" / "server.log"

    def spawn() -> int:
        return http.post(f"http://127.0.0.1:{port}/spawn").json()["pid"]

    service.deploy(project, "local")
    cleanup.append(recorded_pid(project))
    child, server = spawn(), whoami(port)["pid"]
    os.kill(server, signal.SIGKILL)  # the server crashes
    wait_until(lambda: gone(child), 20, "a child of the crashed server survived it")
    wait_until(lambda: "was killed by signal SIGKILL" in log.read_text(), 10, lambda: log.read_text())
    status = service.status(project, "faults").platform
    assert status["state"] == "stopped" and "the server was killed by signal SIGKILL" in status["detail"], status

    outcome = service.deploy(project, "local")  # starts it again
    assert outcome.action == "restarted"
    cleanup.append(recorded_pid(project))
    child = spawn()
    service.deploy(project, "local", DeployOptions(force=True))  # a redeploy replaces the process
    cleanup.append(recorded_pid(project))
    wait_until(lambda: gone(child), 20, "a child of the replaced server survived the redeploy")

    child = spawn()
    service.destroy(project, "faults")
    wait_until(lambda: gone(child) and not serves(port), 20, "a child of the server survived destroy")


def test_a_crashed_servers_orphans_are_ended_by_destroy(tmp_path, cleanup):
    """A group whose leader died without ending it (the watchdog killed too) is ended by destroy."""
    port = free_port()
    project = make_project(tmp_path, port)
    service.deploy(project, "local")
    leader = recorded_pid(project)
    cleanup.append(leader)
    child = http.post(f"http://127.0.0.1:{port}/spawn").json()["pid"]
    os.kill(leader, signal.SIGKILL)  # the group's leader dies; the server and its child stay
    wait_until(lambda: gone(leader), 10, "the leader did not die")
    assert pid_alive(child)
    service.destroy(project, "faults")
    wait_until(lambda: gone(child) and not serves(port), 20, "destroy left the dead leader's group running")


def test_without_proc_deploy_status_and_destroy_take_the_portable_path(tmp_path, cleanup, monkeypatch):
    monkeypatch.setattr(processes, "PROC", tmp_path / "no-proc")  # as on macOS
    assert not processes.proc_available()
    assert processes.listening_sockets([os.getpid()]) is None and processes.process_environ(os.getpid()) == {}
    assert processes.process_start(os.getpid())  # from ps
    port = free_port()
    project = make_project(tmp_path, port)
    service.deploy(project, "local")
    cleanup.append(recorded_pid(project))
    assert service.status(project, "faults").platform["state"] == "ready"
    assert service.deploy(project, "local").action == "unchanged"  # the variables are known without /proc
    with pytest.raises(DeployConfigError, match="in use"):
        service.deploy(project, "local", DeployOptions(name="other"))
    pid = whoami(port)["pid"]
    service.destroy(project, "faults")
    wait_until(lambda: gone(pid) and not serves(port), 20, "destroy did not end the server without /proc")


def test_a_rollback_to_a_version_that_does_not_start_brings_the_serving_one_back(tmp_path, cleanup):
    port = free_port()
    project = make_project(tmp_path, port)
    service.deploy(project, "local")
    old_version = state(project)["local/faults"]["version"]
    make_project(tmp_path, port, version="v2")
    service.deploy(project, "local")
    cleanup.append(recorded_pid(project))
    code = project / ".agentpack" / "local" / "faults" / "versions" / old_version / "code"
    code.chmod(0o755)  # the unpacked code is read-only; its start is made to fail
    (code / "bootstrap").chmod(0o755)
    (code / "bootstrap").write_text("#!/bin/sh\necho 'this version is broken' >&2\nexit 1\n")

    with pytest.raises(PlatformError, match="broken"):
        service.rollback(project, "faults")

    cleanup.append(recorded_pid(project))
    assert whoami(port)["version"] == "v2" and whoami(port)["mode"] == "good"
    assert service.status(project, "faults").platform["state"] == "ready"
    pid = whoami(port)["pid"]
    service.destroy(project, "faults")
    wait_until(lambda: gone(pid) and not serves(port), 20, "destroy left the server on the port")


def test_on_macos_the_local_target_builds_for_this_machine_and_the_clouds_stay_linux(monkeypatch):
    """The local target runs here, so on macOS its wheels and markers are macOS's; the cloud
    targets' stay manylinux, which pip fetches with --platform on any system."""
    import sys

    from packaging import tags

    from agentpack.builders.target_platform import Platform
    from agentpack.targets import get_target

    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(tags, "platform_tags", lambda: iter(["macosx_14_0_arm64", "macosx_14_0_universal2"]))
    local = Platform(get_target("local"), "arm64", "3.12", "3.12.4")
    assert local.tags == ("macosx_14_0_arm64", "macosx_14_0_universal2")
    assert local.markers()["sys_platform"] == "darwin"
    assert "--platform" in local.pip_flags() and "macosx_14_0_arm64" in local.pip_flags()
    fc = Platform(get_target("fc"), "x86_64", "3.12", "3.12.4")
    assert all(tag.startswith("manylinux") for tag in fc.tags) and fc.markers()["sys_platform"] == "linux"


def test_an_interrupt_while_a_server_is_being_started_is_raised_once_its_process_is_held():
    """Ctrl+C landing inside Popen would leave a child nobody holds (a server left running after
    the deploy says it cleaned up): the interrupt waits for Popen, and the child's signals are the defaults."""
    reached = False
    with pytest.raises(KeyboardInterrupt):
        with processes.interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            child = subprocess.Popen(["sleep", "30"])
            reached = True
    try:
        assert reached and child.poll() is None
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=10) == -signal.SIGINT
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_a_record_without_a_start_time_is_not_running_once_its_pid_is_gone(tmp_path):
    """An older record (no ``started``) of a process that has ended reads as stopped, not running."""
    import subprocess
    import sys

    from agentpack.deployers.platforms.local import LocalProcessDeployer
    from agentpack.deployers.state import Deployment
    from agentpack.target_settings import LocalSettings

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    deployer = LocalProcessDeployer(LocalSettings(), project=tmp_path)
    assert not deployer.running(Deployment(target="local", name="old", resource={"pid": ended.pid}))
    assert deployer.running(Deployment(target="local", name="me", resource={"pid": os.getpid(), "started": process_start(os.getpid())}))
