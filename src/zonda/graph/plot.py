"""PNG views of a graph: the multi-mesh coloured by refinement level, and edge-length histograms.

Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend change).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from torch_geometric.data import HeteroData

from zonda.graph.build import EDGE_SET_NAMES, EDGE_TYPES, PROCESSOR
from zonda.graph.icosahedral_mesh import edge_levels, refinement_of
from zonda.graph.summary import edge_lengths_km


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=110)


def plot_mesh(data: HeteroData, path: Path) -> None:
    """Writes a lat/lon map of the multi-mesh, edges coloured by refinement level.

    Each undirected edge is drawn once; edges crossing the antimeridian are
    left out of the map (they would streak across it). Finer levels are drawn
    first, so the long coarse edges stay visible on top.
    """
    latlon = data["mesh"].latlon.numpy().astype(np.float64)
    ei = data[PROCESSOR].edge_index.numpy()
    n_mesh = latlon.shape[0]
    refinement = refinement_of(n_mesh)
    all_levels = edge_levels(ei, n_mesh)
    counts = np.bincount(all_levels, minlength=refinement + 1)
    once = ei[0] < ei[1]
    ei, levels = ei[:, once], all_levels[once]
    a, b = latlon[ei[0]], latlon[ei[1]]
    # A pole has no longitude: draw its edges along the other end's meridian.
    a[:, 1] = np.where(np.abs(a[:, 0]) > 89.9999, b[:, 1], a[:, 1])
    b[:, 1] = np.where(np.abs(b[:, 0]) > 89.9999, a[:, 1], b[:, 1])
    keep = np.abs(a[:, 1] - b[:, 1]) <= 180.0
    a, b, levels = a[keep], b[keep], levels[keep]

    fig = Figure(figsize=(12, 6.4))
    ax = fig.add_subplot(1, 1, 1)
    cmap = matplotlib.colormaps["viridis_r"]
    for level in range(refinement, -1, -1):
        sel = levels == level
        if not counts[level]:
            continue
        segs = np.stack([a[sel][:, ::-1], b[sel][:, ::-1]], axis=1)
        color = cmap(level / max(refinement, 1))
        width = 0.3 + 1.5 * (refinement - level) / max(refinement, 1)
        ax.add_collection(LineCollection(segs, colors=[color], linewidths=width,
                                         label=f"level {level}: {int(counts[level]):,} directed edges"))
    if n_mesh <= 20000:
        ax.scatter(latlon[:, 1], latlon[:, 0], s=2, c="k", linewidths=0, label=f"{n_mesh:,} mesh nodes")
    ax.set_xlim(-180, 180)
    ax.set_ylim(-90, 90)
    ax.set_aspect("equal")
    ax.set_xlabel("longitude (deg)")
    ax.set_ylabel("latitude (deg)")
    n_edges = data[PROCESSOR].edge_index.shape[1]
    ax.set_title(f"multi-mesh: refinement {refinement}, {n_mesh:,} nodes, {n_edges:,} directed edges")
    ax.legend(loc="lower left", fontsize=7, framealpha=0.9)
    _save(fig, path)


def plot_edge_lengths(data: HeteroData, path: Path) -> None:
    """Writes histograms of great-circle edge lengths (km), one panel per edge set."""
    fig = Figure(figsize=(13, 3.8))
    for i, et in enumerate(EDGE_TYPES):
        ax = fig.add_subplot(1, 3, i + 1)
        km = edge_lengths_km(data, et)
        if km.size:
            if et == PROCESSOR and km.min() > 0:   # the levels span a factor 2**r: log axis
                ax.hist(km, bins=np.geomspace(km.min(), km.max() * 1.0001, 80), color="tab:blue")
                ax.set_xscale("log")
                ax.set_yscale("log")
            else:
                ax.hist(km, bins=60, color="tab:blue")
            ax.set_title(f"{EDGE_SET_NAMES[et]}: {km.size:,} edges\n"
                         f"{km.min():.0f}-{km.max():.0f} km, mean {km.mean():.0f} km", fontsize=9)
        else:
            ax.set_title(f"{EDGE_SET_NAMES[et]}: no edges", fontsize=9)
        ax.set_xlabel("great-circle length (km)")
        ax.set_ylabel("edges")
    fig.tight_layout()
    _save(fig, path)
