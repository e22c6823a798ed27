"""The graph's content hash: what a cache (DVC, KFP) keys a built graph on.

Only numpy, hashlib and the params schema are imported here, so the hash can
be computed without torch (e.g. by a pipeline step deciding whether to rebuild).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from zonda.graph.grid import validate_grid
from zonda.params import GraphParams

SCHEMA_VERSION = 1
"""Bumped whenever the graph layout or the algorithm changes what a given input produces."""


def as_graph_params(graph_params: GraphParams | dict[str, Any]) -> GraphParams:
    """A GraphParams from itself or from its dict form (validated)."""
    if isinstance(graph_params, GraphParams):
        return graph_params
    return GraphParams.model_validate(graph_params)


def hashed_params(graph_params: GraphParams) -> dict[str, Any]:
    """The params that change the graph, floats as exact ``float.hex`` strings.

    ``on_uncovered`` only decides between raising and warning, and ``decoder_k``
    matters only for the k-NN decoder, so neither enters the hash otherwise.
    """
    p = graph_params.model_dump(mode="json")
    p.pop("on_uncovered", None)
    if p.get("decoder") != "knn":
        p.pop("decoder_k", None)
    return {k: (float(v).hex() if isinstance(v, float) else v) for k, v in sorted(p.items())}


def graph_hash(graph_params: GraphParams, latitudes: np.ndarray, longitudes: np.ndarray) -> str:
    """sha256 (64 hex digits) identifying the graph ``build_graph`` makes from these inputs.

    Hashed, in order: ``zonda.graph/<SCHEMA_VERSION>``, the canonical JSON
    (sorted keys, no spaces, floats as ``float.hex``) of :func:`hashed_params`,
    the grid shape as two little-endian int64, and the little-endian float64
    bytes of the latitudes and longitudes (degrees, in the given order). No
    float is formatted as decimal text, so the value is the same on every
    platform and Python version.

    Args:
        graph_params: GraphParams (or its dict form).
        latitudes: (n_lat,) degrees.
        longitudes: (n_lon,) degrees.
    """
    params = as_graph_params(graph_params)
    lat, lon = validate_grid(latitudes, longitudes)
    h = hashlib.sha256()
    h.update(f"zonda.graph/{SCHEMA_VERSION}\0".encode())
    h.update(json.dumps(hashed_params(params), sort_keys=True, separators=(",", ":")).encode())
    h.update(b"\0")
    h.update(np.array([lat.size, lon.size], dtype="<i8").tobytes())
    h.update(lat.astype("<f8").tobytes())
    h.update(lon.astype("<f8").tobytes())
    return h.hexdigest()
