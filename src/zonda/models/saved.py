"""What a trained model is on disk: ``weights.safetensors`` + ``model.json``, and how to load it.

The training stage writes both; evaluation and the registry read them (without Lightning).

* **Weights** (``weights.safetensors``): the Forecaster's ``state_dict`` in
  safetensors (no code can be embedded), with metadata; the model's identity
  is :func:`weights_content_id` of those tensors, not the file's bytes.
* **Model card** (``model.json``): what is needed to rebuild the Forecaster: the
  resolved ``model`` params, the channel layout, the forcing and static names,
  the network's input/output channels, the grid, the lineage (snapshot ID,
  statistics hash, graph hash), the model ID and the weights file's sha256
  (an integrity check of those bytes). Rebuilding also needs the graph and
  statistics artifacts of that lineage; :func:`load_forecaster` checks their
  hashes against ``model.json``.

Anything wrong raises :class:`SavedModelError` (or its :class:`CheckpointError`
for a weights or checkpoint file) naming the file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from zonda.channels import ChannelLayout
from zonda.files import atomic_path, default_file_mode, file_sha256, read_json_file
from zonda.graph import load_graph
from zonda.graph.io import read_manifest as read_graph_manifest
from zonda.models.forecaster import Forecaster
from zonda.params import ModelParams
from zonda.provenance import read_manifest, sha256_id
from zonda.statistics import load_statistics

MODEL_CARD = "model.json"
WEIGHTS_FILE = "weights.safetensors"
MODEL_FORMAT = "zonda.model"
MODEL_SCHEMA_VERSION = 1
WEIGHTS_FORMAT = "zonda.weights"


class SavedModelError(ValueError):
    """A saved model cannot be used: its card is unreadable, or the graph or statistics given are not its own
    (the message names the file)."""


class CheckpointError(SavedModelError):
    """A checkpoint or weights file is missing, corrupt, tampered with or does not fit the model."""


# ----------------------------------------------------------------- weights


def weights_content_id(state_dict: Mapping[str, torch.Tensor]) -> str:
    """``sha256:<hex>`` of the tensors themselves: names, dtypes, shapes and bytes, in sorted name order.

    The model's identity. Not the hash of ``weights.safetensors``: safetensors writes its
    metadata mapping in a varying key order, so the same tensors saved twice differ in bytes.
    Each field is length-prefixed, so no two different state dicts hash the same stream.
    """
    digest = hashlib.sha256()

    def field(data: bytes) -> None:
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)

    for name in sorted(state_dict):
        tensor = state_dict[name].detach().to("cpu").contiguous()
        field(name.encode("utf-8"))
        field(str(tensor.dtype).removeprefix("torch.").encode())
        field(",".join(str(int(n)) for n in tensor.shape).encode())
        flat = torch.empty(tensor.numel(), dtype=tensor.dtype).copy_(tensor.reshape(-1))  # stride 1 even for a
        field(flat.view(torch.uint8).numpy().tobytes())  # one-element tensor with stride 0; raw little-endian bytes
    return f"sha256:{digest.hexdigest()}"


def save_weights(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike[str], metadata: Mapping[str, str] | None = None) -> str:
    """Writes a safetensors file atomically; returns the file's sha256 (an integrity check of these bytes only;
    the model's identity is :func:`weights_content_id`)."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": WEIGHTS_FORMAT, **{k: str(v) for k, v in (metadata or {}).items()}})
        os.chmod(tmp, default_file_mode())  # safetensors creates 0600; the evaluation stage may run as another user
        digest = file_sha256(tmp)
    return digest


def load_weights(path: str | os.PathLike[str], expected: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Reads a safetensors weights file; checks names and shapes against ``expected`` if given."""
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    if expected is not None:
        check_state_dict(tensors, expected, path)
    return tensors


def check_state_dict(
    found: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], source: str | os.PathLike[str]
) -> None:
    """Raises CheckpointError naming ``source`` if names or shapes of ``found`` differ from ``expected``."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = [
        f"{k}: {tuple(found[k].shape)} != {tuple(expected[k].shape)}"
        for k in sorted(set(found) & set(expected))
        if tuple(found[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected {_short(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes {_short(wrong)}")
    if problems:
        raise CheckpointError(f"{source}: does not fit the model ({'; '.join(problems)})")



def _short(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


# ------------------------------------------------------------- model card


def model_card(
    *,
    model_params: Mapping[str, Any],
    layout: ChannelLayout,
    forcing_names: list[str],
    static_names: list[str],
    in_channels: int,
    out_channels: int,
    latitudes: np.ndarray,
    longitudes: np.ndarray,
    lineage: Mapping[str, str],
    weights_sha256: str,
    model_id: str,
    training: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``model.json`` payload (see the module docstring)."""
    return {
        "format": MODEL_FORMAT,
        "schema_version": MODEL_SCHEMA_VERSION,
        "model": dict(model_params),
        "input_steps": int(model_params["input_steps"]),
        "layout": {"variables": list(layout.variables), "levels": list(layout.levels), "channels": layout.names},
        "forcings": list(forcing_names),
        "static": list(static_names),
        "in_channels": int(in_channels),
        "out_channels": int(out_channels),
        "grid": {
            "n_lat": int(len(latitudes)),
            "n_lon": int(len(longitudes)),
            "latitudes": [float(v) for v in latitudes],
            "longitudes": [float(v) for v in longitudes],
        },
        **{k: str(v) for k, v in lineage.items()},
        "model_id": model_id,
        "weights": {"file": WEIGHTS_FILE, "sha256": weights_sha256},
        "training": dict(training),
    }


def read_model_card(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``model.json`` of a training output directory: FileNotFoundError if it has none,
    :class:`SavedModelError` if it is unreadable or of another format or schema version."""
    path = Path(model_dir) / MODEL_CARD
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (not a zonda training output)")
    card = read_json_file(path, "not a zonda training output", SavedModelError)
    if card.get("format") != MODEL_FORMAT or card.get("schema_version") != MODEL_SCHEMA_VERSION:
        raise SavedModelError(f"{path}: format/schema_version {card.get('format')!r}/{card.get('schema_version')!r} not readable")
    return card


def load_forecaster(
    model_dir: str | os.PathLike[str],
    graph_dir: str | os.PathLike[str],
    statistics_dir: str | os.PathLike[str],
    *,
    map_location: str | torch.device = "cpu",
) -> torch.nn.Module:
    """Rebuilds the trained :class:`zonda.models.Forecaster` of a training output directory.

    Checks that the graph and statistics artifacts are the ones the model was
    trained with (hashes in ``model.json``) and the weights file's sha256.
    Returns the model in eval mode.
    """
    model_dir = Path(model_dir)
    card = read_model_card(model_dir)
    graph_hash = sha256_id(read_graph_manifest(Path(graph_dir))["graph_hash"])
    if graph_hash != card.get("graph_hash"):
        raise SavedModelError(f"{Path(graph_dir) / 'graph.json'}: graph_hash {graph_hash} is not the model's ({card.get('graph_hash')})")
    stats_manifest = read_manifest(statistics_dir) or {}
    if stats_manifest.get("statistics_hash") != card.get("statistics_hash"):
        raise SavedModelError(
            f"{Path(statistics_dir) / 'manifest.json'}: statistics_hash {stats_manifest.get('statistics_hash')} "
            f"is not the model's ({card.get('statistics_hash')})"
        )
    weights_path = model_dir / card["weights"]["file"]
    if not weights_path.is_file() or file_sha256(weights_path) != card["weights"]["sha256"]:
        raise CheckpointError(f"{weights_path}: missing or sha256 differs from {MODEL_CARD}")
    layout = ChannelLayout(tuple(card["layout"]["variables"]), tuple(card["layout"]["levels"]))
    forecaster = Forecaster.build(
        ModelParams.model_validate(card["model"]), load_graph(Path(graph_dir)), layout, card["forcings"], card["static"],
        load_statistics(statistics_dir),
    )
    forecaster.load_state_dict(load_weights(weights_path, expected=forecaster.state_dict()))
    return forecaster.to(map_location).eval()
