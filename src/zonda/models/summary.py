"""Parameter counts per component (what ``zonda model summary`` prints)."""

from __future__ import annotations

from torch import nn

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
    counts = summary_dict(module)
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
