"""The training stage's model artifact: ``weights.safetensors`` + ``model.json``, and how to load it.

``model.json`` holds what is needed to rebuild the Forecaster: the resolved
``model`` params, the channel layout, the forcing and static names, the
network's input/output channels, the grid, and the lineage (snapshot ID,
statistics hash, graph hash), the model ID (:func:`~zonda.training.checkpoints.weights_content_id`
of the tensors) and the weights file's sha256 (an integrity check of those bytes). Rebuilding also
needs the graph and statistics artifacts of that lineage; :func:`load_forecaster`
checks their hashes against ``model.json``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from zonda.channels import ChannelLayout
from zonda.files import file_sha256, read_json_file
from zonda.training.checkpoints import CheckpointError, load_weights
from zonda.training.errors import TrainingInputError

MODEL_CARD = "model.json"
WEIGHTS_FILE = "weights.safetensors"
MODEL_FORMAT = "zonda.model"
MODEL_SCHEMA_VERSION = 1


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
    path = Path(model_dir) / MODEL_CARD
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (not a zonda training output)")
    card = read_json_file(path, "not a zonda training output", TrainingInputError)
    if card.get("format") != MODEL_FORMAT or card.get("schema_version") != MODEL_SCHEMA_VERSION:
        raise TrainingInputError(f"{path}: format/schema_version {card.get('format')!r}/{card.get('schema_version')!r} not readable")
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
    from zonda.graph import load_graph
    from zonda.graph.io import read_manifest as read_graph_manifest
    from zonda.models import Forecaster
    from zonda.params import ModelParams
    from zonda.provenance import read_manifest, sha256_id
    from zonda.statistics import load_statistics

    model_dir = Path(model_dir)
    card = read_model_card(model_dir)
    graph_hash = sha256_id(read_graph_manifest(Path(graph_dir))["graph_hash"])
    if graph_hash != card.get("graph_hash"):
        raise TrainingInputError(f"{Path(graph_dir) / 'graph.json'}: graph_hash {graph_hash} is not the model's ({card.get('graph_hash')})")
    stats_manifest = read_manifest(statistics_dir) or {}
    if stats_manifest.get("statistics_hash") != card.get("statistics_hash"):
        raise TrainingInputError(
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
