"""Data-parallel training (2 CPU processes, gloo) follows the single-process loss curve."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tests.support import training_builders as support
from tests.support.repo import REPO

# 14 samples: 3 global batches of 4 in epoch 0 (rollout 1), 3 in epoch 1 (rollout 2); validation each epoch.
SETTINGS = (*support.MULTI_STEP, "training.accelerator=cpu", "training.checkpoint.top_k=0")


def test_ddp_with_global_batch_b_equals_one_process_with_batch_b():
    single_out = support.new_dir("single")
    support.run_training(single_out, *SETTINGS, "training.batch_size=4")

    ddp_out = support.new_dir("ddp")
    a = support.artifacts()
    cmd = [
        sys.executable, "-m", "zonda.cli", "train",
        "--params", str(REPO / "params" / "debug.yaml"),
        "--snapshot", str(a["snapshot"]), "--statistics", str(a["statistics"]), "--graph", str(a["graph"]),
        "--out", str(ddp_out), "--no-mlflow", "--quiet",
        *support.base_overrides(), *SETTINGS,
        "training.batch_size=2", "training.devices=2", "training.strategy=ddp",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    single, ddp = support.history(single_out), support.history(ddp_out)
    assert len(single["steps"]) == len(ddp["steps"]) == 6
    assert [s["rollout"] for s in ddp["steps"]] == [1, 1, 1, 2, 2, 2]
    for s, d in zip(single["steps"], ddp["steps"]):
        assert (d["global_step"], d["epoch"], d["lr"]) == (s["global_step"], s["epoch"], s["lr"])
        assert d["loss"] == pytest.approx(s["loss"], rel=1e-5), f"step {s['global_step']}"
    val_single = [v["val/loss"] for v in single["validations"]]
    val_ddp = [v["val/loss"] for v in ddp["validations"]]
    assert len(val_single) == 2 and val_ddp == pytest.approx(val_single, rel=1e-5)

    w_single = support.checkpoint_weights(single_out / "checkpoints" / "last.ckpt")
    w_ddp = support.checkpoint_weights(ddp_out / "checkpoints" / "last.ckpt")
    assert w_single.keys() == w_ddp.keys()
    for k in w_single:
        torch.testing.assert_close(w_ddp[k], w_single[k], rtol=1e-4, atol=1e-6, msg=k)
