"""A real ``mlflow server`` on loopback for the tests (this module holds no tests).

``.venv/bin/mlflow server --workers 1`` with a sqlite backend (a copy of an
already migrated store, job execution off: it boots in seconds) and proxied
artifacts, in its own process group, so that :meth:`MlflowServer.kill` (SIGKILL
to the group, as an OOM kill or a node loss) takes its workers too and
:meth:`MlflowServer.start` can bring it back on the same port and store.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support import registry_builders

STARTUP_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


class MlflowServer:
    """One tracking server: store and artifacts under ``root``, a fixed port across restarts."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.db = self.root / "mlflow.db"
        registry_builders.tracking_db(self.db)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = self.root / "server.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        """Starts the server (a no-op while it runs) without waiting for it: see :meth:`wait_healthy`."""
        if self.proc is not None and self.proc.poll() is None:
            return
        command = [
            str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(self.port),
            "--backend-store-uri", f"sqlite:///{self.db}", "--artifacts-destination", str(self.root / "artifacts"),
            "--workers", "1",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def wait_healthy(self, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not healthy(self.url):
            if self.proc is None or self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log_file.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"mlflow server {self.url} did not become healthy (exit code "
                                   f"{None if self.proc is None else self.proc.poll()}):\n{tail}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL to the server's process group (the CLI and its uvicorn worker); returns when the port is free."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        while healthy(self.url):
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM (the CLI forwards it to uvicorn), a bounded wait, then SIGKILL to the server's own group."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
