"""``model``: the encoder-processor-decoder network and the forecaster's input window."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from zonda.params.base import Strict


FusedKernels = Literal["auto", "on", "off"]


class ModelParams(Strict):
    processor: Literal["gnn", "graph_transformer", "transformer"] = "gnn"
    hidden_dim: int = Field(64, ge=8, le=4096)
    processor_layers: int = Field(4, ge=1, le=64)
    mlp_hidden_layers: int = Field(1, ge=0, le=8)
    num_heads: int = Field(4, ge=1, le=64)
    attention_window: int | None = Field(
        None, ge=1, description="Transformer processor: attend only to this many nearest mesh nodes in order (sliding window)."
    )
    activation: Literal["silu", "gelu", "relu"] = "silu"
    input_steps: int = Field(2, ge=1, le=4, description="Input states (t-6h, t) fed to the network.")
    gradient_checkpointing: bool = False
    mapper_chunks: int = Field(1, ge=1, description="Split encoder/decoder edge computation into this many chunks.")
    zonal_spectral_gain: bool = Field(
        False,
        description="Learn a gain per zonal wavenumber and channel on the predicted tendency "
        "(zonda.models.zonal_gain): damps the grid-scale power the data do not hold. Needs a regular lat-lon grid.",
    )
    zonal_gain_floor: float | None = Field(
        1e-3,
        gt=0.0,
        lt=1.0,
        description="With zonal_spectral_gain: on each latitude circle, keep only the wavenumbers below the first whose "
        "mean tendency power in the statistics is under this fraction of the circle's largest (the data's resolved "
        "band); null keeps every wavenumber.",
    )
    fused_kernels: FusedKernels = Field(
        "auto",
        description="Run the graph transformer's edge attention torch.compile-fused: 'auto' for edge sets large enough "
        "to repay compiling (zonda.models.compiled.AUTO_MIN_ELEMENTS) when a compiler is at hand, 'on' always, 'off' never.",
    )

    @field_validator("fused_kernels", mode="before")
    @classmethod
    def _yaml_on_off(cls, value: Any) -> Any:
        """YAML 1.1 reads a bare ``on``/``off`` as true/false: take those for the words."""
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _heads_divide(self) -> "ModelParams":
        if self.processor != "gnn" and self.hidden_dim % self.num_heads:
            raise ValueError(f"hidden_dim {self.hidden_dim} is not divisible by num_heads {self.num_heads}")
        return self
