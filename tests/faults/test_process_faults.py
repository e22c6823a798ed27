"""Process faults: crashes, kill -9 and resumes of a training run.

Each case interrupts a deterministic CPU training run of the debug preset and
checks that what survives (``last.ckpt``, no ``manifest.json``) resumes to the
run that was never interrupted, bit for bit.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from tests.support import registry_builders as rf
from tests.support import training_builders as support
from tests.support.model_id import content_hash
from tests.support.repo import REPO
from zonda import tracking
from zonda.models.saved import load_weights
from zonda.params import load_params
from zonda.registry.register import TAG_MODEL_ID
from zonda.training.train import train


class CrashAfterTraining(RuntimeError):
    pass


class CrashAtTrainEnd(L.Callback):
    """Dies after the final checkpoint is written and before any output (a crash before the manifest)."""

    def on_train_end(self, trainer, pl_module):
        raise CrashAfterTraining("killed between the final checkpoint and the manifest")


# 3 batches per epoch, 2 epochs, rollout 1 then 2, last.ckpt every 2 steps, best-1 by val/loss, budget 5 steps.
MAX_STEPS = 5
SETTINGS = (*support.MULTI_STEP, "training.limit_train_batches=3", "training.limit_val_batches=1",
            "training.checkpoint.every_n_train_steps=2", "training.checkpoint.top_k=1", f"training.max_steps={MAX_STEPS}")


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


@pytest.fixture(scope="module")
def uninterrupted():
    out = support.new_dir("max-steps-uninterrupted")
    manifest = support.run_training(out, *SETTINGS)
    return out, manifest


def test_resume_from_the_checkpoint_written_at_max_steps_trains_no_further(uninterrupted):
    ref_out, ref_manifest = uninterrupted
    out = support.new_dir("max-steps-crashed")
    with pytest.raises(CrashAfterTraining):
        support.run_training(out, *SETTINGS, callbacks=[CrashAtTrainEnd()])
    last = out / "checkpoints" / "last.ckpt"
    assert not (out / "manifest.json").exists()
    assert support.checkpoint_weights(last) is not None

    manifest = support.run_training(out, *SETTINGS, f"training.resume_from={last}")

    assert ref_manifest["global_step"] == manifest["global_step"] == MAX_STEPS
    assert_bitwise_equal(support.checkpoint_weights(last), support.checkpoint_weights(ref_out / "checkpoints" / "last.ckpt"))
    assert_bitwise_equal(support.weights(out), support.weights(ref_out))


# ------------------------------------------------------------ a retried task


@pytest.mark.faults
def test_registering_the_same_model_again_returns_its_version(tmp_path):
    """A retried or re-run register task (3 times, one model) makes one version; another model makes a second."""
    p = rf.params("registry.model_name=zonda-retried", store=rf.new_store(tmp_path / "store"))
    with rf.preserved_tracking_uri():
        results = [rf.register(p, {rf.METRIC: 100.0}) for _ in range(3)]
        other = rf.register(p, {rf.METRIC: 120.0}, seed=1)
        client = rf_client(p)
        versions = client.search_model_versions("name = 'zonda-retried'")
    assert [r["version"] for r in results] == ["1", "1", "1"] and other["version"] == "2"
    assert sorted(str(v.version) for v in versions) == ["1", "2"]
    assert results[0]["decision"] == "promoted" and results[1]["decision"] == results[2]["decision"] == "unchanged"
    # (whether the other model wins is the promotion gate's business: it re-scores the champion on the
    # challenger's per-init data, so the stored 120 vs 100 does not decide it)
    assert {r["champion"] for r in results} == {"1"} and other["decision"] in ("promoted", "rejected")
    # The key is the content of the registered weights, hashed independently here.
    tags = {str(v.version): v.tags for v in versions}
    assert tags["1"][TAG_MODEL_ID] == content_hash(load_weights(rf.model_dir(0) / "weights.safetensors"))
    assert tags["2"][TAG_MODEL_ID] == content_hash(load_weights(rf.model_dir(1) / "weights.safetensors"))


def rf_client(p):
    import mlflow

    tracking.configure(p)
    return mlflow.MlflowClient()


# ------------------------------------------------------------------ kill -9

KILL_SETTINGS = (*support.MULTI_STEP, "training.limit_train_batches=3", "training.limit_val_batches=1",
                 "training.checkpoint.every_n_train_steps=1", "training.checkpoint.top_k=1")
KILL_STEPS = 6  # 2 epochs of 3 batches


def kill_points(seed: int = 1717) -> list[tuple[str, int]]:
    """10 seeded points after the first checkpoint: 3 at step boundaries, 3 with a checkpoint file written but not
    in place, 3 with its sidecar replaced but the file not renamed, and right after the final checkpoint."""
    rng = random.Random(seed)
    boundaries = [("batch_start", k) for k in range(2, KILL_STEPS)] + [("batch_end", k) for k in range(1, KILL_STEPS + 1)]
    saves = range(2, KILL_STEPS + 1)  # the n-th checkpoint save (last.ckpt every step, best-*.ckpt after validations)
    return (rng.sample(boundaries, 3) + [("ckpt_written", n) for n in rng.sample(saves, 3)]
            + [("sidecar_written", n) for n in rng.sample(saves, 3)] + [("train_end", 0)])


@pytest.fixture(scope="module")
def kill_reference():
    params_file = support.new_dir("kill-params") / "params.yaml"
    params_file.write_text(support.params(*KILL_SETTINGS).to_yaml())
    a = support.artifacts()
    out = support.new_dir("kill-reference")
    train(load_params(params_file), a["snapshot"], a["statistics"], a["graph"], out, progress=False, track=False)
    return params_file, out


@pytest.mark.faults
@pytest.mark.parametrize("event, n", kill_points(), ids=[f"{e}-{n}" for e, n in kill_points()])
def test_kill_9_then_resume_gives_the_uninterrupted_weights(kill_reference, event, n):
    params_file, ref_out = kill_reference
    a = support.artifacts()
    out = support.new_dir(f"killed-{event}-{n}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    driver = Path(__file__).with_name("kill_driver.py")
    child = subprocess.run(
        [sys.executable, str(driver), str(params_file), str(a["snapshot"]), str(a["statistics"]), str(a["graph"]),
         str(out), event, str(n)], env=env, capture_output=True, text=True,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-3000:]
    last = out / "checkpoints" / "last.ckpt"
    assert last.is_file() and not (out / "manifest.json").exists()

    manifest = train(load_params(params_file, [f"training.resume_from={last}"]), a["snapshot"], a["statistics"],
                     a["graph"], out, progress=False, track=False)

    assert manifest["global_step"] == KILL_STEPS
    assert_bitwise_equal(support.checkpoint_weights(last), support.checkpoint_weights(ref_out / "checkpoints" / "last.ckpt"))
    assert_bitwise_equal(support.weights(out), support.weights(ref_out))
    assert [s["loss"] for s in support.history(out)["steps"]] == [s["loss"] for s in support.history(ref_out)["steps"]]
    # every validation of the uninterrupted run once, equal: one after the last checkpoint comes from its sidecar
    vals = [(v["global_step"], v["epoch"], v["val/loss"]) for v in support.history(out)["validations"]]
    assert vals == [(v["global_step"], v["epoch"], v["val/loss"]) for v in support.history(ref_out)["validations"]]
    assert not list((out / "checkpoints").glob(".*.tmp-*"))  # a killed write's temporary file is cleaned
