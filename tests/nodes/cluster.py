"""Agent nodes as separate processes (`agentpack run tests/nodes/agent_node.py`), for interrupt tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Optional

import httpx

from tests.support import free_port, wait_until, http

ROOT = Path(__file__).resolve().parents[2]


class Node:
    def __init__(
        self,
        redis_url: str,
        lease: float = 10.0,
        port: Optional[int] = None,
        grace: float = 10.0,
        app: str = "tests/nodes/agent_node.py",
        env: Optional[dict[str, str]] = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "AGENTPACK_TEST_REDIS": redis_url, "AGENTPACK_TEST_LEASE": str(lease), **(env or {})}
        command = [sys.executable, "-m", "agentpack", "run", app, "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, "--log-level", "warning", "--timeout-graceful-shutdown", str(grace)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self._log_file(),
            text=True,
        )
        wait_until(self._serving, 30, f"node on port {self.port} did not start")

    def _log_file(self):
        """The node's log goes to a file (a pipe nobody reads would block the node when full)."""
        import tempfile

        self.log = tempfile.NamedTemporaryFile("w+", prefix=f"agentpack-node-{self.port}-", suffix=".log", delete=False)
        return self.log

    def log_text(self) -> str:
        return Path(self.log.name).read_text()

    def _serving(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"node exited: {self.log_text()}")
        try:
            return http.get(f"{self.url}/liveness", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def ready(self) -> bool:
        try:
            return http.get(f"{self.url}/readiness", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def stop_session(self, session_id: str, user_id: str = "u") -> httpx.Response:
        return http.post(f"{self.url}/process/stop", json={"session_id": session_id, "user_id": user_id}, timeout=10)

    def terminate(self, within: float = 60) -> int:
        """SIGTERM, as a platform stops an instance; returns the exit code once the node has exited.

        uvicorn re-raises the signal once its graceful shutdown is done, so a clean exit reads
        as ``-SIGTERM`` (or 0).
        """
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"node on port {self.port} did not exit within {within}s of SIGTERM: {self.log_text()[-3000:]}") from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


class Worker:
    """`agentpack worker tests.nodes.task_app:app` as a separate process."""

    def __init__(self, broker: str, backend: str, queue: str, interrupts: Optional[str] = None) -> None:
        import tempfile

        self.env = {
            **os.environ,
            "AGENTPACK_TEST_BROKER": broker,
            "AGENTPACK_TEST_BACKEND": backend,
            "AGENTPACK_TEST_QUEUE": queue,
        }
        if interrupts:
            self.env["AGENTPACK_TEST_INTERRUPTS"] = interrupts
        self.log = tempfile.NamedTemporaryFile("w+", prefix="agentpack-worker-", suffix=".log", delete=False)
        self.process: Optional[subprocess.Popen] = None

    def start(self, celery_app) -> "Worker":
        self.process = subprocess.Popen(
            # a unique node name: workers of other test runs on this host must not share its
            # control queue (RabbitMQ refuses a second consumer of celery@host.celery.pidbox)
            [sys.executable, "-m", "agentpack", "worker", "tests.nodes.task_app:app", "-c", "2", "--log-level", "info", "-n", f"test-{uuid.uuid4().hex[:8]}@%h"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

        def answers() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited: {self.log_text()[-3000:]}")
            return bool(celery_app.control.ping(timeout=0.5))

        wait_until(answers, 60, "the Celery worker did not answer pings")
        return self

    def log_text(self) -> str:
        return Path(self.log.name).read_text()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # warm shutdown
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
