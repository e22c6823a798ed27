"""A fake Kubeflow Pipelines API server (v2beta1 REST) on loopback, for tests of the KFP client.

It implements the endpoints ``kfp.Client`` 2.17 calls to submit a run —
healthz; pipelines list/get/create/upload (multipart) and upload_version;
pipeline versions list/get; experiments list/get/create; runs create/get —
keeps the objects in memory, and records every request (method, path, query,
body). A run's state advances through a script (default PENDING -> RUNNING ->
SUCCEEDED) by one step on each GET of that run.

Use it as a context manager::

    with FakeKfpServer() as kfp:
        client = kfp.Client(host=kfp.url)
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

API = "/apis/v2beta1"
MAX_BODY_BYTES = 32 * 1024 * 1024
REQUEST_TIMEOUT_S = 10


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any = None  # parsed JSON, or for multipart uploads {"fields": ..., "files": {name: (filename, bytes)}}
    headers: dict[str, str] = field(default_factory=dict)  # names lower-cased


@dataclass
class RunScript:
    """States a run reports on successive GETs (the last one sticks), and the error of a failed run."""

    states: list[str] = field(default_factory=lambda: ["PENDING", "RUNNING", "SUCCEEDED"])
    error: str | None = None
    failed_task: str | None = None


class FakeKfpServer:
    def __init__(self, *, multi_user: bool = False, require_token: str | None = None) -> None:
        self.multi_user = multi_user
        self.require_token = require_token  # if set, requests without "Bearer <token>" get HTTP 401
        self.calls: list[Call] = []
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, dict] = {}  # version id -> version (with pipeline_id)
        self.packages: dict[str, bytes] = {}  # version id -> uploaded package
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.run_script = RunScript()
        self._run_gets: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeKfpServer":
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> "FakeKfpServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- queries for tests

    def calls_to(self, method: str, pattern: str) -> list[Call]:
        """Recorded calls whose method matches and whose path fully matches the regex ``pattern``."""
        return [c for c in self.calls if c.method == method and re.fullmatch(pattern, c.path)]

    # ---------------------------------------------------------------- request handling

    def handle(
        self, method: str, path: str, query: dict[str, str], body: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, dict]:
        with self._lock:
            headers = {k.lower(): v for k, v in (headers or {}).items()}
            self.calls.append(Call(method, path, query, body, headers))
            if self.require_token and headers.get("authorization") != f"Bearer {self.require_token}":
                return 401, {"error": "Unauthorized", "code": 16, "message": "missing or invalid bearer token"}
            try:
                return self._route(method, path, query, body)
            except _HttpError as err:
                return err.status, {"error": err.message, "code": err.status, "message": err.message}

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, dict]:
        if not path.startswith(API + "/"):
            raise _HttpError(404, f"no route {path}")
        rest = path[len(API):]
        routes = [
            ("GET", r"/healthz", self._healthz),
            ("GET", r"/pipelines", self._list_pipelines),
            ("POST", r"/pipelines", self._create_pipeline),
            ("POST", r"/pipelines/upload", self._upload_pipeline),
            ("POST", r"/pipelines/upload_version", self._upload_version),
            ("GET", r"/pipelines/(?P<pid>[^/]+)", self._get_pipeline),
            ("GET", r"/pipelines/(?P<pid>[^/]+)/versions", self._list_versions),
            ("GET", r"/pipelines/(?P<pid>[^/]+)/versions/(?P<vid>[^/]+)", self._get_version),
            ("GET", r"/experiments", self._list_experiments),
            ("POST", r"/experiments", self._create_experiment),
            ("GET", r"/experiments/(?P<eid>[^/]+)", self._get_experiment),
            ("POST", r"/runs", self._create_run),
            ("GET", r"/runs/(?P<rid>[^/:]+)", self._get_run),
        ]
        for verb, pattern, handler in routes:
            m = re.fullmatch(pattern, rest)
            if verb == method and m:
                return 200, handler(query=query, body=body, **m.groupdict())
        raise _HttpError(404, f"no route {method} {path}")

    def _healthz(self, **_) -> dict:
        return {"multi_user": self.multi_user, "pipeline_store": "database"}

    # pipelines

    def _new_pipeline(self, name: str, description: str | None, namespace: str | None) -> dict:
        if any(p["display_name"] == name for p in self.pipelines.values()):
            raise _HttpError(409, f"pipeline {name!r} already exists")
        pid = str(uuid.uuid4())
        self.pipelines[pid] = {
            "pipeline_id": pid, "display_name": name, "name": name, "description": description or "",
            "namespace": namespace or "", "created_at": "2026-01-01T00:00:00Z",
        }
        return self.pipelines[pid]

    def _new_version(self, pid: str, name: str, description: str | None, package: bytes) -> dict:
        if pid not in self.pipelines:
            raise _HttpError(404, f"pipeline {pid} not found")
        if any(v["pipeline_id"] == pid and v["display_name"] == name for v in self.versions.values()):
            raise _HttpError(409, f"pipeline version {name!r} already exists")
        vid = str(uuid.uuid4())
        self.versions[vid] = {
            "pipeline_id": pid, "pipeline_version_id": vid, "display_name": name, "name": name,
            "description": description or "", "created_at": "2026-01-01T00:00:00Z",
        }
        self.packages[vid] = package
        return self.versions[vid]

    def _list_pipelines(self, query, **_) -> dict:
        items = _filtered(list(self.pipelines.values()), query.get("filter"))
        return {"pipelines": items, "total_size": len(items)} if items else {"total_size": 0}

    def _create_pipeline(self, body, **_) -> dict:
        return self._new_pipeline(body.get("display_name") or body.get("name"), body.get("description"), body.get("namespace"))

    def _upload_pipeline(self, query, body, **_) -> dict:
        name = query.get("display_name") or query.get("name")
        filename, package = _uploaded_file(body)
        pipeline = self._new_pipeline(name or filename, query.get("description"), query.get("namespace"))
        self._new_version(pipeline["pipeline_id"], pipeline["display_name"], query.get("description"), package)
        return pipeline

    def _upload_version(self, query, body, **_) -> dict:
        pid = query.get("pipelineid")
        if not pid:
            raise _HttpError(400, "pipelineid is required")
        _, package = _uploaded_file(body)
        return self._new_version(pid, query.get("display_name") or query.get("name"), query.get("description"), package)

    def _get_pipeline(self, pid, **_) -> dict:
        if pid not in self.pipelines:
            raise _HttpError(404, f"pipeline {pid} not found")
        return self.pipelines[pid]

    def _list_versions(self, pid, query, **_) -> dict:
        if pid not in self.pipelines:
            raise _HttpError(404, f"pipeline {pid} not found")
        items = [v for v in self.versions.values() if v["pipeline_id"] == pid]
        items = _filtered(items, query.get("filter"))
        return {"pipeline_versions": items, "total_size": len(items)} if items else {"total_size": 0}

    def _get_version(self, pid, vid, **_) -> dict:
        version = self.versions.get(vid)
        if version is None or version["pipeline_id"] != pid:
            raise _HttpError(404, f"pipeline version {vid} not found")
        return version

    # experiments

    def _list_experiments(self, query, **_) -> dict:
        items = _filtered(list(self.experiments.values()), query.get("filter"))
        if query.get("namespace"):
            items = [e for e in items if e["namespace"] == query["namespace"]]
        return {"experiments": items, "total_size": len(items)} if items else {"total_size": 0}

    def _create_experiment(self, body, **_) -> dict:
        name = body.get("display_name")
        if not name:
            raise _HttpError(400, "display_name is required")
        if any(e["display_name"] == name for e in self.experiments.values()):
            raise _HttpError(409, f"experiment {name!r} already exists")
        eid = str(uuid.uuid4())
        self.experiments[eid] = {
            "experiment_id": eid, "display_name": name, "description": body.get("description") or "",
            "namespace": body.get("namespace") or "", "storage_state": "AVAILABLE",
        }
        return self.experiments[eid]

    def _get_experiment(self, eid, **_) -> dict:
        if eid not in self.experiments:
            raise _HttpError(404, f"experiment {eid} not found")
        return self.experiments[eid]

    # runs

    def _create_run(self, body, **_) -> dict:
        ref = body.get("pipeline_version_reference") or {}
        if body.get("experiment_id") not in self.experiments:
            raise _HttpError(400, f"experiment {body.get('experiment_id')} not found")
        if ref.get("pipeline_version_id") not in self.versions:
            raise _HttpError(400, f"pipeline version {ref.get('pipeline_version_id')} not found")
        rid = str(uuid.uuid4())
        self.runs[rid] = {
            **body, "run_id": rid, "state": "PENDING", "created_at": "2026-01-01T00:00:00Z",
            "storage_state": "AVAILABLE", "_script": self.run_script,
        }
        self._run_gets[rid] = 0
        return self._public_run(rid)

    def _get_run(self, rid, **_) -> dict:
        if rid not in self.runs:
            raise _HttpError(404, f"run {rid} not found")
        script: RunScript = self.runs[rid]["_script"]
        step = min(self._run_gets[rid], len(script.states) - 1)
        self._run_gets[rid] += 1
        self.runs[rid]["state"] = script.states[step]
        return self._public_run(rid)

    def _public_run(self, rid: str) -> dict:
        run = {k: v for k, v in self.runs[rid].items() if not k.startswith("_")}
        script: RunScript = self.runs[rid]["_script"]
        state = run["state"]
        tasks = [{"display_name": "snapshot", "state": "SUCCEEDED" if state != "PENDING" else "PENDING"}]
        if state == "FAILED":
            run["error"] = {"code": 2, "message": script.error or "failed"}
            if script.failed_task:
                tasks.append({"display_name": script.failed_task, "state": "FAILED",
                              "error": {"code": 2, "message": script.error or "failed"}})
        elif state == "SUCCEEDED":
            tasks.append({"display_name": "statistics", "state": "SUCCEEDED"})
        run["run_details"] = {"task_details": tasks}
        return run


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _filtered(items: list[dict], filter_json: str | None) -> list[dict]:
    """Applies a v2beta1 Filter with EQUALS predicates on string fields (what the client sends)."""
    if not filter_json:
        return items
    for predicate in json.loads(filter_json).get("predicates", []):
        if predicate.get("operation") not in ("EQUALS", 1):  # protobuf JSON: enum name or number
            raise _HttpError(400, f"fake server supports only EQUALS predicates, got {predicate}")
        key, value = predicate["key"], predicate.get("string_value", predicate.get("stringValue"))
        items = [i for i in items if i.get(key) == value]
    return items


def _uploaded_file(body: Any) -> tuple[str, bytes]:
    files = (body or {}).get("files") or {}
    if "uploadfile" not in files:
        raise _HttpError(400, "multipart field 'uploadfile' is missing")
    return files["uploadfile"]


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeKfpServer
    timeout = REQUEST_TIMEOUT_S  # a stuck client cannot hold a handler thread forever
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._reply(413, {"error": f"body over {MAX_BODY_BYTES} bytes"})
            self.close_connection = True
            return
        raw = self.rfile.read(length) if length else b""
        try:
            body = self._parse_body(raw)
        except ValueError as exc:
            self._reply(400, {"error": f"bad request body: {exc}"})
            return
        status, payload = self.server_fake.handle(method, split.path, query, body, dict(self.headers.items()))
        self._reply(status, payload)

    def _parse_body(self, raw: bytes) -> Any:
        if not raw:
            return None
        ctype = self.headers.get("Content-Type", "")
        if ctype.startswith("multipart/form-data"):
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw
            )
            if not message.is_multipart():
                raise ValueError("multipart body without parts")
            fields: dict[str, str] = {}
            files: dict[str, tuple[str, bytes]] = {}
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                filename = part.get_filename()
                payload = part.get_payload(decode=True) or b""
                if filename is not None:
                    files[name] = (filename, payload)
                else:
                    fields[name] = payload.decode()
            return {"fields": fields, "files": files}
        return json.loads(raw)

    def _reply(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")
