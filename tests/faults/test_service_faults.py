"""Service faults: an MLflow tracking server that does not answer.

Every command that logs to MLflow checks the server first (one request, a few
seconds) and fails with one line naming the URI, exit status 2, before any
compute and before writing anything: not after minutes of client retries, not
after publishing a stage's output.
"""

from __future__ import annotations

import http.server
import socket
import threading

import pytest

from tests.support.repo import REPO
from zonda.cli import EXIT_BAD_INPUT, main
from zonda.params import load_params
from zonda.tracking import TrackingServerError, check_reachable

CI = str(REPO / "params" / "ci.yaml")


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def commands(tmp_path) -> dict[str, list[str]]:
    """Each MLflow-logging command, its inputs given as (empty) directories: the check comes before reading them."""
    d = {name: tmp_path / name for name in ("snapshot", "statistics", "graph", "model", "evaluation")}
    for path in d.values():
        path.mkdir()
    out = ["--out", str(tmp_path / "out")]
    return {
        "snapshot": ["snapshot", "--params", CI, *out],
        "statistics": ["statistics", "--params", CI, "--snapshot", str(d["snapshot"]), *out],
        "graph": ["graph", "--params", CI, "--snapshot", str(d["snapshot"]), *out],
        "train": ["train", "--params", CI, *(f"--{k}={d[k]}" for k in ("snapshot", "statistics", "graph")), *out],
        "evaluate": ["evaluate", "--params", CI, *(f"--{k}={d[k]}" for k in ("snapshot", "statistics", "graph", "model")), *out],
        "register": ["register", "--params", CI,
                     *(f"--{k}={d[k]}" for k in ("snapshot", "statistics", "graph", "model", "evaluation")), *out],
        "promote": ["promote", "zonda-ci", "1", "--params", CI, "--reason", "test"],
        "forecast": ["forecast", "--params", CI, "--init", str(d["snapshot"]), *out],
    }


@pytest.mark.parametrize("command", ["snapshot", "statistics", "graph", "train", "evaluate", "register", "promote", "forecast"])
def test_an_unreachable_tracking_server_fails_the_command_at_once(command, tmp_path, monkeypatch, capsys):
    uri = f"http://127.0.0.1:{unused_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    rc = main(commands(tmp_path)[command])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == EXIT_BAD_INPUT
    assert err[-1].startswith(f"zonda {command}: error: MLflow tracking server {uri} (MLFLOW_TRACKING_URI) does not answer")
    assert not any("Traceback" in line for line in err)
    assert not (tmp_path / "out").exists()  # nothing computed, nothing published


def test_the_message_names_the_params_uri_without_its_password(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    port = unused_port()
    params = load_params(CI, [f"runtime.mlflow_tracking_uri=https://alice:s3cret@127.0.0.1:{port}"])
    with pytest.raises(TrackingServerError) as info:
        check_reachable(params, timeout_s=2)
    message = str(info.value)
    assert f"https://alice:***@127.0.0.1:{port} (runtime.mlflow_tracking_uri)" in message and "s3cret" not in message


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 - http.server's API
        self.send_response(self.status if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("status", [200, 401], ids=["healthy", "needs-auth"])
def test_a_server_that_answers_passes(status, monkeypatch):
    handler = type("Handler", (_Health,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        assert check_reachable(load_params(CI)) == uri
    finally:
        server.shutdown()
        server.server_close()


def test_local_stores_need_no_server(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = load_params(CI, [f"runtime.output_root={tmp_path}"])
    assert check_reachable(params).startswith("sqlite:///")
