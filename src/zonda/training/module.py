"""The LightningModule: the science of training (loss, rollout, curriculum, metrics).

Everything about *how* training runs (devices, precision, clipping,
checkpointing, logging) is the Trainer's business (:mod:`zonda.training.train`).

* ``training_step``: an ``R``-step autoregressive rollout (``R`` = the batch's
  number of targets, set by the curriculum in the DataModule) with gradients
  through every step; the loss is :func:`~zonda.training.losses.rollout_loss`
  (GraphCast's: area- and channel-weighted MSE of the predicted states in
  units of the 6-hour tendency std, averaged over steps). Logs ``train/loss``
  (mean over data-parallel ranks, so the curve is the global batch's), the
  loss of each rollout step by its lead, ``train/loss/6h``, ``train/loss/12h``,
  ... (their mean is ``train/loss``: a longer rollout adds later, larger
  errors, which is why ``train/loss`` grows with the curriculum),
  ``train/lr`` and ``train/rollout_steps``.
* validation: a 4-step (24 h) rollout of every validation sample. Logs
  ``val/loss`` (the same rollout loss, 4 steps) and, per channel, the
  area-weighted RMSE in physical units at 6 h and 24 h as
  ``val/rmse/<variable>/<level>/<lead>`` (``val/rmse/surface_pressure/24h``
  for surface channels): ``sqrt(mean over samples of the area-weighted mean
  squared error)``. Sums are accumulated per rank and all-reduced once per
  validation, so the numbers do not depend on how samples were sharded.
* optimizer and LR scheduler from ``training.optimizer`` / ``training.scheduler``
  (``_target_``), learning rate ``training.lr``, the scheduler stepped every
  optimisation step.
* checkpoints carry ``zonda`` metadata (channels, model params, lineage hashes,
  RNG states); loading one checks every tensor name and shape.
"""

from __future__ import annotations

from typing import Any, Mapping

import lightning as L
import numpy as np
import torch

from zonda.channels import ChannelLayout
from zonda.models.saved import CheckpointError, check_state_dict
from zonda.params import TrainingParams
from zonda.training.checkpoints import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, collect_rng_states, restore_rng_states
from zonda.training.data import VALIDATION_STEPS
from zonda.training.errors import NonFiniteLossError
from zonda.training.losses import channel_weights, rollout_loss
from zonda.training.schedulers import build_scheduler
from zonda.variables import TIME_STEP_HOURS

#: Validation leads scored as RMSE: name -> rollout step (1-based).
VALIDATION_LEADS = {"6h": 1, "24h": 4}


def metric_name(name: str, level: int | None, lead: str) -> str:
    """``val/rmse/geopotential/500/6h`` or ``val/rmse/surface_pressure/6h``."""
    return f"val/rmse/{name}/{lead}" if level is None else f"val/rmse/{name}/{level}/{lead}"


def step_loss_name(step: int) -> str:
    """MLflow name of the loss of rollout step ``step`` (1-based), by its lead: ``train/loss/6h`` for step 1."""
    return f"train/loss/{step * TIME_STEP_HOURS}h"


class ForecastModule(L.LightningModule):
    """Trains a :class:`zonda.models.Forecaster` on rollouts of normalised tendencies.

    Args:
      forecaster: the model (physical units in and out; see ``zonda.models``).
      training: the ``training`` params (optimizer, scheduler, loss, weights, lr).
      layout: channel layout of the states ``(C,)``.
      area_weights: ``(G,)`` grid-cell area weights (WB2), any positive scale.
      static: ``(G, S)`` static fields in physical units (kept as a
        non-persistent buffer: data, not weights).
      metadata: JSON-able facts stored in every checkpoint under ``zonda``
        (channels, model params, lineage hashes, MLflow run id); a checkpoint
        whose ``channels``, ``forcings`` or ``static`` differ, or whose tensors
        do not fit the model, is refused on load.
      planned_steps: optimisation steps of the run (for schedules taking
        ``total_steps``); None asks the DataModule or the Trainer.
    """

    def __init__(
        self,
        forecaster: torch.nn.Module,
        training: TrainingParams,
        layout: ChannelLayout,
        area_weights: np.ndarray | torch.Tensor,
        static: torch.Tensor,
        metadata: Mapping[str, Any] | None = None,
        planned_steps: int | None = None,
    ) -> None:
        super().__init__()
        self.forecaster = forecaster
        self.training_params = training
        self.layout = layout
        self.metadata = dict(metadata or {})
        self.planned_steps = planned_steps
        weights = torch.as_tensor(channel_weights(layout, training.loss_weights), dtype=torch.float32)
        area = torch.as_tensor(np.asarray(area_weights), dtype=torch.float32)
        self.loss_fn = training.loss.instantiate(area_weights=area, channel_weights=weights)
        self.register_buffer("static", torch.as_tensor(static, dtype=torch.float32), persistent=False)
        self.register_buffer("metric_area", area / area.sum(), persistent=False)
        self._val_sums: dict[str, torch.Tensor] = {}
        self.last_validation_step: int | None = None
        self.validation_metrics: dict[str, float] = {}

    # ------------------------------------------------------------------ science

    def forward(self, states: torch.Tensor, forcings: torch.Tensor, steps: int) -> torch.Tensor:
        """Forecast ``(B, steps, G, C)`` from ``states (B, T_in, G, C)`` and ``forcings (B, T_in+steps, G, F)``."""
        return self.forecaster.rollout(states, forcings, self.static, steps)

    def _rollout(self, batch: Mapping[str, torch.Tensor]):
        return rollout_loss(
            self.forecaster, self.loss_fn, batch["states"], batch["forcings"], self.static, batch["targets"]
        )

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        result = self._rollout(batch)
        size = batch["states"].shape[0]
        self._check_finite(result.loss, batch_idx)
        self.log("train/loss", result.loss, on_step=True, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=size)
        for k, step_loss in enumerate(result.step_losses.detach(), start=1):  # (R,): train/loss is their mean
            self.log(step_loss_name(k), step_loss, on_step=True, on_epoch=False, sync_dist=True, batch_size=size)
        self.log("train/lr", float(self.trainer.optimizers[0].param_groups[0]["lr"]), on_step=True, on_epoch=False,
                 prog_bar=True, batch_size=size)
        self.log("train/rollout_steps", float(batch["targets"].shape[1]), on_step=True, on_epoch=False, batch_size=size)
        return result.loss

    def _check_finite(self, loss: torch.Tensor, batch_idx: int) -> None:
        """Raises NonFiniteLossError (on every rank alike) when a rank's loss is inf or nan, before the update.

        One host sync per step (the step history reads the loss anyway); Lightning's
        ``detect_anomaly`` would check every backward op instead, at many times the cost.
        """
        finite = bool(torch.isfinite(loss.detach()).item())
        if self._trainer is not None:
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        if not finite:
            step = int(self.trainer.global_step) if self._trainer is not None else None
            epoch = int(self.trainer.current_epoch) if self._trainer is not None else None
            raise NonFiniteLossError(
                f"training diverged: loss is {float(loss.detach())} at global step {step} (epoch {epoch}, batch {batch_idx}); "
                f"stopped before updating the weights, no model written (lower training.lr, or check the data and statistics)"
            )

    def on_validation_epoch_start(self) -> None:
        c, leads = len(self.layout), len(VALIDATION_LEADS)
        self._val_sums = {
            "loss": torch.zeros((), dtype=torch.float64, device=self.device),
            "count": torch.zeros((), dtype=torch.float64, device=self.device),
            "sq": torch.zeros((leads, c), dtype=torch.float64, device=self.device),
        }

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        if batch["targets"].shape[1] < max(VALIDATION_LEADS.values()):
            raise ValueError(
                f"validation batches hold {batch['targets'].shape[1]} target steps; the scored leads need "
                f"{max(VALIDATION_LEADS.values())} (the DataModule serves {VALIDATION_STEPS})"
            )
        result = self._rollout(batch)
        size = batch["states"].shape[0]
        sums = self._val_sums
        sums["loss"] += result.loss.detach().double() * size
        sums["count"] += size
        for j, step in enumerate(VALIDATION_LEADS.values()):
            err = (result.predictions[:, step - 1].float() - batch["targets"][:, step - 1].float()) ** 2  # (B, G, C)
            per_sample = torch.einsum("bgc,g->bc", err, self.metric_area)
            sums["sq"][j] += per_sample.double().sum(0)

    def on_validation_epoch_end(self) -> None:
        if not self._val_sums:
            return
        packed = torch.cat([self._val_sums["loss"][None], self._val_sums["count"][None], self._val_sums["sq"].reshape(-1)])
        packed = self.trainer.strategy.reduce(packed, reduce_op="sum")
        count = float(packed[1])
        if count == 0:
            return
        metrics = {"val/loss": float(packed[0]) / count}
        sq = packed[2:].reshape(len(VALIDATION_LEADS), len(self.layout)) / count
        for j, lead in enumerate(VALIDATION_LEADS):
            for c, (name, level) in enumerate(self.layout.entries):
                metrics[metric_name(name, level, lead)] = float(torch.sqrt(sq[j, c]))
        self.validation_metrics = metrics
        if not self.trainer.sanity_checking:
            self.last_validation_step = int(self.trainer.global_step)
        self.log("val/loss", torch.tensor(metrics["val/loss"]), prog_bar=True, sync_dist=False)
        self.log_dict({k: torch.tensor(v) for k, v in metrics.items() if k != "val/loss"}, sync_dist=False)

    # -------------------------------------------------------------- optimizers

    def configure_optimizers(self) -> dict[str, Any]:
        t = self.training_params
        optimizer = t.optimizer.instantiate(self.forecaster.parameters(), lr=t.lr)
        total = self.planned_steps
        if total is None:
            dm = getattr(self.trainer, "datamodule", None)
            if dm is not None and hasattr(dm, "planned_optimizer_steps"):
                total = dm.planned_optimizer_steps(self.trainer)
            else:
                total = self.trainer.estimated_stepping_batches
        scheduler = build_scheduler(t.scheduler, optimizer, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    # ------------------------------------------------------------- checkpoints

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["zonda"] = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            **self.metadata,
            "channels": self.layout.names,
            "rng": collect_rng_states(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        source = getattr(self.trainer, "ckpt_path", None) if self._trainer is not None else None
        source = source or "<checkpoint>"
        meta = checkpoint.get("zonda")
        if not isinstance(meta, dict):
            raise CheckpointError(f"{source}: not a zonda training checkpoint (no 'zonda' entry)")
        if meta.get("channels") != self.layout.names:
            raise CheckpointError(f"{source}: channels {meta.get('channels')} differ from this run's {self.layout.names}")
        for key in ("forcings", "static"):  # what the input channels mean; shapes are checked below
            if key in self.metadata and key in meta and meta[key] != self.metadata[key]:
                raise CheckpointError(f"{source}: '{key}' of the checkpoint ({meta[key]}) differs from this run's ({self.metadata[key]})")
        check_state_dict(checkpoint["state_dict"], self.state_dict(), source)
        if "rng" in meta:
            restore_rng_states(meta["rng"])

    def forecaster_state_dict(self) -> dict[str, torch.Tensor]:
        """The Forecaster's own ``state_dict`` (what ``weights.safetensors`` holds)."""
        return {k: v for k, v in self.forecaster.state_dict().items()}


def forecaster_weights_from_checkpoint(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The Forecaster's tensors of a training checkpoint (``forecaster.`` prefix removed)."""
    prefix = "forecaster."
    return {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
