"""Graph-build stage: icosahedral multi-mesh, grid<->mesh edges, features, artifacts.

Public API::

    build_graph(graph_params, latitudes, longitudes) -> HeteroData
    graph_hash(graph_params, latitudes, longitudes) -> str
    save_graph(data, out_dir) -> dict          # graph.safetensors, graph.json, PNGs
    load_graph(directory) -> HeteroData        # no pickle
    graph_summary(data) -> dict                # flat, for MLflow

Names are loaded on first use, so ``from zonda.graph import graph_hash`` (or
importing a submodule such as ``zonda.graph.icosahedral_mesh``) does not pull in
torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_graph": "zonda.graph.build",
    "check_schema": "zonda.graph.build",
    "GraphCoverageError": "zonda.graph.build",
    "GraphCoverageWarning": "zonda.graph.build",
    "NODE_TYPES": "zonda.graph.build",
    "EDGE_TYPES": "zonda.graph.build",
    "ENCODER": "zonda.graph.build",
    "PROCESSOR": "zonda.graph.build",
    "DECODER": "zonda.graph.build",
    "graph_hash": "zonda.graph.hashing",
    "SCHEMA_VERSION": "zonda.graph.hashing",
    "validate_grid": "zonda.graph.grid",
    "save_graph": "zonda.graph.io",
    "load_graph": "zonda.graph.io",
    "read_manifest": "zonda.graph.files",
    "verify_graph_files": "zonda.graph.files",
    "GRAPH_FILES": "zonda.graph.io",
    "graph_summary": "zonda.graph.summary",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'zonda.graph' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
