"""Process faults: crashes, kill -9 and resumes of a training run.

Each case interrupts a deterministic CPU training run of the debug preset and
checks that what survives (``last.ckpt``, no ``manifest.json``) resumes to the
run that was never interrupted, bit for bit.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch

import test_training_support as support


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with support.one_thread():
        yield


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
