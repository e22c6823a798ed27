"""Graph-build stage: icosahedral multi-mesh, grid<->mesh edges, features, artifacts.

Public API::

    build_graph(graph_params, latitudes, longitudes) -> HeteroData
    graph_hash(graph_params, latitudes, longitudes) -> str
    save_graph(data, out_dir) -> dict          # graph.safetensors, graph.json, PNGs
    load_graph(directory) -> HeteroData        # no pickle
    graph_summary(data) -> dict                # flat, for MLflow
"""

from zonda.graph.build import (
    DECODER,
    EDGE_TYPES,
    ENCODER,
    NODE_TYPES,
    PROCESSOR,
    SCHEMA_VERSION,
    GraphCoverageError,
    GraphCoverageWarning,
    build_graph,
    check_schema,
    graph_hash,
)
from zonda.graph.io import GRAPH_FILES, load_graph, save_graph
from zonda.graph.summary import graph_summary

__all__ = [
    "DECODER",
    "EDGE_TYPES",
    "ENCODER",
    "GRAPH_FILES",
    "NODE_TYPES",
    "PROCESSOR",
    "SCHEMA_VERSION",
    "GraphCoverageError",
    "GraphCoverageWarning",
    "build_graph",
    "check_schema",
    "graph_hash",
    "graph_summary",
    "load_graph",
    "save_graph",
]
