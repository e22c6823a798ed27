"""Mismatched artifacts: the model's identity is its tensors, and a registered file must be the model it claims.

(Stage outputs from different runs, tampered checkpoints and graphs of another
grid are refused in tests/training/test_checkpoints.py, tests/training/test_train.py
and tests/registry/test_pyfunc.py.)
"""

from __future__ import annotations

import json

import pytest
import torch

from tests.support import registry_builders as rf
from tests.support import training_builders as support
from tests.support.model_id import content_hash
from zonda.files import file_sha256
from zonda.models.saved import save_weights, weights_content_id
from zonda.registry.errors import RegistryError


def test_the_same_weights_saved_three_times_have_one_model_id(tmp_path):
    weights = _load(rf.model_dir(0) / "weights.safetensors")
    paths = [tmp_path / f"w{i}.safetensors" for i in range(3)]
    for path in paths:  # safetensors writes its metadata mapping in a varying order: the bytes may differ
        save_weights(weights, path, metadata={"snapshot_id": "a", "statistics_hash": "b", "graph_hash": "c"})
    loaded = [_load(path) for path in paths]
    for tensors in loaded:
        assert tensors.keys() == weights.keys() and all(torch.equal(tensors[k], weights[k]) for k in tensors)
    assert {weights_content_id(t) for t in loaded} == {content_hash(weights)}


def test_the_model_id_tells_apart_names_dtypes_shapes_and_values():
    base = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(3)}
    changed = [
        {"c": base["a"], "b": base["b"]},  # a name
        {"a": base["a"].double(), "b": base["b"]},  # a dtype (other bytes too)
        {"a": base["a"].int().view(torch.float32), "b": base["b"]},  # a value's bits
        {"a": base["a"].reshape(3, 2), "b": base["b"]},  # a shape, same bytes
        {"a": base["a"], "b": base["b"], "c": torch.zeros(0)},  # an extra empty tensor
    ]
    ids = {weights_content_id(base)} | {weights_content_id(c) for c in changed}
    assert len(ids) == 1 + len(changed)
    assert weights_content_id(dict(reversed(base.items()))) == weights_content_id(base)  # order of the dict is no part


def test_training_records_the_content_hash_as_model_id():
    with support.one_thread():
        out = support.new_dir("model-id")
        manifest = support.run_training(out)
    card = json.loads((out / "model.json").read_text())
    expected = content_hash(support.weights(out))
    assert manifest["model_id"] == card["model_id"] == expected
    assert card["weights"]["sha256"] == file_sha256(out / "weights.safetensors")  # the file's integrity, kept


def test_registering_weights_that_are_not_the_cards_model_is_refused(tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(rf.model_dir(0), model)
    tensors = _load(model / "weights.safetensors")
    first = sorted(tensors)[0]
    tensors[first] = tensors[first] + 1.0
    card = json.loads((model / "model.json").read_text())
    card["weights"]["sha256"] = save_weights(tensors, model / "weights.safetensors")  # consistent file digest
    (model / "model.json").write_text(json.dumps(card))
    from zonda.registry.register import registered_model_id

    with pytest.raises(RegistryError, match=rf"{model / 'weights.safetensors'}: holds model sha256:[0-9a-f]{{64}}, but .*model.json says {card['model_id']}"):
        registered_model_id(model, card)


def _load(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def test_model_id_of_a_tensor_with_a_zero_stride_equals_its_dense_copy():
    """A one-element tensor viewed with stride 0 (as an expanded buffer can be) hashes like its dense copy."""
    dense = torch.tensor([3.5])
    strided = torch.tensor(3.5).expand(1)
    assert strided.stride() == (0,)
    assert weights_content_id({"w": strided}) == weights_content_id({"w": dense})
