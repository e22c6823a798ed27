"""``graph``: the icosahedral multi-mesh and the grid <-> mesh edges."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from zonda.params.base import Strict


class GraphParams(Strict):
    refinement: int = Field(3, ge=0, le=7, description="Icosahedral refinement r of the finest mesh: 10*4^r+2 nodes.")
    multimesh_include_level0: bool = Field(
        True, description="GraphCast's multi-mesh keeps the 60 icosahedron edges (anemoi-graphs drops them)."
    )
    encoder_radius_factor: float = Field(
        0.6, gt=0, description="Grid->mesh radius as a multiple of the longest finest-mesh edge (GraphCast: 0.6)."
    )
    decoder: Literal["containing_triangle", "knn"] = "containing_triangle"
    decoder_k: int = Field(3, ge=1, le=16, description="Neighbours per grid point when decoder is 'knn'.")
    on_uncovered: Literal["error", "warn"] = Field(
        "error", description="What to do when a mesh node has no encoder edge or a grid point no decoder edge."
    )
