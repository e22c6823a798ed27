"""`make run-pipeline` with a KFP host: compile the pipeline, submit it to a Kubeflow Pipelines API, follow the run.

:func:`submit` compiles the pipeline (:func:`pipelines.zonda_pipeline.compile_pipeline`) and
:func:`submit_package` submits it: finds (or creates) the KFP
pipeline ``runtime.pipeline_name``, uploads the compiled IR as a version named
by the git commit (reusing that version when it already holds the same IR),
gets or creates the experiment ``runtime.kfp_experiment``, and starts a run
with the fully resolved params as the ``params_json`` pipeline parameter, the
source's fingerprint digest taken before submitting as ``source_fingerprint``
(:func:`pipelines.zonda_pipeline.run_arguments`) and ``runtime.service_account``
as the run's service account. It prints the run's
URL; with ``wait=True`` it polls the run until it ends and raises
:class:`RunFailed` unless it succeeded; with ``summary_path`` it writes a
Markdown summary of the run (also when the run failed).

Version names: the 12-character commit (``0123456789ab``); a dirty checkout or
no git at all gets a UTC timestamp suffix (``0123456789ab-dirty-20260101-120000``),
so uncommitted code never hides behind a commit's name. The version's
description records the IR's sha256; if a version of that name holds a
different IR (another preset compiled at the same commit, e.g. other images or
GPU counts), the new one is named ``<commit>-<first 8 hex of the IR sha256>``
instead of silently running the other preset's IR.

Authentication: ``token`` or the ``KFP_TOKEN`` environment variable is sent as
a bearer token. On a multi-user KFP, the experiment lives in the namespace
``runtime.distributed.namespace`` (the KFP profile of the chart's namespace).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import certifi
import kfp
import kfp_server_api
import urllib3

from pipelines.zonda_pipeline import compile_pipeline, run_arguments
from zonda.data.locations import SourceError
from zonda.files import file_sha256, write_text_atomic
from zonda.params import STAGE_SECTIONS, Params, ParamsError, env_references
from zonda.provenance import git_commit

TERMINAL_STATES = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED")
DEFAULT_POLL_S = 15.0
PROBE_TIMEOUT_S = 15.0
DIGEST_TAG = "ir-sha256:"
HEARTBEAT_S = 600.0
MAX_POLL_ERRORS = 5


class SubmitError(RuntimeError):
    """Submitting or following the run failed (KFP API unreachable, request rejected, bad pipeline).

    ``result`` is the run's record when a run was started, else None.
    """

    def __init__(self, message: str, result: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.result = result


class RunFailed(SubmitError):
    """The run ended in a state other than SUCCEEDED, or did not end in time."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message, result)
        self.state = result.get("state")


# --------------------------------------------------------------------------- naming


def version_name(commit: str | None, now: dt.datetime | None = None) -> str:
    """KFP pipeline version name for a git commit (``zonda.provenance.git_commit()``'s format)."""
    stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%d-%H%M%S")
    if not commit:
        return f"nogit-{stamp}"
    dirty = commit.endswith("-dirty")
    sha = re.sub(r"[^a-z0-9]+", "-", commit.removesuffix("-dirty").lower()).strip("-")[:12] or "nogit"
    return f"{sha}-dirty-{stamp}" if dirty else sha


def run_name_for(params: Params, now: dt.datetime | None = None) -> str:
    """The KFP run (and MLflow run) name: ``<preset>-<UTC timestamp>``."""
    return f"{params.name}-{(now or dt.datetime.now(dt.timezone.utc)).strftime('%Y%m%d-%H%M%S')}"


def run_url(host: str, run_id: str) -> str:
    ui = os.environ.get("KF_PIPELINES_UI_ENDPOINT") or host
    return f"{ui.rstrip('/')}/#/runs/details/{run_id}"


# --------------------------------------------------------------------------- KFP API


def _api_error(what: str, exc: BaseException, host: str) -> SubmitError:
    if isinstance(exc, kfp_server_api.ApiException):
        detail = exc.body
        try:
            body = json.loads(exc.body or "")
            detail = body.get("message") or body.get("error") or exc.body
        except (ValueError, AttributeError):
            pass
        hint = " (check KFP_TOKEN)" if exc.status in (401, 403) else ""
        return SubmitError(f"KFP API at {host}: {what} failed: HTTP {exc.status} {exc.reason}: {detail}{hint}")
    if isinstance(exc, ValueError):  # the client's own checks, e.g. several pipelines with one name
        return SubmitError(f"KFP API at {host}: {what} failed: {exc}")
    return SubmitError(f"cannot reach the KFP API at {host} ({what}): {type(exc).__name__}: {exc}")


def _transport_errors() -> tuple[type[BaseException], ...]:
    return (kfp_server_api.ApiException, urllib3.exceptions.HTTPError, OSError, TimeoutError, ValueError)


def _call(what: str, api_host: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """Calls the KFP client, keeping its own prints off stdout and turning API errors into SubmitError."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return fn(*args, **kwargs)
    except _transport_errors() as exc:
        raise _api_error(what, exc, api_host) from None


def _probe(host: str, token: str | None) -> dict[str, Any] | None:
    """One quick GET of the health endpoint, so a wrong host or token fails in seconds with a clear message.

    (``kfp.Client`` itself retries a failing health check 5 times, 5 s apart, and then reports only
    that it failed.) Server errors (5xx) are left to the client's retries. Returns the health
    answer (``multi_user``, ...) when the server gave one.
    """
    url = f"{host.rstrip('/')}/apis/v2beta1/healthz"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    pool = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=certifi.where())
    try:
        response = pool.request(
            "GET", url, headers=headers, redirect=False, retries=False,
            timeout=urllib3.Timeout(connect=PROBE_TIMEOUT_S, read=PROBE_TIMEOUT_S),
        )
    except urllib3.exceptions.HTTPError as exc:
        raise SubmitError(f"cannot reach the KFP API at {host}: {type(exc).__name__}: {exc}") from None
    status = response.status
    if status in (401, 403):
        hint = "set KFP_TOKEN to a valid bearer token" if not token else "the token (KFP_TOKEN) was refused"
        raise SubmitError(f"KFP API at {host} answered HTTP {status} to {url}: {hint}")
    if 300 <= status < 400:
        where = response.headers.get("Location", "?")
        raise SubmitError(
            f"KFP API at {host} redirects {url} to {where} (a login page?): "
            "point KFP_HOST at the API endpoint and set KFP_TOKEN"
        )
    if status == 404:
        raise SubmitError(f"no KFP v2 API at {host}: HTTP 404 for {url} (check the host and its path prefix)")
    if 400 <= status < 500:
        raise SubmitError(f"KFP API at {host} answered HTTP {status} to {url}: {response.data[:200]!r}")
    if status != 200:
        return None
    try:
        answer = json.loads(response.data)
    except ValueError:
        raise SubmitError(f"{host} is not a KFP API: {url} did not answer JSON ({response.data[:120]!r})") from None
    return answer if isinstance(answer, dict) else None


def _connect(host: str, token: str | None) -> tuple[Any, bool]:
    """A ``kfp.Client`` for ``host``, and whether the KFP deployment is multi-user."""
    token = token or os.environ.get("KFP_TOKEN")
    health = _probe(host, token)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "This client only works with KFP v2.0.0-beta.2 and later"
        client = _call("health check", host, kfp.Client, host=host, existing_token=token)
    if health is None:
        health = {"multi_user": getattr(_call("health check", host, client.get_kfp_healthz), "multi_user", False)}
    return client, bool(health.get("multi_user"))


def _equals_filter(name: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "string_value": name}]})


def _find_or_create_pipeline(client, host: str, name: str, description: str) -> tuple[str, bool]:
    """ID of the pipeline named ``name`` (created, without versions, if missing); and whether it was created."""
    pipeline_id = _call(f"look-up of pipeline {name!r}", host, client.get_pipeline_id, name)
    if pipeline_id:
        return pipeline_id, False
    body = kfp_server_api.V2beta1Pipeline(display_name=name, description=description)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            created = client.pipelines.pipeline_service_create_pipeline(pipeline=body)
        return created.pipeline_id, True
    except kfp_server_api.ApiException as exc:
        if exc.status != 409:  # 409: another submission created it meanwhile
            raise _api_error(f"creation of pipeline {name!r}", exc, host) from None
    except _transport_errors() as exc:
        raise _api_error(f"creation of pipeline {name!r}", exc, host) from None
    pipeline_id = _call(f"look-up of pipeline {name!r}", host, client.get_pipeline_id, name)
    if not pipeline_id:
        raise SubmitError(f"KFP API at {host}: pipeline {name!r} exists (HTTP 409) but cannot be found")
    return pipeline_id, False


def _find_version(client, host: str, pipeline_id: str, name: str):
    response = _call(
        f"listing versions of pipeline {pipeline_id}", host,
        client.list_pipeline_versions, pipeline_id=pipeline_id, page_size=10, filter=_equals_filter(name),
    )
    for version in response.pipeline_versions or []:
        if version.display_name == name:
            return version
    return None


def _find_or_upload_version(
    client, host: str, pipeline_id: str, package: Path, digest: str, base_name: str, description: str
) -> tuple[Any, bool]:
    """The version holding this IR: reused by name (and digest), else uploaded; and whether it was uploaded.

    A concurrent submission may upload the same name between look-up and upload (HTTP 409): then
    the look-up runs again, once.
    """
    for attempt in range(2):
        name = base_name
        existing = _find_version(client, host, pipeline_id, name)
        if existing is not None and DIGEST_TAG + digest not in (existing.description or ""):
            name = f"{base_name}-{digest[:8]}"  # same commit, different IR (another preset)
            existing = _find_version(client, host, pipeline_id, name)
        if existing is not None:
            return existing, False
        what = f"upload of pipeline version {name!r}"
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                uploaded = client.upload_pipeline_version(
                    pipeline_package_path=str(package), pipeline_version_name=name, pipeline_id=pipeline_id,
                    description=description,
                )
            return uploaded, True
        except kfp_server_api.ApiException as exc:
            if exc.status != 409 or attempt:
                raise _api_error(what, exc, host) from None
        except _transport_errors() as exc:
            raise _api_error(what, exc, host) from None
    raise AssertionError("unreachable")


def _task_rows(run) -> list[dict[str, str]]:
    details = getattr(run, "run_details", None)
    rows = []
    for task in (getattr(details, "task_details", None) or []):
        error = getattr(task, "error", None)
        rows.append({
            "name": task.display_name or task.task_id or "?",
            "state": str(task.state or "?"),
            "error": (getattr(error, "message", None) or "") if error else "",
        })
    return rows


def _update_result(result: dict[str, Any], run) -> None:
    result["state"] = str(run.state or "PENDING")
    error = getattr(run, "error", None)
    result["error"] = (getattr(error, "message", None) or None) if error else None
    result["tasks"] = _task_rows(run)


def _follow(client, host: str, result: dict[str, Any], timeout_s: float, poll_s: float) -> None:
    """Polls the run until it reaches a terminal state or ``timeout_s`` passes; prints progress lines."""
    start = time.monotonic()
    last_state, last_print, errors = None, start, 0
    while True:
        try:
            run = _call(f"status of run {result['run_id']}", host, client.get_run, result["run_id"])
            errors = 0
        except SubmitError as exc:
            errors += 1
            if errors > MAX_POLL_ERRORS:
                raise SubmitError(
                    f"{exc} ({errors} times in a row; stopped following the run, which goes on: {result['run_url']})",
                    result,
                ) from None
            print(f"  KFP API error while following the run, retrying: {exc}", flush=True)
            time.sleep(min(60.0, poll_s * 2**errors))
            continue
        _update_result(result, run)
        elapsed = time.monotonic() - start
        state = result["state"]
        if state != last_state or time.monotonic() - last_print >= HEARTBEAT_S:
            done = sum(t["state"] == "SUCCEEDED" for t in result["tasks"])
            tasks = f", {done}/{len(result['tasks'])} tasks succeeded" if result["tasks"] else ""
            print(f"  [{_duration(elapsed)}] run {result['run_name']}: {state}{tasks}", flush=True)
            last_state, last_print = state, time.monotonic()
        if state in TERMINAL_STATES:
            return
        if elapsed >= timeout_s:
            result["timed_out"] = True
            return
        time.sleep(poll_s)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


# --------------------------------------------------------------------------- summary


def summary_markdown(result: dict[str, Any]) -> str:
    """Markdown summary of a submitted run: state, URL, pipeline version, tasks, error."""
    state = result.get("state") or "UNKNOWN"
    icon = {"SUCCEEDED": "✅", "FAILED": "❌", "CANCELED": "⛔"}.get(state, "⏳")
    lines = [
        f"## {icon} zonda pipeline run `{result.get('run_name')}`: {state}",
        "",
        "| | |",
        "|---|---|",
        f"| state | **{state}**{' (stopped waiting: timeout)' if result.get('timed_out') else ''} |",
        f"| run | [{result.get('run_url')}]({result.get('run_url')}) |",
        f"| params preset | `{result.get('preset')}` |",
        f"| pipeline | `{result.get('pipeline_name')}` version `{result.get('pipeline_version_name')}` |",
        f"| experiment | `{result.get('experiment_name')}` |",
        f"| git commit | `{result.get('git_commit') or 'unknown'}` |",
    ]
    if result.get("report"):
        lines += ["", result["report"].rstrip()]
    if result.get("error"):
        lines += ["", "### Error", "", "```", str(result["error"]).strip(), "```"]
    tasks = result.get("tasks") or []
    if tasks:
        lines += ["", "### Tasks", "", "| task | state | error |", "|---|---|---|"]
        for task in tasks:
            error = task["error"].replace("|", "\\|").replace("\n", " ")[:300]
            lines.append(f"| {task['name']} | {task['state']} | {error} |")
    return "\n".join(lines) + "\n"


def write_summary(path: Path, result: dict[str, Any]) -> Path:
    """Writes :func:`summary_markdown` of ``result`` to ``path``."""
    return write_text_atomic(path, summary_markdown(result))


# --------------------------------------------------------------------------- submit


def submit_package(
    params: Params,
    host: str,
    package: Path,
    *,
    wait: bool,
    summary_path: Path | None = None,
    token: str | None = None,
    timeout_s: int = 86400,
    poll_s: float | None = None,
) -> dict[str, Any]:
    """Submits ``package``, the pipeline compiled for ``params``, to the KFP API at ``host``; see the module docstring.

    Returns the run's record (run_id, run_url, run_name, state, error, tasks,
    pipeline_id, pipeline_version_id/_name, experiment_id, ...). Raises
    :class:`SubmitError` if nothing could be submitted, and with ``wait``
    :class:`RunFailed` (after writing the summary) unless the run succeeded.
    """
    if not host:
        raise SubmitError("no KFP host: set KFP_HOST or runtime.kfp_host")
    refuse_literal_secrets(params)
    host = host.rstrip("/")
    if not host.startswith(("http://", "https://")):
        host = "https://" + host  # as kfp.Client does
    commit = git_commit()
    run_name = run_name_for(params)
    rt = params.runtime
    digest = file_sha256(package)
    try:  # taken now, before anything is created: the snapshot task's cache key follows the source
        arguments = run_arguments(params, run_name)
    except (SourceError, ParamsError) as exc:
        raise SubmitError(f"cannot fingerprint the source before submitting (the snapshot task's input): {exc}") from None
    client, multi_user = _connect(host, token)
    namespace = rt.distributed.namespace if multi_user else None

    pipeline_id, created = _find_or_create_pipeline(
        client, host, rt.pipeline_name, "zonda: GraphCast/AIFS-class weather emulator training pipeline"
    )
    description = f"zonda commit {commit or 'unknown'}; compiled from preset {params.name}; {DIGEST_TAG}{digest}"
    version, uploaded = _find_or_upload_version(
        client, host, pipeline_id, package, digest, version_name(commit), description
    )
    print(
        f"KFP pipeline   {rt.pipeline_name}{' (created)' if created else ''}, "
        f"version {version.display_name} ({'uploaded' if uploaded else 'reused'})",
        flush=True,
    )

    experiment = _call(
        f"get-or-create of experiment {rt.kfp_experiment!r}", host,
        client.create_experiment, name=rt.kfp_experiment, namespace=namespace,
    )
    print(f"KFP experiment {rt.kfp_experiment}", flush=True)

    run = _call(
        f"creation of run {run_name!r}", host, client.run_pipeline,
        experiment_id=experiment.experiment_id, job_name=run_name, params=arguments,
        pipeline_id=pipeline_id, version_id=version.pipeline_version_id, service_account=rt.service_account,
    )
    result: dict[str, Any] = {
        "host": host,
        "run_id": run.run_id,
        "run_url": run_url(host, run.run_id),
        "run_name": run_name,
        "preset": params.name,
        "git_commit": commit,
        "pipeline_id": pipeline_id,
        "pipeline_name": rt.pipeline_name,
        "pipeline_version_id": version.pipeline_version_id,
        "pipeline_version_name": version.display_name,
        "pipeline_version_uploaded": uploaded,
        "experiment_id": experiment.experiment_id,
        "experiment_name": rt.kfp_experiment,
        "service_account": rt.service_account,
        "timed_out": False,
    }
    _update_result(result, run)
    print(f"KFP run        {run_name}: {result['run_url']}", flush=True)

    if wait:
        try:
            _follow(client, host, result, timeout_s, DEFAULT_POLL_S if poll_s is None else poll_s)
        finally:
            if result.get("state") == "SUCCEEDED":
                # torch and the evaluation: not loaded by `make run-pipeline` unless a waited run needs the report
                from zonda.registry.report import pipeline_report

                result["report"] = pipeline_report(params, run_name)
            if summary_path is not None:
                write_summary(summary_path, result)
        if result["state"] != "SUCCEEDED":
            raise RunFailed(_failure_message(result, timeout_s), result)
    elif summary_path is not None:
        write_summary(summary_path, result)
    return result


def _failure_message(result: dict[str, Any], timeout_s: float) -> str:
    if result.get("timed_out"):
        return (
            f"KFP run {result['run_name']} is still {result['state']} after {_duration(timeout_s)} "
            f"(stopped waiting; the run goes on): {result['run_url']}"
        )
    parts = [f"KFP run {result['run_name']} ended {result['state']}"]
    if result.get("error"):
        parts.append(f": {result['error']}")
    failed = [t for t in result.get("tasks", []) if t["state"] == "FAILED"]
    if failed:
        parts.append("; failed tasks: " + ", ".join(f"{t['name']} ({t['error']})" if t["error"] else t["name"] for t in failed))
    parts.append(f" — {result['run_url']}")
    return "".join(parts)


def write_not_submitted(path: Path, params: Params, host: str, error: str) -> Path:
    """Summary for a submission that never started a run (so CI still shows why)."""
    return write_text_atomic(
        path, f"## ❌ zonda pipeline (preset `{params.name}`) was not submitted to {host}\n\n```\n{error.strip()}\n```\n"
    )


# --------------------------------------------------------------------------- compile, submit, CLI


def compile_package(params: Params, path: Path) -> Path:
    """Compiles the pipeline for ``params`` to ``path`` (IR YAML)."""
    return compile_pipeline(params, path)


def refuse_literal_secrets(params: Params) -> None:
    """SubmitError, before anything is compiled or sent, when params hold a credential in clear (KFP keeps a
    run's inputs in clear: UI, compiled IR, stored run), a URL with a password, or a ``${env:NAME}`` reference
    that no task's Secret sets."""
    literal = params.secret_paths()
    if literal:
        raise SubmitError(
            f"{', '.join(literal)}: a credential in clear, which a cluster run would show in the KFP UI, the compiled "
            "pipeline and the run's stored inputs. Put it in a Kubernetes Secret (kubectl create secret generic NAME "
            "--from-literal=KEY=...), map it to a variable of the stage that reads it "
            "(runtime.resources.<stage>.secrets_as_env: [{secret_name: NAME, keys: {KEY: VAR}}]) and write the "
            "field as ${env:VAR} (README: Credentials)"
        )
    in_url = params.url_credential_paths()
    if in_url:
        raise SubmitError(
            f"{', '.join(in_url)}: a URL with a password (user:password@), which a cluster run would show in the KFP "
            "UI and the run's stored inputs. Drop it from the URL and give the storage its credentials from a "
            "Kubernetes Secret mapped to environment variables (runtime.resources.<stage>.secrets_as_env; "
            "README: Credentials)"
        )
    mapped = {var for stage in STAGE_SECTIONS for secret in params.runtime.resources.for_stage(stage).secrets_as_env
              for var in secret.keys.values()}
    unmapped = {path: var for path, var in env_references(params.resolved_dict()).items() if var not in mapped}
    if unmapped:
        raise SubmitError(
            "; ".join(f"{path} is ${{env:{var}}}" for path, var in unmapped.items())
            + ", but no task gets that variable: map a Secret's key to it with runtime.resources.<stage>.secrets_as_env "
            "for the stage that reads the field (README: Credentials)"
        )


def submit(params: Params, host: str, **options: Any) -> dict[str, Any]:
    """Compiles the pipeline for ``params`` and submits it (options: see :func:`submit_package`);
    a credential in clear is refused first (:func:`refuse_literal_secrets`)."""
    refuse_literal_secrets(params)
    with tempfile.TemporaryDirectory(prefix="zonda-kfp-") as tmp:
        package = Path(tmp) / "pipeline.yaml"
        try:
            compile_package(params, package)
        except ValueError as exc:  # e.g. ResourceSpecError: a quantity KFP cannot express
            raise SubmitError(f"cannot compile the pipeline for preset {params.name!r}: {exc}") from None
        return submit_package(params, host, package, **options)


def main_submit(params: Params, host: str, wait: bool, summary: str | os.PathLike[str] | None) -> int:
    """CLI entry: 0 when submitted (and, with ``wait``, succeeded); 1 when the run failed; 2 when not submitted."""
    try:
        submit(params, host, wait=wait, summary_path=Path(summary) if summary else None)
    except RunFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except SubmitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if summary and exc.result is None:
            write_not_submitted(Path(summary), params, host, str(exc))
        return 2
    return 0
