"""build_graph: schema, decoder/encoder connectivity, coverage errors, features, hash."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from tests.support.repo import REPO
from zonda.graph import (
    DECODER,
    ENCODER,
    PROCESSOR,
    GraphCoverageError,
    GraphCoverageWarning,
    build_graph,
    graph_hash,
)
from zonda.graph import grid_mesh_connectivity as conn
from zonda.graph.icosahedral_mesh import build_icosahedral_mesh
from zonda.params import GraphParams

# WeatherBench2-style grids: 5.625 deg without poles, 1.5 deg with poles.
LAT_5625 = np.linspace(-87.1875, 87.1875, 32)
LON_5625 = np.arange(64) * 5.625
LAT_15 = np.linspace(-90.0, 90.0, 121)
LON_15 = np.arange(240) * 1.5


def xyz(lat, lon):
    lat, lon = np.deg2rad(lat), np.deg2rad(lon)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


def grid_xyz(lat, lon):
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    return xyz(la.ravel(), lo.ravel())


@pytest.fixture(scope="module")
def g3():
    """The local preset: 5.625 deg grid, r=3, factor 0.6."""
    return build_graph(GraphParams(refinement=3, encoder_radius_factor=0.6), LAT_5625, LON_5625)


def test_schema_is_exactly_the_contract(g3):
    assert set(g3.node_types) == {"grid", "mesh"}
    assert set(g3.edge_types) == {ENCODER, PROCESSOR, DECODER}
    assert ENCODER == ("grid", "to", "mesh") and DECODER == ("mesh", "to", "grid")
    for nt, n in (("grid", 32 * 64), ("mesh", 642)):
        assert set(g3[nt].keys()) == {"x", "latlon"}
        assert g3[nt].x.dtype == torch.float32 and tuple(g3[nt].x.shape) == (n, 3)
        assert g3[nt].latlon.dtype == torch.float32 and tuple(g3[nt].latlon.shape) == (n, 2)
    for et in (ENCODER, PROCESSOR, DECODER):
        ei, ea = g3[et].edge_index, g3[et].edge_attr
        assert set(g3[et].keys()) == {"edge_index", "edge_attr"}
        assert ei.dtype == torch.int64 and ei.shape[0] == 2
        assert ea.dtype == torch.float32 and tuple(ea.shape) == (ei.shape[1], 4)
    # Row 0 is the sender: grid indices in the encoder, mesh indices in the decoder.
    assert g3[ENCODER].edge_index[0].max() == 32 * 64 - 1 and g3[ENCODER].edge_index[1].max() < 642
    assert g3[DECODER].edge_index[0].max() < 642 and g3[DECODER].edge_index[1].max() == 32 * 64 - 1
    # Grid nodes in row-major (latitude, longitude) order: index = i_lat * n_lon + i_lon.
    latlon = g3["grid"].latlon.numpy()
    i_lat, i_lon = 5, 17
    assert latlon[i_lat * 64 + i_lon] == pytest.approx([LAT_5625[i_lat], LON_5625[i_lon]])


def test_node_features_are_cos_lat_sin_lon_cos_lon(g3):
    for nt in ("grid", "mesh"):
        x = g3[nt].x.numpy().astype(np.float64)
        lat, lon = np.deg2rad(g3[nt].latlon.numpy().astype(np.float64)).T
        assert np.allclose(x, np.stack([np.cos(lat), np.sin(lon), np.cos(lon)], axis=1), atol=1e-6)
        assert np.allclose(np.hypot(x[:, 1], x[:, 2]), 1.0, atol=1e-6)  # (sin, cos) of lon: unit circle
        assert (x[:, 0] >= 0).all() and (x[:, 0] <= 1).all()


@pytest.mark.parametrize("lat,lon,r,factor", [(LAT_5625, LON_5625, 3, 0.6), (LAT_15, LON_15, 6, 0.9)],
                         ids=["5.625deg-r3", "1.5deg-poles-r6"])
def test_decoder_uses_the_containing_triangle(lat, lon, r, factor):
    g = build_graph(GraphParams(refinement=r, encoder_radius_factor=factor), lat, lon)
    mesh = build_icosahedral_mesh(r)
    n_grid = lat.size * lon.size
    ei = g[DECODER].edge_index.numpy()
    assert ei.shape[1] == 3 * n_grid
    assert np.array_equal(np.bincount(ei[1], minlength=n_grid), np.full(n_grid, 3))
    order = np.argsort(ei[1], kind="stable")
    tri = ei[0, order].reshape(n_grid, 3)                  # the 3 mesh senders of each grid point
    # They are a face of the finest mesh...
    faces = {tuple(f) for f in np.sort(mesh.faces, axis=1).tolist()}
    assert all(tuple(t) in faces for t in np.sort(tri, axis=1).tolist())
    # ...and that face contains the point: solve p = alpha a + beta b + gamma c independently.
    corners = mesh.vertices[tri]                             # (G, 3, 3)
    coeffs = np.linalg.solve(np.transpose(corners, (0, 2, 1)), grid_xyz(lat, lon)[:, :, None])[:, :, 0]
    bary = coeffs / coeffs.sum(axis=1, keepdims=True)
    assert bary.min() >= -1e-9
    if lat[-1] == 90.0:  # a pole row lands exactly on the mesh vertex at the pole
        assert np.allclose(bary[-lon.size:].max(axis=1), 1.0)


def test_knn_decoder_takes_the_k_nearest_mesh_nodes():
    g = build_graph(GraphParams(refinement=3, decoder="knn", decoder_k=4), LAT_5625, LON_5625)
    mesh = build_icosahedral_mesh(3)
    ei = g[DECODER].edge_index.numpy()
    n_grid = LAT_5625.size * LON_5625.size
    assert ei.shape[1] == 4 * n_grid
    got = ei[0, np.argsort(ei[1], kind="stable")].reshape(n_grid, 4)
    assert (np.sort(got, axis=1)[:, 1:] != np.sort(got, axis=1)[:, :-1]).all()  # 4 distinct nodes
    # Brute force over all mesh nodes: the chosen 4 are as close as the 4 closest (ties allowed).
    arc = np.arccos(np.clip(grid_xyz(LAT_5625, LON_5625) @ mesh.vertices.T, -1, 1))
    got_arc = np.sort(np.take_along_axis(arc, got, axis=1), axis=1)
    assert np.allclose(got_arc, np.sort(arc, axis=1)[:, :4], atol=1e-12)


def test_encoder_links_every_mesh_node_within_the_great_circle_radius():
    params = GraphParams(refinement=3, encoder_radius_factor=0.6)
    g = build_graph(params, LAT_5625, LON_5625)
    mesh = build_icosahedral_mesh(3)
    v = mesh.vertices
    e = mesh.level_edges[-1]
    longest = np.arccos(np.einsum("ij,ij->i", v[e[:, 0]], v[e[:, 1]]).min())
    radius = 0.6 * longest
    # Brute-force great-circle distances between every grid point and mesh node.
    arc = np.arccos(np.clip(grid_xyz(LAT_5625, LON_5625) @ v.T, -1, 1))
    want = np.argwhere(arc <= radius)
    ei = g[ENCODER].edge_index.numpy()
    n = mesh.num_nodes
    assert np.array_equal(np.sort(ei[0] * n + ei[1]), np.sort(want[:, 0] * n + want[:, 1]))
    assert g.graph_meta["encoder"]["radius_deg"] == pytest.approx(np.rad2deg(radius))


def test_coarse_grid_under_a_fine_mesh_raises_with_a_useful_message():
    # r=5 (~2.2 deg edges) under a 5.625 deg grid: most mesh nodes see no grid point within 0.6 x spacing.
    params = GraphParams(refinement=5, encoder_radius_factor=0.6)
    with pytest.raises(GraphCoverageError) as info:
        build_graph(params, LAT_5625, LON_5625)
    msg = str(info.value)
    assert "of 10,242 mesh nodes" in msg and "no encoder" in msg
    assert "graph.refinement" in msg and "graph.encoder_radius_factor" in msg
    uncovered = int(msg.split(" of 10,242")[0].replace(",", ""))
    assert uncovered > 10_242 / 2  # "most mesh nodes get no input"
    # The suggested factor is the smallest that works.
    suggested = float(msg.split("graph.encoder_radius_factor (>= ")[1].split(" ")[0])
    assert build_graph(GraphParams(refinement=5, encoder_radius_factor=suggested * 1.001), LAT_5625, LON_5625)
    with pytest.raises(GraphCoverageError):
        build_graph(GraphParams(refinement=5, encoder_radius_factor=suggested * 0.99), LAT_5625, LON_5625)


def test_warn_mode_builds_and_reports_the_gap():
    params = GraphParams(refinement=5, encoder_radius_factor=0.6, on_uncovered="warn")
    with pytest.warns(GraphCoverageWarning, match="mesh nodes"):
        g = build_graph(params, LAT_5625, LON_5625)
    covered = np.unique(g[ENCODER].edge_index[1].numpy()).size
    assert g.graph_meta["encoder"]["mesh_coverage"] == pytest.approx(covered / 10_242)
    assert covered < 10_242 / 2


@pytest.mark.parametrize("r", [2, 3])
def test_local_grid_with_r2_r3_is_fully_covered(r):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = build_graph(GraphParams(refinement=r, encoder_radius_factor=0.6), LAT_5625, LON_5625)
    n_mesh = 10 * 4**r + 2
    assert np.unique(g[ENCODER].edge_index[1].numpy()).size == n_mesh
    assert np.unique(g[ENCODER].edge_index[0].numpy()).size == 32 * 64  # every grid point feeds the mesh too
    assert g.graph_meta["encoder"]["mesh_coverage"] == 1.0
    assert g.graph_meta["encoder"]["min_covering_factor"] < 0.6


def test_edge_features_lengths_and_receiver_frame(g3):
    for nt_s, nt_r, et in (("grid", "mesh", ENCODER), ("mesh", "mesh", PROCESSOR), ("mesh", "grid", DECODER)):
        ea = g3[et].edge_attr.numpy().astype(np.float64)
        ei = g3[et].edge_index.numpy()
        assert ea[:, 0].max() == pytest.approx(1.0, abs=1e-7) and ea[:, 0].min() >= 0
        # The displacement has the edge's length.
        assert np.allclose(np.linalg.norm(ea[:, 1:], axis=1), ea[:, 0], atol=1e-6)
        # Independent reference: rotate z by -lon then y by +lat (receiver -> (1, 0, 0)).
        ll_s = g3[nt_s].latlon.numpy().astype(np.float64)
        ll_r = g3[nt_r].latlon.numpy().astype(np.float64)
        s, r = xyz(*ll_s[ei[0]].T), xyz(*ll_r[ei[1]].T)
        rot = Rotation.from_euler("zy", np.deg2rad(np.stack([-ll_r[ei[1], 1], ll_r[ei[1], 0]], axis=1)))
        assert np.allclose(rot.apply(r), [1, 0, 0], atol=1e-12)
        want = rot.apply(s - r)
        assert np.allclose(ea[:, 1:], want / np.linalg.norm(want, axis=1).max(), atol=2e-5)
        assert (ea[:, 1] <= 1e-7).all()  # the sender lies below the receiver's tangent plane


def test_edge_feature_components_are_radial_east_north():
    # Grid points due north and due east of an icosahedron vertex (lat atan(1/2), lon 0).
    lat0 = np.rad2deg(np.arctan(0.5))
    with pytest.warns(GraphCoverageWarning):
        g = build_graph(GraphParams(refinement=0, encoder_radius_factor=0.1, on_uncovered="warn"),
                        np.array([lat0, lat0 + 1.0]), np.array([0.0, 1.0]))
    mesh = g["mesh"].latlon.numpy()
    node = int(np.argmin(np.abs(mesh[:, 0] - lat0) + np.abs(mesh[:, 1])))
    ei, ea = g[ENCODER].edge_index.numpy(), g[ENCODER].edge_attr.numpy().astype(np.float64)
    scale = g.graph_meta["edge_length_scale"]["grid_to_mesh"]

    def feature(grid_index):
        return ea[(ei[0] == grid_index) & (ei[1] == node)][0] * scale

    phi, d = np.deg2rad(lat0), np.deg2rad(1.0)
    north = feature(1 * 2 + 0)   # (lat0 + 1, 0): a great-circle step north
    assert north[1:] == pytest.approx([np.cos(d) - 1, 0.0, np.sin(d)], abs=1e-7)
    east = feature(0 * 2 + 1)    # (lat0, 1): along the latitude circle
    cp = np.cos(phi)
    assert east[1:] == pytest.approx([cp * cp * (np.cos(d) - 1), cp * np.sin(d), np.sin(phi) * cp * (1 - np.cos(d))],
                                     abs=1e-7)


def test_multimesh_level0_switch():
    with_l0 = build_graph(GraphParams(refinement=2), LAT_5625, LON_5625)
    without = build_graph(GraphParams(refinement=2, multimesh_include_level0=False), LAT_5625, LON_5625)
    assert with_l0[PROCESSOR].edge_index.shape[1] == 1260
    assert without[PROCESSOR].edge_index.shape[1] == 1200


@pytest.mark.parametrize("lat,lon,field", [
    (np.array([-10.0, 0.0, 0.0]), LON_5625, "latitudes"),
    (np.array([0.0, 95.0]), LON_5625, "latitudes"),
    (np.array([[0.0, 1.0]]), LON_5625, "latitudes"),
    (LAT_5625, np.arange(0, 361, 45.0), "longitudes"),
    (LAT_5625, np.array([0.0, np.nan]), "longitudes"),
])
def test_bad_grids_name_the_field(lat, lon, field):
    with pytest.raises(ValueError, match=field):
        build_graph(GraphParams(refinement=1), lat, lon)


def test_hash_is_deterministic_and_sensitive():
    base = GraphParams(refinement=3)
    h = graph_hash(base, LAT_5625, LON_5625)
    assert len(h) == 64 and h == graph_hash(GraphParams(refinement=3), LAT_5625.copy(), list(LON_5625))
    # Stable across processes (hash randomisation) and a pinned value: changing the
    # recipe silently would orphan every cached graph.
    code = ("import numpy as np; from zonda.graph import graph_hash; from zonda.params import GraphParams; "
            "print(graph_hash(GraphParams(refinement=3), np.linspace(-87.1875, 87.1875, 32), np.arange(64) * 5.625))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "123"}, cwd=REPO / "src")
    assert out.stdout.strip() == h
    assert h == "5eae615f49b3cd04ea15644e6bfe444e260a3447ccea82bb9730d5ea4c1fcab8"
    changed = [
        graph_hash(GraphParams(refinement=4), LAT_5625, LON_5625),
        graph_hash(GraphParams(refinement=3, encoder_radius_factor=0.7), LAT_5625, LON_5625),
        graph_hash(GraphParams(refinement=3, multimesh_include_level0=False), LAT_5625, LON_5625),
        graph_hash(GraphParams(refinement=3, decoder="knn"), LAT_5625, LON_5625),
        graph_hash(base, LAT_5625 + 1e-9, LON_5625),
        graph_hash(base, LAT_5625, LON_5625 - 180.0),
        graph_hash(base, LAT_15, LON_15),
    ]
    assert len(set(changed + [h])) == len(changed) + 1
    # What does not change the graph does not change the hash.
    assert graph_hash(GraphParams(refinement=3, on_uncovered="warn"), LAT_5625, LON_5625) == h
    assert graph_hash(GraphParams(refinement=3, decoder_k=5), LAT_5625, LON_5625) == h
    assert graph_hash(GraphParams(refinement=3, decoder="knn", decoder_k=5), LAT_5625, LON_5625) != \
        graph_hash(GraphParams(refinement=3, decoder="knn", decoder_k=3), LAT_5625, LON_5625)


@pytest.mark.slow
def test_graphcast_m6_quarter_degree_counts():
    # GraphCast (Lam et al. 2023, supplement): M6 on the 0.25 deg grid has 3,114,720 mesh->grid
    # edges and 1,618,746 grid->mesh edges (radius 0.6 x longest edge; their icosahedron
    # orientation differs, so the encoder count matches only to within a few percent).
    lat, lon = np.linspace(-90.0, 90.0, 721), np.arange(1440) * 0.25
    g = build_graph(GraphParams(refinement=6), lat, lon)
    assert g[DECODER].edge_index.shape[1] == 3_114_720
    assert g[ENCODER].edge_index.shape[1] == pytest.approx(1_618_746, rel=0.03)
    assert g[PROCESSOR].edge_index.shape[1] == 327_660
    assert g.graph_meta["encoder"]["mesh_coverage"] == 1.0


@pytest.mark.parametrize("r", [0, 1, 4])
def test_triangle_search_on_random_points(r):
    mesh = build_icosahedral_mesh(r)
    rng = np.random.default_rng(r)
    p = rng.normal(size=(20_000, 3))
    p = np.concatenate([p / np.linalg.norm(p, axis=1, keepdims=True), mesh.vertices])  # + points on vertices
    face, bary = conn.containing_triangles(p, mesh, cKDTree(mesh.vertices))
    corners = mesh.vertices[mesh.faces[face]]
    coeffs = np.linalg.solve(np.transpose(corners, (0, 2, 1)), p[:, :, None])[:, :, 0]
    assert (coeffs >= -1e-12).all()
    assert np.allclose(bary, coeffs / coeffs.sum(axis=1, keepdims=True), atol=1e-9)
    # The level-by-level descent alone finds them (the slow re-search is only a safety net).
    fast = conn._descend(p, mesh, conn._descent_tables(mesh))
    assert np.array_equal(fast, face)
