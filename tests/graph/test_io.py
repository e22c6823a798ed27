"""save_graph / load_graph (no pickle), the manifest, the PNGs and graph_summary."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from zonda.graph import (
    DECODER,
    EDGE_TYPES,
    ENCODER,
    PROCESSOR,
    build_graph,
    graph_hash,
    graph_summary,
    load_graph,
    save_graph,
)
from zonda.params import GraphParams

LAT = np.linspace(-87.1875, 87.1875, 32)
LON = np.arange(64) * 5.625
PARAMS = GraphParams(refinement=2, encoder_radius_factor=0.6)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def graph():
    return build_graph(PARAMS, LAT, LON)


@pytest.fixture(scope="module")
def saved(graph, tmp_path_factory):
    out = tmp_path_factory.mktemp("graph")
    manifest = save_graph(graph, out)
    return out, manifest


def test_save_writes_the_artifacts_and_a_manifest(saved):
    out, manifest = saved
    names = sorted(p.name for p in out.iterdir())
    assert names == ["edge_lengths.png", "graph.json", "graph.safetensors", "mesh.png"]  # no temp leftovers
    for png in ("mesh.png", "edge_lengths.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC and (out / png).stat().st_size > 10_000
    on_disk = json.loads((out / "graph.json").read_text())
    assert on_disk == manifest
    assert manifest["graph_hash"] == graph_hash(PARAMS, LAT, LON)
    assert manifest["counts"] == {
        "nodes": {"grid": 2048, "mesh": 162},
        "edges": {"grid_to_mesh": manifest["counts"]["edges"]["grid_to_mesh"], "mesh_to_mesh": 1260,
                  "mesh_to_grid": 3 * 2048},
    }
    assert manifest["grid"]["latitudes"] == LAT.tolist() and manifest["grid"]["longitudes"] == LON.tolist()
    assert manifest["params"]["refinement"] == 2
    assert manifest["summary"]["encoder.mesh_coverage"] == 1.0


def test_load_round_trips_without_pickle(saved, graph, monkeypatch):
    out, _ = saved

    def forbidden(*args, **kwargs):
        raise AssertionError("load_graph must not unpickle")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    loaded = load_graph(out)
    for nt in ("grid", "mesh"):
        assert torch.equal(loaded[nt].x, graph[nt].x) and torch.equal(loaded[nt].latlon, graph[nt].latlon)
    for et in EDGE_TYPES:
        assert torch.equal(loaded[et].edge_index, graph[et].edge_index)
        assert torch.equal(loaded[et].edge_attr, graph[et].edge_attr)
    assert loaded.graph_meta["graph_hash"] == graph.graph_meta["graph_hash"]


def test_corrupt_or_edited_artifacts_are_refused(graph, tmp_path):
    save_graph(graph, tmp_path)
    manifest = json.loads((tmp_path / "graph.json").read_text())
    # An edited manifest whose hash no longer matches its params.
    edited = dict(manifest, params=dict(manifest["params"], encoder_radius_factor=0.9))
    (tmp_path / "graph.json").write_text(json.dumps(edited))
    with pytest.raises(ValueError, match="graph_hash"):
        load_graph(tmp_path)
    # A tensors file that is not the one the manifest describes.
    (tmp_path / "graph.json").write_text(json.dumps(manifest))
    blob = bytearray((tmp_path / "graph.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (tmp_path / "graph.safetensors").write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="sha256"):
        load_graph(tmp_path)
    with pytest.raises(ValueError, match="graph.json"):
        load_graph(tmp_path / "missing")


def test_resave_replaces_a_previous_graph(graph, tmp_path):
    other = build_graph(GraphParams(refinement=1, encoder_radius_factor=1.0), LAT, LON)
    save_graph(other, tmp_path)
    save_graph(graph, tmp_path)
    loaded = load_graph(tmp_path)
    assert loaded["mesh"].num_nodes == 162 and loaded.graph_meta["params"]["refinement"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edge_lengths.png", "graph.json", "graph.safetensors", "mesh.png"]


def test_summary_counts_coverage_and_lengths(graph):
    s = graph_summary(graph)
    assert s["nodes.grid"] == 2048 and s["nodes.mesh"] == 162
    assert s["edges.mesh_to_mesh"] == 1260 and s["edges.mesh_to_grid"] == 6144
    assert s["edges.grid_to_mesh"] == graph[ENCODER].edge_index.shape[1]
    assert s["encoder.mesh_coverage"] == 1.0 and s["decoder.grid_coverage"] == 1.0
    assert s["processor.degree.min"] == 6      # a node born at level 2 has only its 6 level-2 neighbours
    assert s["processor.degree.max"] == 5 * 3  # an icosahedron vertex: 5 neighbours at each of levels 0..2
    # r=2 edges are ~15.9-18.7 deg; the multi-mesh's longest are the icosahedron's 63.4 deg edges.
    km_per_deg = 6371.0 * np.pi / 180
    assert s["edge_km.mesh_to_mesh.min"] == pytest.approx(63.4349 / 4 * km_per_deg, rel=1e-4)
    assert s["edge_km.mesh_to_mesh.max"] == pytest.approx(63.4349 * km_per_deg, rel=1e-4)
    assert s["edge_km.grid_to_mesh.max"] <= graph.graph_meta["encoder"]["radius_km"] * (1 + 1e-5)
    assert all(isinstance(v, (int, float)) for v in s.values())
    # Coverage is measured, not copied: drop the encoder edges into mesh node 0.
    hollow = graph.clone()
    keep = hollow[ENCODER].edge_index[1] != 0
    hollow[ENCODER].edge_index = hollow[ENCODER].edge_index[:, keep]
    hollow[ENCODER].edge_attr = hollow[ENCODER].edge_attr[keep]
    assert graph_summary(hollow)["encoder.mesh_coverage"] == pytest.approx(161 / 162)


def test_save_refuses_a_graph_outside_the_schema(graph, tmp_path):
    bad = graph.clone()
    bad[DECODER].edge_attr = bad[DECODER].edge_attr[:, :3]
    with pytest.raises(ValueError, match="mesh_to_grid.edge_attr"):
        save_graph(bad, tmp_path)
    bad = graph.clone()
    bad[PROCESSOR].edge_index = bad[PROCESSOR].edge_index.to(torch.int32)
    with pytest.raises(ValueError, match="mesh_to_mesh.edge_index"):
        save_graph(bad, tmp_path)
    assert not any(tmp_path.iterdir())
