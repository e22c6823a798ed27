"""Parameter counts per component (what ``zonda model summary`` prints)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from torch import nn

if TYPE_CHECKING:
    from zonda.params import Params

COMPONENTS = ("embedders", "encoder", "processor", "decoder")


def summary_dict(module: nn.Module) -> dict[str, int]:
    """Trainable-or-not parameter counts: ``{embedders, encoder, processor, decoder, [other], total}``.

    ``module`` is an :class:`~zonda.models.encode_process_decode.EncodeProcessDecode`
    or anything holding one as ``.network`` (a Forecaster). Parameters outside
    the four components are reported as ``other`` when there are any.
    """
    network = getattr(module, "network", module)
    counts = {name: _count(getattr(network, name, None)) for name in COMPONENTS}
    total = _count(module)
    other = total - sum(counts.values())
    if other:
        counts["other"] = other
    counts["total"] = total
    return counts


def summary(module: nn.Module) -> str:
    """A text table of :func:`summary_dict`, with each component's share of the total."""
    return _table(summary_dict(module))


def _table(counts: dict[str, int]) -> str:
    total = max(counts["total"], 1)
    width = max(len(f"{n:,}") for n in counts.values())
    lines = [f"{'component':<10}  {'parameters':>{width}}  {'share':>6}", "-" * (22 + width)]
    for name, n in counts.items():
        if name == "total":
            lines.append("-" * (22 + width))
        lines.append(f"{name:<10}  {n:>{width},}  {100.0 * n / total:>5.1f}%")
    return "\n".join(lines)


def _count(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def params_summary_dict(params: "Params") -> dict[str, int]:
    """:func:`summary_dict` of the network ``params`` describes, without building its graph.

    Parameter counts depend on the channel counts (``data.variables`` x
    ``data.levels``, forcings, static fields, ``model.input_steps``) and the
    ``model`` section, not on the graph's size: the network is built on a
    tiny stand-in graph with the same node and edge feature widths.
    """
    from zonda.channels import ChannelLayout
    from zonda.models.encode_process_decode import build_network
    from zonda.models.forecaster import input_channels
    from zonda.models.toy_graph import toy_graph

    layout = ChannelLayout.of(params.data.variables, params.data.levels)
    steps = params.model.input_steps
    in_channels = input_channels(steps, len(layout), len(params.data.forcings), len(params.data.static))
    graph = toy_graph(np.array([-45.0, 45.0]), np.array([0.0, 120.0, 240.0]), num_mesh=12)
    return summary_dict(build_network(params.model, graph, in_channels, len(layout)))


def params_summary(params: "Params") -> str:
    """Text table of :func:`params_summary_dict` (what ``zonda model summary`` prints)."""
    counts = params_summary_dict(params)
    header = f"model: processor={params.model.processor} hidden_dim={params.model.hidden_dim} layers={params.model.processor_layers}"
    return header + "\n" + _table(counts)
