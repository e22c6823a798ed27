"""End-to-end: `make run-pipeline` on params/local.yaml from an empty output root (goal: <= 10 minutes).

Runs the whole six-stage KFP pipeline with the local runner in a subprocess,
in a fresh ``runtime.output_root`` (so the Held-Suarez record is generated
too), and reports wall time per task and in total, plus the verdict against
persistence for the headline variables.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from zonda.evaluation.run import read_headline
from zonda.provenance import read_manifest

REPO = Path(__file__).resolve().parents[1]
_TASK = re.compile(r"^(\d\d:\d\d:\d\d\.\d+) - INFO - (Executing task|Task) .*?'([\w-]+)'")


def _task_seconds(log: str) -> dict[str, float]:
    started: dict[str, datetime] = {}
    out: dict[str, float] = {}
    for line in log.splitlines():
        m = _TASK.match(re.sub(r"\x1b\[[0-9;]*m", "", line))
        if not m:
            continue
        stamp, kind, task = datetime.strptime(m.group(1), "%H:%M:%S.%f"), m.group(2), m.group(3)
        if kind == "Executing task":
            started[task] = stamp
        elif task in started and "finished" in line:
            out[task] = round((stamp - started.pop(task)).total_seconds(), 1)
    return out


def measure(params: str = "params/local.yaml") -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("MLFLOW_TRACKING_URI", None)
        env.pop("KFP_HOST", None)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "pipelines.run", "run", "--params", params, f"runtime.output_root={tmp}"],
            cwd=REPO, env=env, capture_output=True, text=True,
        )
        seconds = time.perf_counter() - t0
        log = proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise RuntimeError(f"pipeline failed (exit {proc.returncode}):\n{log[-4000:]}")
        evaluation = sorted(Path(tmp).glob("kfp/*/evaluate/evaluation/manifest.json"))
        verdict = read_manifest(evaluation[-1].parent)["beats_persistence"] if evaluation else None
        headline = read_headline(evaluation[-1].parent) if evaluation else None
    return {
        "params": params,
        "total_seconds": round(seconds, 1),
        "goal_seconds": 600,
        "task_seconds": _task_seconds(log),
        "beats_persistence_at_every_lead": verdict,
        "headline_scores": headline,  # model / persistence / climatology: the scorecard's numbers
    }


if __name__ == "__main__":
    print(json.dumps(measure(*sys.argv[1:]), indent=2))
