"""Bad, tampered, wrong-shape and pickled-object checkpoints are refused with the file named."""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning as L
import pytest
import torch
from safetensors.torch import save_file

from tests.support import training_builders as support
from zonda.files import file_sha256
from zonda.models.saved import CheckpointError, load_weights
from zonda.training.checkpoints import digest_path, load_training_checkpoint, save_training_checkpoint


@pytest.fixture(scope="module")
def good() -> Path:
    out, _ = support.tracked_run()
    return out / "checkpoints" / "last.ckpt"


def copy_checkpoint(good: Path, name: str) -> Path:
    target = support.new_dir(name) / good.name
    shutil.copy(good, target)
    shutil.copy(digest_path(good), digest_path(target))
    return target


def test_a_lightning_checkpoint_loads_weights_only(good):
    checkpoint = load_training_checkpoint(good)
    assert checkpoint["zonda"]["channels"][0] == "temperature/500"
    assert checkpoint["optimizer_states"] and checkpoint["lr_schedulers"]
    assert "rng" in checkpoint["zonda"] and checkpoint["global_step"] == 1
    # The file itself is loadable by torch with weights_only=True (no allow-listing needed).
    torch.load(good, weights_only=True)


def test_tampered_bytes_are_refused(good):
    bad = copy_checkpoint(good, "tampered")
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=rf"{bad}: sha256 does not match"):
        load_training_checkpoint(bad)


def test_truncated_file_with_a_fresh_digest_is_refused(good):
    bad = copy_checkpoint(good, "truncated")
    bad.write_bytes(bad.read_bytes()[:1000])
    digest_path(bad).write_text(f"{file_sha256(bad)}  {bad.name}\n")
    with pytest.raises(CheckpointError, match=rf"{bad}: not a readable torch checkpoint"):
        load_training_checkpoint(bad)


def test_missing_digest_is_refused(good):
    bad = copy_checkpoint(good, "nodigest")
    digest_path(bad).unlink()
    with pytest.raises(CheckpointError, match=rf"{bad}: no last.ckpt.sha256"):
        load_training_checkpoint(bad)


class Payload:
    """Unpickling this would run code (it writes a marker file)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickled_objects_are_refused_without_running_them(good):
    bad = copy_checkpoint(good, "pickled")
    marker = bad.parent / "payload-ran"
    checkpoint = torch.load(good, weights_only=True)
    checkpoint["zonda"]["extra"] = Payload(str(marker))
    save_training_checkpoint(checkpoint, bad)  # an attacker can write a matching digest too
    with pytest.raises(CheckpointError, match=rf"{bad}: refused: it holds pickled objects"):
        load_training_checkpoint(bad)
    assert not marker.exists()


def test_a_plain_state_dict_is_not_a_training_checkpoint(good):
    bad = support.new_dir("plain") / "model.ckpt"
    save_training_checkpoint({"state_dict": {"w": torch.zeros(2)}}, bad)
    with pytest.raises(CheckpointError, match=rf"{bad}: not a zonda training checkpoint"):
        load_training_checkpoint(bad)


def test_resume_from_a_checkpoint_of_another_model_names_file_and_tensor(good):
    out = support.new_dir("wrong-shape")
    with pytest.raises(CheckpointError, match=rf"{good}: does not fit the model \(.*wrong shapes"):
        support.run_training(out, "model.hidden_dim=16", f"training.resume_from={good}")
    assert not (out / "manifest.json").exists()


def test_warm_start_checks_the_weights_file(good):
    out, _ = support.tracked_run()
    weights = support.weights(out)
    wrong = {k: torch.zeros(2, 2) if i == 0 else v for i, (k, v) in enumerate(weights.items())}
    bad = support.new_dir("warm") / "weights.safetensors"
    save_file(wrong, str(bad))
    with pytest.raises(CheckpointError, match=rf"{bad}: does not fit the model \(wrong shapes"):
        support.run_training(support.new_dir("warm-run"), f"training.warm_start_from={bad}")
    junk = bad.with_name("junk.safetensors")
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match=rf"{junk}: not a readable safetensors file"):
        load_weights(junk)


def test_warm_start_loads_the_weights(good):
    out, _ = support.tracked_run()
    warm = support.new_dir("warm-ok")
    # The weights the first step starts from are the warm-start weights (a run of no step is refused).
    first = WeightsAtTrainStart()
    support.run_training(warm, f"training.warm_start_from={out / 'weights.safetensors'}", callbacks=[first])
    start = support.weights(out)
    assert first.weights.keys() == start.keys()
    for k in start:
        torch.testing.assert_close(first.weights[k], start[k], rtol=0, atol=0)


class WeightsAtTrainStart(L.Callback):
    def on_train_start(self, trainer, pl_module):
        self.weights = {k: v.detach().clone() for k, v in pl_module.forecaster_state_dict().items()}
