"""Resuming from a checkpoint gives the run that was never interrupted."""

from __future__ import annotations

import os
import random
import signal

import lightning as L
import numpy as np
import pytest
import torch

from tests.support import training_builders as support
from zonda.training.callbacks import TrainingHistory
from zonda.training.checkpoints import load_training_checkpoint

HISTORY_STATE = TrainingHistory(global_batch_size=1).state_key  # its entry in a checkpoint's callbacks


class Preempted(RuntimeError):
    pass


class PreemptAt(L.Callback):
    """Kills the run when it is about to do optimisation step ``step`` (0-based global step)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise Preempted(f"preempted before step {self.step}")


class SigtermAt(L.Callback):
    """Sends this process SIGTERM (a Kubernetes eviction) during optimisation step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


class DrawRandom(L.Callback):
    """Draws from every global RNG at each step: a resumed run must draw the same numbers."""

    def __init__(self) -> None:
        self.draws: dict[int, tuple[float, float, float]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.draws[trainer.global_step] = (float(torch.rand(())), float(np.random.rand()), random.random())


class RecordBatches(L.Callback):
    def __init__(self) -> None:
        self.times: dict[int, list[int]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.times[trainer.global_step] = batch["time"].tolist()


# 3 batches per epoch (limit), 2 epochs, rollout 1 then 2, last.ckpt every step, best-1 by val/loss.
SETTINGS = (*support.MULTI_STEP, "training.limit_train_batches=3", "training.limit_val_batches=1",
            "training.checkpoint.every_n_train_steps=1", "training.checkpoint.top_k=1")


@pytest.fixture(scope="module")
def uninterrupted():
    out = support.new_dir("uninterrupted")
    draws, batches = DrawRandom(), RecordBatches()
    support.run_training(out, *SETTINGS, callbacks=[draws, batches])
    return out, draws, batches


@pytest.mark.parametrize(
    "stop, how", [(2, "crash"), (3, "crash"), (1, "sigterm")], ids=["mid-epoch", "epoch-end", "sigterm"]
)
def test_resume_gives_the_uninterrupted_run(uninterrupted, stop, how):
    ref_out, ref_draws, ref_batches = uninterrupted
    out = support.new_dir(f"interrupted-{stop}")
    if how == "crash":  # the periodic last.ckpt (every step here) is what survives
        with pytest.raises(Preempted):
            support.run_training(out, *SETTINGS, callbacks=[DrawRandom(), PreemptAt(stop)])
    else:  # SIGTERM after step 1: last.ckpt is written on the way out, whatever the periodic schedule
        with pytest.raises(SystemExit):
            support.run_training(out, *SETTINGS, "training.checkpoint.every_n_train_steps=100",
                                 callbacks=[DrawRandom(), SigtermAt(stop - 1)])
    last = out / "checkpoints" / "last.ckpt"
    assert support.checkpoint_weights(last) is not None and not (out / "manifest.json").exists()
    ckpt = load_training_checkpoint(last)
    saved_vals = [v["global_step"] for v in ckpt["callbacks"][HISTORY_STATE]["validations"]]
    if stop == 3:  # the epoch-end case: last.ckpt (step 3) was written before the epoch's validation at step 3 ran
        assert ckpt["global_step"] == 3 and 3 not in saved_vals

    assert support.checkpoint_weights(last) is not None  # noqa: F811 - loads (digest, weights_only)
    draws, batches = DrawRandom(), RecordBatches()
    manifest = support.run_training(out, *SETTINGS, f"training.resume_from={last}", callbacks=[draws, batches])

    assert manifest["global_step"] == 6
    # Same data order after the interruption ...
    assert batches.times == {k: v for k, v in ref_batches.times.items() if k >= stop}
    # ... same random numbers (RNG states restored) ...
    assert draws.draws == {k: v for k, v in ref_draws.draws.items() if k >= stop}
    # ... the same losses, in a history of the whole run (the steps before the interruption came with
    # last.ckpt), the same validations, and the same final and best weights.
    ref_hist, hist = support.history(ref_out), support.history(out)
    ref_losses = [(s["global_step"], s["loss"], s["lr"], s["rollout"]) for s in ref_hist["steps"]]
    assert [(s["global_step"], s["loss"], s["lr"], s["rollout"]) for s in hist["steps"]] == ref_losses
    # Validations: the uninterrupted run's, each once, with equal scores: those before last.ckpt come with it,
    # one that ran after last.ckpt was written and before the crash (the epoch-end case) from the sidecar
    # beside it (Lightning does not repeat it), later ones are the resumed run's own.
    ref_vals = [(v["global_step"], v["epoch"], v["val/loss"]) for v in ref_hist["validations"]]
    vals = [(v["global_step"], v["epoch"], v["val/loss"]) for v in hist["validations"]]
    assert vals == ref_vals and len(set(vals)) == len(vals)
    final_ref = support.checkpoint_weights(ref_out / "checkpoints" / "last.ckpt")
    final = support.checkpoint_weights(last)
    assert final.keys() == final_ref.keys()
    for k in final_ref:
        torch.testing.assert_close(final[k], final_ref[k], rtol=0, atol=0, msg=k)
    best_ref, best = support.weights(ref_out), support.weights(out)
    for k in best_ref:
        torch.testing.assert_close(best[k], best_ref[k], rtol=0, atol=0, msg=k)


@pytest.mark.parametrize("ending", ["last_epoch", "max_steps"])
def test_last_checkpoint_holds_the_final_state_when_training_ends_between_periodic_saves(uninterrupted, ending):
    """last.ckpt every 4 steps, but the run ends at step 6 (2 epochs of 3) or at max_steps=5."""
    ref_out, _, _ = uninterrupted
    out = support.new_dir(f"final-{ending}")
    extra = ["training.max_steps=5"] if ending == "max_steps" else []
    manifest = support.run_training(out, *SETTINGS, "training.checkpoint.every_n_train_steps=4", *extra)
    final_step = 5 if ending == "max_steps" else 6
    last = load_training_checkpoint(out / "checkpoints" / "last.ckpt")
    assert manifest["global_step"] == last["global_step"] == final_step
    if ending == "last_epoch":  # the very state the uninterrupted run (saving every step) ended with
        final_ref = support.checkpoint_weights(ref_out / "checkpoints" / "last.ckpt")
        for k, v in final_ref.items():
            torch.testing.assert_close(last["state_dict"][k], v, rtol=0, atol=0, msg=k)
