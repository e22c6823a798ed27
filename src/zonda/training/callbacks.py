"""Trainer plumbing callbacks: a step history with throughput, and MLflow extras.

* :class:`TrainingHistory` records on rank 0, per training batch, the global
  step, epoch, global-batch loss, learning rate, rollout length and the wall
  time since the previous batch (data loading included), and each
  validation's metrics, and carries them through checkpoints (a resumed run's
  history starts at step 0); each validation is also written at once, atomically,
  to a sidecar beside the checkpoints, so one that ran after the last checkpoint
  and before a crash is in the resumed history too; :meth:`TrainingHistory.summary` gives the steady-state
  throughput (median step time, first batch of an epoch and batches after a
  validation left out).
* :class:`MlflowExtras` (rank 0) logs what Lightning's ``MLFlowLogger`` does
  not: the flat resolved params and tags of a new run, the dataset lineage
  (``mlflow.log_input`` of a dataset carrying the snapshot ID, statistics and
  graph hashes) and system metrics (``system/*``: CPU, memory, disk,
  network, GPU when available) sampled every ``training.system_metrics_interval_s``
  seconds while training runs, with a last sample when it ends, so even a run
  shorter than one interval has a row.
* :class:`ProgressLines` (rank 0) says how training goes in plain lines on the
  console (:data:`zonda.console.CONSOLE`) where no progress bar is drawn: every
  few optimisation steps, at each validation and at the end of each epoch.
"""

from __future__ import annotations

import json
import logging
import math
import statistics as pystats
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from zonda.console import CONSOLE
from zonda.files import write_json_atomic

log = logging.getLogger(__name__)


class TrainingHistory(Callback):
    """Per-batch training record and validation metrics (rank 0 keeps them; other ranks keep nothing).

    ``global_step`` of a batch record is the number of optimisation steps done
    before it (0 for the first batch) and ``lr`` the learning rate it used;
    validations record the steps done.

    Validations survive a crash between checkpoints: each is written at once
    (atomically) to ``sidecar``, and a resumed run takes from the sidecar beside
    the checkpoint it starts from (``resumed_from``) the validation at the
    checkpoint's step if its own history lacks it: Lightning does not repeat a
    validation that ran after the checkpoint was written (a checkpoint saved at an
    epoch's last batch precedes that epoch's validation). It scored the
    checkpoint's weights, so it is the uninterrupted run's. Later validations are
    not taken: the resumed run redoes their steps and validates them itself.
    A history holds one validation per step (the weights after that many steps):
    a repeat (the final validation of a run resumed from its final checkpoint)
    is not recorded again.

    Args:
      global_batch_size: samples per optimisation micro-step over all ranks (for throughput).
      sidecar: where this run writes its validations (None: nowhere).
      resumed_from: the checkpoint this run resumes from (None: a fresh run).
    """

    def __init__(self, global_batch_size: int, *, sidecar: Path | None = None, resumed_from: Path | None = None) -> None:
        self.global_batch_size = int(global_batch_size)
        self.sidecar = sidecar
        self.resumed_from = resumed_from
        self.steps: list[dict[str, Any]] = []
        self.validations: list[dict[str, Any]] = []
        self._last: float | None = None
        self._first_in_epoch = True
        self._after_validation = False
        self._step = 0
        self._lr = float("nan")

    def state_dict(self) -> dict[str, Any]:
        """The records so far, saved in every checkpoint, so a resumed run's history holds the whole run."""
        return {"steps": [dict(s) for s in self.steps], "validations": [dict(v) for v in self.validations]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.steps = [dict(s) for s in state_dict.get("steps", [])]
        self.validations = [dict(v) for v in state_dict.get("validations", [])]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A resumed run (its checkpoint's history loaded) takes the validations its checkpoint missed."""
        if self.resumed_from is None or not trainer.is_global_zero:
            return
        source = Path(self.resumed_from).parent / SIDECAR_FILE
        if not source.is_file():
            return
        step = int(trainer.global_step)
        if any(v["global_step"] == step for v in self.validations):
            return
        taken = [dict(v) for v in json.loads(source.read_text()).get("validations", []) if v.get("global_step") == step]
        if taken:
            self.validations.append(taken[0])
            log.info("resumed at step %d: its validation, run after the checkpoint, taken from %s", step, source)

    def record_validation(self, trainer: L.Trainer, metrics: Mapping[str, Any], **extra: Any) -> None:
        """Records a validation of the weights after ``trainer.global_step`` steps (rank 0; once per step), and
        writes the validations so far to the sidecar."""
        if not trainer.is_global_zero:
            return
        if any(v["global_step"] == int(trainer.global_step) for v in self.validations):
            return  # the same weights scored again: already recorded
        self.validations.append(
            {"global_step": int(trainer.global_step), "epoch": int(trainer.current_epoch), **extra, **metrics}
        )
        if self.sidecar is not None:
            write_json_atomic(self.sidecar, {"validations": self.validations})

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last = time.perf_counter()
        self._first_in_epoch = True

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._after_validation = True

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self._step = int(trainer.global_step)
        self._lr = float(trainer.optimizers[0].param_groups[0]["lr"]) if trainer.optimizers else float("nan")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        now = time.perf_counter()
        seconds = now - self._last if self._last is not None else float("nan")
        self._last = now
        if trainer.is_global_zero:
            metrics = trainer.callback_metrics
            loss = metrics.get("train/loss_step", metrics.get("train/loss"))
            targets = batch["targets"] if isinstance(batch, Mapping) else None
            self.steps.append(
                {
                    "global_step": self._step,
                    "epoch": int(trainer.current_epoch),
                    "batch": int(batch_idx),
                    "loss": float(loss) if loss is not None else float("nan"),
                    "lr": self._lr,
                    "rollout": int(targets.shape[1]) if targets is not None else None,
                    "seconds": seconds,
                    "steady": not (self._first_in_epoch or self._after_validation),
                }
            )
        self._first_in_epoch = False
        self._after_validation = False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":  # trainer.validate: the caller records it
            self.record_validation(trainer, getattr(pl_module, "validation_metrics", {}) or {})

    def summary(self) -> dict[str, Any]:
        """Median step time and samples/s over the steady batches (all batches if none is steady)."""
        times = [s["seconds"] for s in self.steps if s["steady"]] or [s["seconds"] for s in self.steps[1:]]
        times = [t for t in times if t == t]
        if not times:
            return {"batches": len(self.steps)}
        median = pystats.median(times)
        return {
            "batches": len(self.steps),
            "median_step_seconds": median,
            "samples_per_second": self.global_batch_size / median if median > 0 else None,
            "global_batch_size": self.global_batch_size,
        }

    def as_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "steps": self.steps, "validations": self.validations}


#: The file beside the checkpoints that every validation is written to as it ends (:class:`TrainingHistory`).
SIDECAR_FILE = "validations.json"


class ProgressLines(Callback):
    """Training progress as console lines (rank 0), for consoles without a progress bar.

    ``train: epoch E/M step S/T loss L (N s)`` every ``every_n_steps`` optimisation steps (by default a
    tenth of the run, at least 1), ``train: epoch E/M done at step S/T ...`` at the end of each epoch and
    ``train: validation at step S: val/loss V`` after each validation. ``T`` is ``max_steps`` when given
    (``training.max_steps``, which :class:`StopAtMaxSteps` enforces), else ``~T``, Lightning's estimate
    (from the first epoch's batches; a rollout curriculum changes later epochs' count).
    """

    def __init__(self, *, max_steps: int | None = None, every_n_steps: int | None = None) -> None:
        self.max_steps = max_steps
        self.every_n_steps = every_n_steps
        self._total: int | None = None
        self._of = ""
        self._every = 1
        self._said = -1
        self._started = time.monotonic()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        estimate = trainer.estimated_stepping_batches  # from the first epoch's batches: later ones may differ
        estimate = int(estimate) if math.isfinite(estimate) else None
        if self.max_steps and (estimate is None or self.max_steps <= estimate):
            self._total, self._of = self.max_steps, f"/{self.max_steps}"
        else:
            self._total, self._of = estimate, f"/~{estimate}" if estimate else ""
        self._every = self.every_n_steps or (max(1, self._total // 10) if self._total else 50)
        self._started = time.monotonic()

    def _line(self, trainer: L.Trainer, what: str) -> None:
        loss = trainer.callback_metrics.get("train/loss_step", trainer.callback_metrics.get("train/loss"))
        shown = f" loss {float(loss):.4g}" if loss is not None else ""
        CONSOLE.info(
            "train: epoch %d/%d %sstep %d%s%s (%.0f s)", trainer.current_epoch + 1, trainer.max_epochs or 0, what,
            trainer.global_step, self._of, shown, time.monotonic() - self._started,
        )

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = int(trainer.global_step)
        if trainer.is_global_zero and step > 0 and step % self._every == 0 and step != self._said:
            self._said = step
            self._line(trainer, "")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self._line(trainer, "done at ")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking:
            value = trainer.callback_metrics.get("val/loss")
            if value is not None:
                CONSOLE.info("train: validation at step %d: val/loss %.4g", trainer.global_step, float(value))


def log_lineage(client: Any, run_id: str, lineage: Mapping[str, str], snapshot_uri: str, name: str) -> None:
    """Logs to run ``run_id`` (through ``client``, leaving the run's status alone) a metadata-only dataset input
    for the snapshot, context ``training``, tagged with every hash."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    with warnings.catch_warnings():  # a local path matches several equivalent local source classes
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(snapshot_uri)
    digest = str(lineage["snapshot_id"]).removeprefix("sha256:")[:16]
    dataset = Dataset(**MetaDataset(source=source, name=name, digest=digest).to_dict())
    tags = [InputTag(f"zonda.{k}", str(v)) for k, v in lineage.items()] + [InputTag(MLFLOW_DATASET_CONTEXT, "training")]
    client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags)])


class MlflowExtras(Callback):
    """Rank-0 MLflow logging around ``fit`` (see the module docstring).

    Args:
      logger: the run's ``MLFlowLogger``.
      params_flat: flat params to log (only for a run this training created).
      tags: run tags.
      lineage: snapshot_id, statistics_hash, graph_hash.
      snapshot_uri: where the snapshot lives (dataset source).
      dataset_name: name of the logged dataset.
      system_metrics_interval_s: seconds between MLflow system-metrics samples (None: no monitor).
      tracking_uri: the store.
    """

    def __init__(
        self,
        logger: Any,
        *,
        params_flat: Mapping[str, str] | None,
        tags: Mapping[str, str],
        lineage: Mapping[str, str],
        snapshot_uri: str,
        dataset_name: str,
        system_metrics_interval_s: float | None,
        tracking_uri: str,
    ) -> None:
        self.logger = logger
        self.params_flat = dict(params_flat) if params_flat else None
        self.tags = dict(tags)
        self.lineage = dict(lineage)
        self.snapshot_uri = snapshot_uri
        self.dataset_name = dataset_name
        self.system_metrics_interval_s = system_metrics_interval_s
        self.tracking_uri = tracking_uri
        self._monitor: Any = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        from mlflow.entities import Param, RunTag

        client, run_id = self.logger.experiment, self.logger.run_id
        if self.params_flat:
            items = [Param(k, v) for k, v in self.params_flat.items()]
            for i in range(0, len(items), 100):
                client.log_batch(run_id, params=items[i : i + 100])
        client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in self.tags.items()])
        try:
            log_lineage(client, run_id, self.lineage, self.snapshot_uri, self.dataset_name)
        except Exception as exc:  # noqa: BLE001 - lineage must not kill a training run
            log.warning("could not log the dataset lineage to MLflow: %s", exc)
        if self.system_metrics_interval_s is not None:
            self._start_monitor(run_id)

    def _start_monitor(self, run_id: str) -> None:
        """MLflow's monitor (a thread logging ``system/*`` every interval), its steps after any of the run's earlier ones."""
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            self._monitor = SystemMetricsMonitor(
                run_id, sampling_interval=self.system_metrics_interval_s, resume_logging=True,
                tracking_uri=self.tracking_uri,
            )
            self._monitor.start()
        except Exception as exc:  # noqa: BLE001 - monitoring must not kill a training run
            log.warning("MLflow system metrics unavailable: %s", exc)
            self._monitor = None

    def _stop(self) -> None:
        """Stops the monitor and logs the samples of the last, partial interval (the monitor drops them)."""
        monitor, self._monitor = self._monitor, None
        if monitor is None:
            return
        try:
            monitor.finish()
            metrics = monitor.aggregate_metrics()
            if metrics:
                monitor.publish_metrics(metrics)
                monitor.mlflow_logger.flush()
        except Exception as exc:  # noqa: BLE001 - monitoring must not kill a training run
            log.warning("could not log the last MLflow system metrics: %s", exc)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._stop()


class StopAtMaxSteps(Callback):
    """Ends training after ``max_steps`` optimisation steps (:class:`SaveFinalState` saves that state).

    The Trainer itself runs with ``max_steps=-1``: Lightning 2.6 resumes an
    iteration-based run (``max_steps > 0``) from an end-of-epoch checkpoint
    with its epoch counter one ahead (the next epoch is skipped). Stopping
    through ``trainer.should_stop`` keeps the loops epoch-based, validates the
    final weights, and the checkpoint taken at the batch end resumes exactly.

    Args:
      max_steps: the step budget (> 0).
    """

    def __init__(self, max_steps: int) -> None:
        self.max_steps = int(max_steps)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Resumed from a checkpoint written at the budget (a crash between the final checkpoint and the
        # manifest): the fit loop checks ``should_stop`` before its first batch, so no step is added.
        if trainer.global_step >= self.max_steps:
            trainer.should_stop = True
            log.info("resumed at step %d: max_steps=%d already reached, nothing to train", trainer.global_step, self.max_steps)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step >= self.max_steps and not trainer.should_stop:
            trainer.should_stop = True
            log.info("stopping: max_steps=%d reached", self.max_steps)


class SaveFinalState(Callback):
    """Saves ``last.ckpt`` with the state training ends in, whatever ends it.

    The periodic ``ModelCheckpoint`` writing ``last.ckpt`` every
    ``every_n_train_steps`` steps leaves it behind the final state when the
    run ends between two of its steps: at ``max_steps`` (a batch end, after
    :class:`StopAtMaxSteps`), after the last epoch, or by early stopping (an
    epoch end). This callback saves at those points unless the periodic
    checkpoint saves the same step (Lightning runs checkpoint callbacks after
    the others), so the state is written once. Without ``every_n_train_steps``
    the periodic checkpoint saves every epoch end itself.

    Args:
      path: ``last.ckpt``.
      every_n_train_steps: the periodic checkpoint's interval (None: every epoch).
    """

    def __init__(self, path: Any, every_n_train_steps: int | None) -> None:
        self.path = path
        self.every_n_train_steps = every_n_train_steps
        self._saved_step: int | None = None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.should_stop:
            self._save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        last_epoch = trainer.max_epochs is not None and 0 <= trainer.max_epochs <= trainer.current_epoch + 1
        if self.every_n_train_steps is not None and (trainer.should_stop or last_epoch):
            self._save(trainer)

    def _save(self, trainer: L.Trainer) -> None:
        step, every = trainer.global_step, self.every_n_train_steps
        if step == self._saved_step or (every is not None and step % every == 0):
            return
        trainer.save_checkpoint(self.path, weights_only=False)
        self._saved_step = step


class CheckpointOnPreemption(Callback):
    """Saves ``last.ckpt`` when the run is preempted (SIGTERM, e.g. a Kubernetes eviction).

    Lightning turns SIGTERM into a ``SIGTERMException`` between two batches (all
    ranks at the same point), where the training state is consistent, so the
    checkpoint resumes exactly. Other exceptions save nothing: a state torn in
    the middle of a step would not.
    """

    def __init__(self, path: Any) -> None:
        self.path = path

    def state_dict(self) -> dict[str, Any]:
        return {}

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and trainer.training:
            trainer.save_checkpoint(self.path, weights_only=False)
            log.warning("preempted (SIGTERM) at step %d: saved %s", trainer.global_step, self.path)
