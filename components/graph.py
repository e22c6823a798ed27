"""Component: stage 3, graph build."""

from kfp.dsl import Artifact, Dataset, Input, Output


def graph(params_json: str, snapshot: Input[Dataset], graph: Output[Artifact]) -> str:
    """Builds the multi-mesh and grid<->mesh edges for the snapshot's grid; returns the graph hash."""
    from zonda.params import params_from_json
    from zonda.stages import graph_stage

    manifest = graph_stage(params_from_json(params_json), snapshot.path, graph.path)
    graph.metadata.update({"graph_hash": manifest["graph_hash"], "counts": manifest["counts"]})
    return manifest["graph_hash"]
