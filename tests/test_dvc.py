"""`dvc repro` reproduces the stages of dvc.yaml in a fresh git repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.repo import REPO

BIN = Path(sys.executable).parent


def _run(cmd: list[str], cwd: Path, env: dict) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout + out.stderr


@pytest.fixture
def dvc_repo(tmp_path: Path, shared_output_root: Path) -> tuple[Path, dict]:
    repo = tmp_path / "repo"
    (repo / "params").mkdir(parents=True)
    (repo / ".dvc").mkdir()
    shutil.copy(REPO / "dvc.yaml", repo / "dvc.yaml")
    shutil.copy(REPO / ".dvc" / "config", repo / ".dvc" / "config")
    shutil.copytree(REPO / "src" / "zonda", repo / "src" / "zonda", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((REPO / "params" / "ci.yaml").read_text())
    params.setdefault("runtime", {}).update(
        {"output_root": str(shared_output_root), "mlflow_tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    )
    (repo / "params" / "local.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    env.pop("MLFLOW_TRACKING_URI", None)
    _run(["git", "init", "-q"], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "init"], repo, env)
    return repo, env


def test_dvc_repro_reproduces_every_stage(dvc_repo) -> None:
    repo, env = dvc_repo
    dvc = str(BIN / "dvc")
    out = _run([dvc, "repro"], repo, env)
    stages = ("snapshot", "statistics", "graph", "train", "evaluate", "register")
    for stage in stages:
        assert f"Running stage '{stage}'" in out
    assert (repo / "data" / "snapshot" / "data.zarr" / "zarr.json").is_file()
    assert (repo / "data" / "statistics" / "statistics.nc").is_file()
    assert (repo / "data" / "graph" / "graph.safetensors").is_file()
    assert (repo / "data" / "model" / "weights.safetensors").is_file()
    assert (repo / "data" / "evaluation" / "summary.md").is_file()
    assert (repo / "data" / "registration" / "manifest.json").is_file()
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(stages)
    assert "data" in lock["stages"]["snapshot"]["params"]["params/local.yaml"]

    again = _run([dvc, "repro"], repo, env)
    assert "Running stage" not in again  # nothing changed: nothing re-runs
    assert "up to date" in _run([dvc, "status"], repo, env)

    # the declared metrics are the evaluation's headline scores, the plot its error growth per lead
    metrics = json.loads(_run([dvc, "metrics", "show", "--json"], repo, env).splitlines()[-1])
    (shown,) = [entry["data"]["data/evaluation/headline.json"]["data"] for entry in metrics.values()]
    assert shown == json.loads((repo / "data" / "evaluation" / "headline.json").read_text())
    plots = _run([dvc, "plots", "show", "--json"], repo, env)
    assert "error_growth" in plots and "lead_hours" in plots

    _run([dvc, "push"], repo, env)
    remote = repo / ".dvc-remote"
    assert remote.is_dir() and any(p.is_file() for p in remote.rglob("*"))

    params = yaml.safe_load((repo / "params" / "local.yaml").read_text())
    params["evaluation"]["init_every_hours"] = 48
    (repo / "params" / "local.yaml").write_text(yaml.safe_dump(params))
    changed = _run([dvc, "repro"], repo, env)
    assert "Running stage 'evaluate'" in changed and "Running stage 'register'" in changed
    for upstream in ("snapshot", "statistics", "graph", "train"):
        assert f"Running stage '{upstream}'" not in changed  # only what depends on the change re-runs
