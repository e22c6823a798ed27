"""CI check: the pipeline run in containers matches the run in the venv, and registered its model.

    python .ci/check_container_run.py --venv OUTPUT_ROOT --containers OUTPUT_ROOT [--containers-remote DIR]

Each output root holds one local run of params/ci.yaml (``runtime.output_root``). The snapshot ID,
statistics hash and graph hash are content hashes, so the same code and params must give the same
values whatever runs the tasks; the container run's registration manifest must name a model version
that its MLflow registry (the sqlite store under its output root) holds, and (``--containers-remote``) the
snapshot task in its container must have pushed the snapshot to that DVC remote. Exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# (KFP task, output artifact, manifest key) of the content hashes both runs must agree on
HASHES = (
    ("snapshot", "snapshot", "snapshot_id"),
    ("statistics", "statistics", "statistics_hash"),
    ("graph", "graph", "graph_hash"),
)


def run_dir(output_root: Path) -> Path:
    """The one KFP local run under ``output_root``."""
    runs = sorted(p for p in (output_root / "kfp").iterdir() if p.is_dir())
    if len(runs) != 1:
        raise SystemExit(f"{output_root}/kfp holds {len(runs)} runs, expected exactly one")
    return runs[0]


def manifest(run: Path, task: str, artifact: str) -> dict:
    path = run / task / artifact / "manifest.json"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: task {task} wrote no {artifact}")
    return json.loads(path.read_text())


def registered_version(output_root: Path, run: Path) -> str:
    """The model version the run registered, checked against its MLflow registry: logged by the register
    stage's run, which nests under the same pipeline run as the training run that made the model."""
    from mlflow import MlflowClient

    reg = manifest(run, "register", "registration")
    client = MlflowClient(tracking_uri=f"sqlite:///{output_root / 'mlflow.db'}")
    version = client.get_model_version(reg["name"], str(reg["version"]))
    if version.run_id != reg["mlflow_run_id"]:
        raise SystemExit(f"{reg['name']} version {reg['version']} comes from run {version.run_id}, not {reg['mlflow_run_id']}")
    model = manifest(run, "train", "model")
    parent = {
        stage: client.get_run(run_id).data.tags.get("mlflow.parentRunId")
        for stage, run_id in (("register", version.run_id), ("train", model["mlflow_run_id"]))
    }
    if parent["register"] is None or parent["register"] != parent["train"]:
        raise SystemExit(f"the register and train runs are not nested under one pipeline run: {parent}")
    return f"{reg['name']} version {version.version} ({reg['decision']}), pipeline run {parent['train']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, required=True)
    parser.add_argument("--containers", type=Path, required=True)
    parser.add_argument("--containers-remote", type=Path, default=None, help="the container run's runtime.dvc_remote")
    args = parser.parse_args(argv)
    venv, containers = run_dir(args.venv), run_dir(args.containers)
    failed = False
    for task, artifact, key in HASHES:
        ours, theirs = manifest(venv, task, artifact)[key], manifest(containers, task, artifact)[key]
        same = ours == theirs
        failed |= not same
        print(f"{key:<16} {'same' if same else 'DIFFERENT'}  venv {ours}  containers {theirs}")
    print(f"registered       {registered_version(args.containers, containers)} by the container run")
    if args.containers_remote is not None:
        from zonda.snapshot_store import lookup

        snapshot_id = manifest(containers, "snapshot", "snapshot")["snapshot_id"]
        pushed = lookup(snapshot_id, str(args.containers_remote))  # SnapshotStoreError if it is not there
        print(f"pushed           {snapshot_id} to {args.containers_remote} (directory md5 {pushed.get('md5')})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
