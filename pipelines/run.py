"""Compile, submit or run the zonda pipeline.

    python -m pipelines.run compile --params params/aifs.yaml --out artifacts/pipeline.yaml
    python -m pipelines.run run --params params/local.yaml [key=value ...]

``run`` submits to the KFP API at ``KFP_HOST`` (or ``runtime.kfp_host``) when
one is configured, and otherwise runs the same pipeline in this process with
the KFP local runner: ``--runner subprocess`` (the default,
``SubprocessRunner(use_venv=False)``: every task runs in this Python
environment, no network needed) or ``--runner docker`` (every task in its image,
``runtime.images.<role>``, through a Docker API: see :mod:`pipelines.containers`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import warnings
from pathlib import Path

from kfp import local

from pipelines.console import runner_output
from pipelines.containers import ContainerRunError, docker_runner, hand_over
from pipelines.containers import preflight as container_preflight
from pipelines.docker_tasks import true_exit_status
from pipelines.submit import main_submit, run_name_for
from pipelines.zonda_pipeline import build_pipeline, compile_pipeline, run_arguments
from zonda import snapshot_store, stage_cache, tracking
from zonda.console import VERBOSE_ENV, console_line, verbose
from zonda.data import dvc_source
from zonda.data.fingerprint import source_fingerprint
from zonda.data.sources import SourceError, preflight
from zonda.params import ParamsError, Params, load_params, params_from_json, secret_env_name
from zonda.provenance import read_manifest
from zonda.snapshot_store import SnapshotStoreError

DEFAULT_PARAMS = "local"  # a preset name (params/local.yaml), found from any directory
RUNNERS = ("subprocess", "docker")

# Each stage's output artifact, as the components name them.
OUTPUT_NAMES = {
    "snapshot": "snapshot", "statistics": "statistics", "graph": "graph", "train": "model", "evaluate": "evaluation",
    "register": "registration",
}


def resolved_for_run(params: Params, local: bool) -> Params:
    """For local runs, output_root becomes absolute so every task (any cwd) finds the same store."""
    if not local:
        return params
    data = params.resolved_dict()
    data["runtime"]["output_root"] = str(Path(params.runtime.output_root).resolve())
    return Params.model_validate(data)


def pin_run_inputs(params: Params, *, cluster: bool) -> Params:
    """What must not move during a run, resolved once at its start: a dvc source's ``rev`` (to
    ``data.source.commit``) and ``runtime.dvc_remote`` (a remote name to its URL).

    For a ``cluster`` run, a local path there (the repo of a dvc source, the DVC
    remote) must lie on a PVC the snapshot task mounts, or its pods could not
    reach it; SourceError / SnapshotStoreError otherwise, naming the field.
    """
    params = snapshot_store.pin(dvc_source.pin(params))
    if not cluster:
        return params
    mounts = [m.mount_path.rstrip("/") + "/" for m in params.runtime.resources.snapshot.pvc_mounts]
    local = {"runtime.dvc_remote": params.runtime.dvc_remote}
    if params.data.source.kind == "dvc":
        local["data.source.repo"] = params.data.source.repo
    for field, value in local.items():
        if value and "://" not in value and not any((value.rstrip("/") + "/").startswith(m) for m in mounts):
            error = SourceError if field.startswith("data.") else snapshot_store.SnapshotStoreError
            raise error(
                f"{field} {value!r} is a local path, which the cluster's snapshot task cannot reach: use a URL "
                f"(s3://, gs://, ssh://, https://) or a directory on a PVC it mounts "
                f"(runtime.resources.snapshot.pvc_mounts: {', '.join(mounts) or 'none'})"
            )
    return params


def run_local(params: Params, *, runner: str = "subprocess", container_user: str = "image") -> dict:
    """Runs the pipeline with the KFP local runner; returns the run name, pipeline root and outputs.

    ``runner`` is ``subprocess`` (tasks in this Python environment) or ``docker`` (tasks in their
    images, as ``container_user``: ``image`` or ``host``; see :mod:`pipelines.containers`).

    When every stage's output for these params already exists (:func:`zonda.stage_cache.locate`),
    no task is started: each stage is reported (and recorded in MLflow) as reused.

    A credential in clear in ``params`` becomes a ``${env:ZONDA_SECRET_...}`` reference in every pipeline
    input, its value a variable of this process's environment (inherited by the tasks, passed to containers).

    The runner's whole output goes to ``<pipeline root>/<run name>.log`` and the console shows the
    tasks' console lines only (:mod:`pipelines.console`), unless ``ZONDA_VERBOSE=1`` (``-v``).
    """
    if runner not in RUNNERS:
        raise ValueError(f"runner must be one of {', '.join(RUNNERS)}, not {runner!r}")
    params = pin_run_inputs(params, cluster=False)  # a no-op when main() pinned them already
    # A credential in clear goes to the tasks in their environment, never in a pipeline input.
    params, secret_env = params.with_secret_references()
    os.environ.update(secret_env)
    try:
        return _run_local(params, runner=runner, container_user=container_user)
    finally:
        for variable in secret_env:
            os.environ.pop(variable, None)


def _run_local(params: Params, *, runner: str, container_user: str) -> dict:
    """:func:`run_local` once its inputs are pinned and its credentials are references."""
    preflight(params.data)  # fail in seconds, before any run or artifact exists
    fingerprint = source_fingerprint(params.data)  # once: the snapshot's key here, the snapshot task's input there
    root = Path(params.runtime.output_root).resolve() / "kfp"
    if runner == "docker":
        # the task user makes the pipeline root, so that the tasks can write it
        container_preflight(params, pipeline_root=root, user=container_user)
    name = run_name_for(params)
    log_path = root / f"{name}.log"
    print(f"pipeline {name}: {runner} runner, pipeline root {root}" + ("" if verbose() else f", log {log_path}"), flush=True)
    with runner_output(log_path, verbose=verbose()):
        # The pipeline's MLflow run exists before the tasks start, so every stage's run nests under it.
        run_id = tracking.start_pipeline_run(params, run_name=name, tags={"zonda.orchestrator": "kfp-local"})
        os.environ[tracking.PARENT_RUN_ENV] = run_id
        try:
            found = stage_cache.locate(params, fingerprint=fingerprint) if stage_cache.reuse_enabled() else {}
            if set(found) == set(stage_cache.UPSTREAM):
                _record_all_reused(params, found)
            else:
                arguments = run_arguments(params, name, fingerprint=fingerprint)
                _run_kfp_local(params, root, arguments, runner=runner, container_user=container_user)
                found = {}
        except BaseException:
            tracking.end_pipeline_run(params, run_id, failed=True)
            raise
        finally:
            os.environ.pop(tracking.PARENT_RUN_ENV, None)
        tracking.end_pipeline_run(params, run_id, failed=False)
    found = found or stage_cache.locate(params, fingerprint=fingerprint)  # what the tasks wrote or reused
    outputs = {OUTPUT_NAMES[stage]: str(path) for stage, path in found.items()}
    return {"run_name": name, "pipeline_root": str(root), "log": str(log_path), "outputs": {**outputs, "mlflow_run_id": run_id}}


def _run_kfp_local(params: Params, root: Path, arguments: dict[str, str], *, runner: str, container_user: str) -> None:
    """The pipeline's tasks in the KFP local runner, given ``arguments`` (:func:`run_arguments`); each stage
    still reuses what it can.

    The docker runner is made here, once the pipeline's MLflow run id is in the environment it passes on.
    """
    if runner == "docker":
        # the pipeline's MLflow store, made by this process, is written by every task as the task user
        handed = hand_over(params, user=container_user)
        if handed:
            print(f"gave {len(handed)} paths under {params.runtime.output_root} (the MLflow store) to the tasks' user", flush=True)
        task_runner = docker_runner(params, user=container_user)
    else:
        root.mkdir(parents=True, exist_ok=True)
        # Tasks run `python -m kfp.dsl.executor_main` with this interpreter.
        os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        task_runner = local.SubprocessRunner(use_venv=False)
    warnings.filterwarnings("ignore", message=".*non-Python base image.*")
    local.init(runner=task_runner, pipeline_root=str(root), raise_on_error=True)
    # A task container that exits non-zero fails the run (KFP 2.17 alone can report it as SUCCESS).
    with true_exit_status() if runner == "docker" else contextlib.nullcontext():
        build_pipeline(params)(**arguments)


def _record_all_reused(params: Params, found: dict[str, Path]) -> None:
    """Says, and records in MLflow, that every stage reused its earlier output (no task runs)."""
    for stage, path in found.items():
        manifest = read_manifest(path) or {}
        print(console_line(f"{stage}: reused {stage_cache.output_id(stage, manifest)} from {path}"), flush=True)
        stage_cache.record_reuse(params_from_json(json.dumps(params.for_stage(stage))), stage, manifest, path, path, mlflow_run_id=None)


def print_local_summary(params: Params, result: dict) -> None:
    outputs = dict(result["outputs"])
    run_id = outputs.pop("mlflow_run_id", None)
    print("\n" + "=" * 78)
    print(f"zonda pipeline run {result['run_name']} finished")
    print(f"  KFP local pipeline root: {result['pipeline_root']}")
    print(f"  runner log   {result['log']}  (each stage's log: <its output>.log)")
    order = ["snapshot", "statistics", "graph", "model", "evaluation", "registration"]
    for name in sorted(outputs, key=lambda n: order.index(n) if n in order else len(order)):
        print(f"  {name:<12} {outputs[name]}")
    uri = tracking.tracking_uri(params)
    print(f"  MLflow run   {run_id}  (tracking URI {uri})")
    print(f"  browse it:   mlflow ui --backend-store-uri {uri}")
    evaluation = outputs.get("evaluation")
    if evaluation and (Path(evaluation) / "summary.md").is_file():
        print("-" * 78)
        print((Path(evaluation) / "summary.md").read_text().rstrip())
    registration = outputs.get("registration")
    if registration and (Path(registration) / "manifest.json").is_file():
        reg = json.loads((Path(registration) / "manifest.json").read_text())
        print("-" * 78)
        print(f"registered {reg['name']} version {reg['version']}, aliases {', '.join(reg.get('aliases') or [])}")
        print(f"promotion: {reg['decision']}: {reg['reason']}")
        print(f"champion: {reg['name']} version {reg.get('champion')}  (models:/{reg['name']}@champion)")
    print("=" * 78)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.run", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("compile", "run"):
        p = sub.add_parser(name)
        p.add_argument(
            "-v", "--verbose", action="store_true",
            help="the whole output of the runner and the tasks on the console (else in the logs; ZONDA_VERBOSE=1)",
        )
        p.add_argument("--params", default=os.environ.get("PARAMS", DEFAULT_PARAMS))
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
        if name == "compile":
            p.add_argument("--out", type=Path, default=None)
        else:
            p.add_argument(
                "--wait", action="store_true", help="with KFP_HOST: follow the run to its end; exit 1 unless it succeeded"
            )
            p.add_argument(
                "--summary", type=Path, default=None, metavar="PATH", help="write a Markdown summary of the run to PATH"
            )
            p.add_argument(
                "--runner", choices=RUNNERS, default="subprocess",
                help="local runs: tasks in this Python environment (subprocess) or in their images (docker)",
            )
            p.add_argument(
                "--container-user", choices=("image", "host"), default="image",
                help="--runner docker: tasks run as the image's user (uid 10001, as on a cluster) or as you",
            )
    args = parser.parse_args(argv)
    if args.verbose:
        os.environ[VERBOSE_ENV] = "1"  # the tasks (child processes) inherit it
    try:
        params = load_params(args.params, args.overrides)
    except ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "compile":
        out = args.out or Path("artifacts") / f"pipeline-{params.name}.yaml"
        compile_pipeline(params, out)
        print(f"compiled {args.params} -> {out}")
        for path in params.secret_paths():
            print(
                f"warning: {path} is a credential in clear; the compiled pipeline reads it from the tasks' "
                f"environment variable {secret_env_name(path)} (README: Credentials)",
                file=sys.stderr,
            )
        return 0
    host = os.environ.get("KFP_HOST") or params.runtime.kfp_host
    try:
        params = pin_run_inputs(params, cluster=bool(host))
    except (SourceError, SnapshotStoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if host:
        return main_submit(params, host, wait=args.wait, summary=args.summary)
    params = resolved_for_run(params, local=True)
    try:
        result = run_local(params, runner=args.runner, container_user=args.container_user)
    except (SourceError, ContainerRunError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_local_summary(params, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
