"""Graph artifacts without pickle: tensors in safetensors, metadata in JSON, plus two PNGs.

Directory layout written by :func:`save_graph`::

    graph.safetensors   node features/lat-lon and edge index/attr tensors
    graph.json          manifest: schema version, graph hash, params, grid lat/lon,
                        counts, coverage, summary, sha256 of every other file
    mesh.png            the multi-mesh, edges coloured by refinement level
    edge_lengths.png    edge-length histograms per edge set

Tensor names in graph.safetensors: ``grid.x``, ``grid.latlon``, ``mesh.x``,
``mesh.latlon`` and ``<set>.edge_index`` / ``<set>.edge_attr`` for the sets
``grid_to_mesh``, ``mesh_to_mesh``, ``mesh_to_grid``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch_geometric.data import HeteroData

from zonda.files import default_file_mode, file_sha256
from zonda.graph.build import EDGE_SET_NAMES, EDGE_TYPES, NODE_TYPES, check_schema
from zonda.graph.files import FORMAT, MANIFEST_FILE, TENSORS_FILE, read_manifest, verify_graph_files  # noqa: F401 - read_manifest: re-exported
from zonda.graph.hashing import SCHEMA_VERSION
from zonda.graph.plot import plot_edge_lengths, plot_mesh
from zonda.graph.summary import graph_summary

MESH_PNG = "mesh.png"
EDGE_LENGTHS_PNG = "edge_lengths.png"
GRAPH_FILES = (TENSORS_FILE, MANIFEST_FILE, MESH_PNG, EDGE_LENGTHS_PNG)
_META_KEYS = ("schema_version", "graph_hash", "params", "grid", "mesh", "encoder", "decoder", "edge_length_scale")


def _tensors(data: HeteroData) -> dict[str, torch.Tensor]:
    out = {}
    for nt in NODE_TYPES:
        out[f"{nt}.x"] = data[nt].x.contiguous()
        out[f"{nt}.latlon"] = data[nt].latlon.contiguous()
    for et in EDGE_TYPES:
        out[f"{EDGE_SET_NAMES[et]}.edge_index"] = data[et].edge_index.contiguous()
        out[f"{EDGE_SET_NAMES[et]}.edge_attr"] = data[et].edge_attr.contiguous()
    return out


def save_graph(data: HeteroData, out_dir: Path) -> dict[str, Any]:
    """Writes graph.safetensors, graph.json, mesh.png and edge_lengths.png into ``out_dir``.

    Files are written into a temporary folder inside ``out_dir`` and moved into
    place with ``os.replace``; an existing graph.json is removed first and the
    new one moved last, so a reader sees either no manifest or a complete set
    (and :func:`load_graph` checks each file's sha256 against the manifest).

    Args:
        data: a graph from :func:`zonda.graph.build_graph` (needs ``data.graph_meta``).
        out_dir: destination folder (created if missing).

    Returns:
        The manifest dict written to graph.json (graph_hash, params, grid,
        counts, coverage, summary, files with sha256).
    """
    check_schema(data)
    meta = getattr(data, "graph_meta", None)
    if not isinstance(meta, dict) or any(k not in meta for k in _META_KEYS):
        raise ValueError("data.graph_meta: missing or incomplete; save graphs made by zonda.graph.build_graph")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = _tensors(data)
    manifest: dict[str, Any] = {"format": FORMAT, **{k: meta[k] for k in _META_KEYS}}
    manifest["counts"] = {
        "nodes": {nt: int(data[nt].num_nodes) for nt in NODE_TYPES},
        "edges": {EDGE_SET_NAMES[et]: int(data[et].edge_index.shape[1]) for et in EDGE_TYPES},
    }
    manifest["tensors"] = {k: {"dtype": str(v.dtype).removeprefix("torch."), "shape": list(v.shape)}
                           for k, v in tensors.items()}
    manifest["summary"] = graph_summary(data)

    tmp = Path(tempfile.mkdtemp(prefix=".graph-tmp-", dir=out_dir))
    try:
        save_file(tensors, str(tmp / TENSORS_FILE),
                  metadata={"format": FORMAT, "schema_version": str(SCHEMA_VERSION), "graph_hash": meta["graph_hash"]})
        plot_mesh(data, tmp / MESH_PNG)
        plot_edge_lengths(data, tmp / EDGE_LENGTHS_PNG)
        manifest["files"] = {name: {"sha256": file_sha256(tmp / name), "bytes": (tmp / name).stat().st_size}
                             for name in (TENSORS_FILE, MESH_PNG, EDGE_LENGTHS_PNG)}
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n")
        mode = default_file_mode()
        for name in GRAPH_FILES:
            os.chmod(tmp / name, mode)
        (out_dir / MANIFEST_FILE).unlink(missing_ok=True)
        for name in (TENSORS_FILE, MESH_PNG, EDGE_LENGTHS_PNG, MANIFEST_FILE):
            os.replace(tmp / name, out_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def load_graph(directory: Path) -> HeteroData:
    """Loads a graph written by :func:`save_graph` (safetensors + JSON; never unpickles).

    Checks the tensors file's sha256 against the manifest, the schema, the
    counts, and that the recorded graph_hash matches the recorded params and
    grid. Returns the HeteroData with ``graph_meta`` restored.
    """
    directory = Path(directory)
    manifest = verify_graph_files(directory)
    path = directory / TENSORS_FILE
    tensors = load_file(str(path))
    data = HeteroData()
    try:
        for nt in NODE_TYPES:
            data[nt].x = tensors[f"{nt}.x"]
            data[nt].latlon = tensors[f"{nt}.latlon"]
        for et in EDGE_TYPES:
            data[et].edge_index = tensors[f"{EDGE_SET_NAMES[et]}.edge_index"]
            data[et].edge_attr = tensors[f"{EDGE_SET_NAMES[et]}.edge_attr"]
    except KeyError as exc:
        raise ValueError(f"{path}: tensor {exc.args[0]!r} missing") from None
    check_schema(data)
    counts = manifest["counts"]
    for nt in NODE_TYPES:
        if data[nt].num_nodes != counts["nodes"][nt]:
            raise ValueError(f"graph.json counts.nodes.{nt} = {counts['nodes'][nt]} but the tensors hold "
                             f"{data[nt].num_nodes}")
    for et in EDGE_TYPES:
        name = EDGE_SET_NAMES[et]
        if data[et].edge_index.shape[1] != counts["edges"][name]:
            raise ValueError(f"graph.json counts.edges.{name} = {counts['edges'][name]} but the tensors hold "
                             f"{data[et].edge_index.shape[1]}")
    data.graph_meta = {k: manifest[k] for k in _META_KEYS}
    return data
