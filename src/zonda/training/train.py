"""Stage 4, training: snapshot + statistics + graph -> trained Forecaster weights.

:func:`train` wires the Lightning Trainer (the plumbing) around
:class:`~zonda.training.module.ForecastModule` (the science) and
:class:`~zonda.training.data.SnapshotDataModule`. Outputs in ``out_dir``::

    weights.safetensors     best Forecaster weights (by training.checkpoint.monitor)
    model.json              how to rebuild the model (+ lineage hashes, model_id, weights file sha256)
    checkpoints/            best-*.ckpt (top-k by the monitored metric) + last.ckpt, each with .sha256;
                            last.ckpt: every training.checkpoint.every_n_train_steps steps (else
                            every epoch), and the final state (max_steps, last epoch, early stop,
                            SIGTERM/preemption); validations.json: every validation so far, written
                            as each ends (a resumed run takes those its checkpoint missed)
    history.json            per-step loss / lr / step time, every validation's metrics
    params.resolved.yaml    the fully resolved params
    manifest.json           written last: the run's summary (its presence marks a complete run)

Checkpoints are written into ``out_dir/checkpoints`` as training goes (each
file atomically, so a killed run resumes from them); at the end the outputs are
finished as one directory like every stage's (:func:`zonda.outputs.write_output`),
with the checkpoints hard-linked in. A run first removes a previous
``manifest.json`` and, unless it resumes from a checkpoint inside
``out_dir/checkpoints``, the checkpoints there. Starting points
(``training.*``): ``resume_from`` continues a checkpoint exactly (model,
optimizer, scheduler, epoch/step, RNG, data order; same MLflow run as the
checkpoint unless ``mlflow_run_id`` is given), ``fork_from`` does the same in a
new MLflow run, ``warm_start_from`` loads only weights (safetensors) into a
fresh run.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar

from zonda import tracking
from zonda.console import adopt_library_loggers
from zonda.files import link_or_copy, write_json_atomic
from zonda.graph import load_graph
from zonda.graph.io import MANIFEST_FILE
from zonda.graph.io import read_manifest as read_graph_manifest
from zonda.grid import grid_area_weights
from zonda.models import Forecaster
from zonda.models.saved import (
    MODEL_CARD,
    WEIGHTS_FILE,
    check_state_dict,
    load_weights,
    model_card,
    save_weights,
    weights_content_id,
)
from zonda.outputs import write_output
from zonda.params import RESOLVED_PARAMS_FILENAME, Params
from zonda.provenance import MANIFEST_FILENAME, code_version, read_manifest, sha256_id
from zonda.statistics import load_statistics
from zonda.training.callbacks import (
    SIDECAR_FILE,
    CheckpointOnPreemption,
    MlflowExtras,
    ProgressLines,
    SaveFinalState,
    StopAtMaxSteps,
    TrainingHistory,
)
from zonda.training.checkpoints import SafeCheckpointIO, digest_path, load_training_checkpoint
from zonda.training.data import SnapshotDataModule
from zonda.training.errors import TrainingInputError
from zonda.training.mlflow_logger import UNSENT_FILE, RetainingMLFlowLogger
from zonda.training.module import ForecastModule, forecaster_weights_from_checkpoint
from zonda.training.precision import resolve_precision

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
CHECKPOINT_DIR = "checkpoints"
HISTORY_FILE = "history.json"
MANIFEST_KIND = "zonda.training"


# ------------------------------------------------------------------- lineage


def read_lineage(snapshot_dir: PathLike, statistics_dir: PathLike, graph_dir: PathLike) -> dict[str, str]:
    """snapshot_id, statistics_hash and graph_hash of the inputs, checked to belong together."""
    snapshot = read_manifest(snapshot_dir)
    if snapshot is None or "snapshot_id" not in snapshot:
        raise TrainingInputError(f"{Path(snapshot_dir) / 'manifest.json'}: missing or without snapshot_id (not a zonda snapshot)")
    stats = read_manifest(statistics_dir)
    if stats is None or "statistics_hash" not in stats:
        raise TrainingInputError(f"{Path(statistics_dir) / 'manifest.json'}: missing or without statistics_hash")
    if stats.get("snapshot_id") != snapshot["snapshot_id"]:
        raise TrainingInputError(
            f"{Path(statistics_dir) / 'manifest.json'}: statistics of snapshot {stats.get('snapshot_id')}, "
            f"but {Path(snapshot_dir) / 'manifest.json'} is snapshot {snapshot['snapshot_id']}"
        )
    graph = read_graph_manifest(Path(graph_dir))
    return {
        "snapshot_id": sha256_id(snapshot["snapshot_id"]),
        "statistics_hash": sha256_id(stats["statistics_hash"]),
        "graph_hash": sha256_id(graph["graph_hash"]),
        "_graph_manifest": str(Path(graph_dir) / MANIFEST_FILE),
    }


def _check_graph_grid(graph_meta: dict[str, Any], source: str, latitudes: np.ndarray, longitudes: np.ndarray) -> None:
    grid = graph_meta.get("grid", {})
    lat, lon = np.asarray(grid.get("latitudes", []), float), np.asarray(grid.get("longitudes", []), float)
    if lat.shape != latitudes.shape or lon.shape != longitudes.shape or not (
        np.allclose(lat, latitudes, atol=1e-6) and np.allclose(lon, longitudes, atol=1e-6)
    ):
        raise TrainingInputError(
            f"{source}: graph built for a {lat.size}x{lon.size} grid, the snapshot is "
            f"{latitudes.size}x{longitudes.size} (or its coordinates differ); rebuild the graph"
        )


# ---------------------------------------------------------------- utilities


def _global_rank_from_env() -> int:
    return int(getattr(rank_zero_only, "rank", 0) or 0)


def _prepare_out_dir(out_dir: Path, keep: Path | None) -> None:
    """Creates ``out_dir``; drops a previous run's outputs and (unless resuming from there) checkpoints.

    The manifest goes first (its presence marks a complete run), then the weights, model card and
    history, so a run that fails leaves nothing that looks like a trained model.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (MANIFEST_FILENAME, WEIGHTS_FILE, MODEL_CARD, HISTORY_FILE):
        (out_dir / name).unlink(missing_ok=True)
    ckpt_dir = out_dir / CHECKPOINT_DIR
    if ckpt_dir.is_dir():
        for f in ckpt_dir.glob(".*.tmp-*"):  # a killed run's unfinished checkpoint (files.atomic_path names)
            if f.is_file():
                f.unlink()
        inside = keep is not None and keep.resolve().parent == ckpt_dir.resolve()
        if not inside:
            for f in ckpt_dir.iterdir():
                if f.is_file() and (f.suffix == ".ckpt" or f.name.endswith(".ckpt.sha256") or f.name in (SIDECAR_FILE, UNSENT_FILE)):
                    f.unlink()
    ckpt_dir.mkdir(exist_ok=True)


def _unfinished_writes(directory: str, names: list[str]) -> set[str]:
    """A killed run's unfinished checkpoints in ``directory`` (:mod:`zonda.files` temporary names): not carried over."""
    return {name for name in names if name.startswith(".") and ".tmp-" in name}


def _mlflow_logger(params: Params, run_id: str | None, run_name: str, tags: dict[str, str]) -> Any:
    uri = tracking.tracking_uri(params)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    local_uri, local_artifacts = tracking.local_store(params)
    return RetainingMLFlowLogger(  # per-step metrics kept and sent in batches, none lost to an outage
        experiment_name=params.runtime.mlflow_experiment,
        run_name=run_name,
        tracking_uri=uri,
        tags=tags if run_id is None else None,
        artifact_location=local_artifacts if uri == local_uri else None,
        run_id=run_id,
        log_model=False,
    )


def _better(a: float, b: float, mode: str) -> bool:
    return a < b if mode == "min" else a > b


# --------------------------------------------------------------------- train


def _start_point(t: Any, forecaster: torch.nn.Module) -> tuple[Path | None, dict[str, Any], dict[str, torch.Tensor] | None]:
    """(checkpoint path, its ``zonda`` metadata, its state_dict) to resume/fork from; warm-starts in place."""
    if t.warm_start_from:
        forecaster.load_state_dict(load_weights(t.warm_start_from, expected=forecaster.state_dict()))
        log.info("warm start from %s", t.warm_start_from)
        return None, {}, None
    if t.resume_from or t.fork_from:
        path = Path(t.resume_from or t.fork_from)
        checkpoint = load_training_checkpoint(path)  # fail early, before any MLflow run is created
        return path, checkpoint["zonda"], checkpoint["state_dict"]
    return None, {}, None


def _tracking(
    params: Params, mlflow_run_id: str | None, start_path: Path | None, start_meta: dict[str, Any],
    lineage: dict[str, str], snapshot_dir: PathLike,
) -> tuple[Any, list[L.Callback]]:
    """The MLFlowLogger (run: given, the resumed checkpoint's, or new) and the MLflow extras callback."""
    t = params.training
    run_id = mlflow_run_id
    if run_id is None and t.resume_from:
        run_id = start_meta.get("mlflow_run_id")
    tags = {
        "zonda.stage": "train", "zonda.preset": params.name, **{f"zonda.{k}": str(v) for k, v in lineage.items()},
        **tracking.parent_tags(params),
    }
    if t.fork_from:
        tags["zonda.forked_from"] = str(start_path)
        if start_meta.get("mlflow_run_id"):
            tags["zonda.parent_run_id"] = str(start_meta["mlflow_run_id"])
    if t.resume_from:
        tags["zonda.resumed_from"] = str(start_path)
    logger = _mlflow_logger(params, run_id, f"{params.name}-train", tags)
    extras = MlflowExtras(
        logger,
        params_flat=tracking.flatten(params.public_dict()) if run_id is None else None,
        tags=tags,
        lineage=lineage,
        snapshot_uri=str(Path(snapshot_dir).resolve()),
        dataset_name=f"{params.name}-snapshot",
        system_metrics_interval_s=t.system_metrics_interval_s,
        tracking_uri=tracking.tracking_uri(params),
    )
    return logger, [extras]


def _checkpoint_callbacks(t: Any, ckpt_dir: Path) -> tuple[list[L.Callback], Any]:
    """``last.ckpt`` (periodic, at max_steps and on SIGTERM) and the top-k ``best-*.ckpt`` callback (or None)."""
    ck = t.checkpoint
    last = ckpt_dir / "last.ckpt"
    callbacks: list[L.Callback] = [
        CheckpointOnPreemption(last),
        ModelCheckpoint(  # every every_n_train_steps steps, else every epoch
            dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1, save_last=False,
            every_n_train_steps=ck.every_n_train_steps, enable_version_counter=False,
        ),
    ]
    if t.max_steps > 0:
        callbacks.append(StopAtMaxSteps(t.max_steps))
    callbacks.append(SaveFinalState(last, ck.every_n_train_steps))  # after StopAtMaxSteps: sees its stop
    best = None
    if ck.top_k > 0:
        best = ModelCheckpoint(  # saved when validation has scored the weights
            dirpath=ckpt_dir, filename="best-epoch{epoch:03d}-step{step:07d}", auto_insert_metric_name=False,
            monitor=ck.monitor, mode=ck.mode, save_top_k=ck.top_k, save_last=False,
        )
        callbacks.append(best)
    return callbacks, best


def _trainer(t: Any, callbacks: list[L.Callback], logger: Any, reload_every: int, out_dir: Path, progress: bool) -> L.Trainer:
    """The Lightning Trainer of the ``training`` params (devices, precision, clipping, accumulation, limits)."""
    return L.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=resolve_precision(t.precision, t.accelerator),
        max_epochs=t.max_epochs,
        max_steps=-1,  # a budget (max_steps > 0) is enforced by StopAtMaxSteps; 0 is refused by the params
        limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches,
        val_check_interval=t.val_check_interval,
        gradient_clip_val=t.gradient_clip.value,
        gradient_clip_algorithm=t.gradient_clip.algorithm,
        accumulate_grad_batches=t.accumulate_grad_batches,
        deterministic=t.deterministic,
        reload_dataloaders_every_n_epochs=reload_every,
        use_distributed_sampler=False,  # SnapshotDataModule shards per rank itself (restorable order)
        plugins=[SafeCheckpointIO()],
        callbacks=callbacks,
        logger=logger,
        log_every_n_steps=1,
        num_sanity_val_steps=1,
        enable_progress_bar=progress,
        enable_model_summary=progress,
        default_root_dir=str(out_dir),
    )


def train(
    params: Params,
    snapshot_dir: PathLike,
    statistics_dir: PathLike,
    graph_dir: PathLike,
    out_dir: PathLike,
    *,
    mlflow_run_id: str | None = None,
    progress: bool = True,
    track: bool = True,
    callbacks: Sequence[L.Callback] = (),
) -> dict[str, Any]:
    """Trains the Forecaster of ``params`` and writes the training artifact to ``out_dir``.

    Args:
      params: resolved params (``data``, ``model``, ``training``, ``runtime`` are used).
      snapshot_dir, statistics_dir, graph_dir: outputs of stages 1-3.
      out_dir: where the outputs go (see the module docstring).
      mlflow_run_id: the pipeline's MLflow run to log into; None: the resumed
        checkpoint's run (``resume_from``) or a new run.
      progress: Rich progress bar and model summary (on a terminal); otherwise progress lines
        (:class:`~zonda.training.callbacks.ProgressLines`) on :data:`zonda.console.CONSOLE`.
      track: log to MLflow at all.
      callbacks: extra Lightning callbacks.

    Returns:
      The manifest (also written to ``out_dir/manifest.json``) on global rank
      0; ``{"kind": ..., "rank": r}`` on the other ranks.
    """
    started = time.time()
    adopt_library_loggers()  # Lightning's and MLflow's own console handlers, if imported inside a stage
    t = params.training
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / CHECKPOINT_DIR
    lineage = read_lineage(snapshot_dir, statistics_dir, graph_dir)
    graph_manifest = lineage.pop("_graph_manifest")

    torch.set_float32_matmul_precision(t.float32_matmul_precision)
    L.seed_everything(t.seed, workers=True, verbose=False)

    # -- data and model (the science)
    datamodule = SnapshotDataModule(params, snapshot_dir)
    graph = load_graph(Path(graph_dir))
    _check_graph_grid(graph.graph_meta, graph_manifest, datamodule.latitudes, datamodule.longitudes)
    forecaster = Forecaster.build(
        params, graph, datamodule.layout, datamodule.forcing_names, datamodule.static_names, load_statistics(statistics_dir)
    )
    start_path, start_meta, start_state = _start_point(t, forecaster)
    module = ForecastModule(
        forecaster,
        t,
        datamodule.layout,
        grid_area_weights(datamodule.latitudes, datamodule.longitudes.size),
        datamodule.static,
        metadata={
            "model": params.model.model_dump(mode="json"),
            "forcings": datamodule.forcing_names,
            "static": datamodule.static_names,
            **lineage,
        },
    )
    if start_state is not None:
        check_state_dict(start_state, module.state_dict(), start_path)
        start_state = None
    if _global_rank_from_env() == 0:
        _prepare_out_dir(out_dir, start_path)

    # -- the plumbing
    logger, cbs = (_tracking(params, mlflow_run_id, start_path, start_meta, lineage, snapshot_dir) if track else (False, []))
    history = TrainingHistory(global_batch_size=t.batch_size, sidecar=ckpt_dir / SIDECAR_FILE, resumed_from=start_path)
    ckpt_cbs, best_cb = _checkpoint_callbacks(t, ckpt_dir)
    cbs = [history, *cbs, *ckpt_cbs]
    if t.early_stopping.enabled:
        es = t.early_stopping
        cbs.append(EarlyStopping(monitor=es.monitor, patience=es.patience, mode=es.mode))
    cbs.append(RichProgressBar() if progress else ProgressLines(max_steps=t.max_steps if t.max_steps > 0 else None))
    cbs.extend(callbacks)
    trainer = _trainer(t, cbs, logger, datamodule.reload_every_n_epochs, out_dir, progress)
    history.global_batch_size = t.batch_size * int(trainer.world_size)
    run_id = mlflow_run_id
    if logger and _global_rank_from_env() == 0:
        run_id = logger.run_id  # creates the run now (rank 0 only)
        module.metadata["mlflow_run_id"] = run_id
        if start_path is not None and t.resume_from:
            logger.restore(start_path.parent / UNSENT_FILE)  # what the interrupted run could not log

    trainer.fit(module, datamodule=datamodule, ckpt_path=str(start_path) if start_path else None, weights_only=True)

    # Score the final weights if the last step was not validated.
    if t.limit_val_batches != 0 and module.last_validation_step != trainer.global_step:
        trainer.validate(module, datamodule=datamodule, verbose=False)
        if module.validation_metrics:
            history.record_validation(trainer, module.validation_metrics, final=True)
    if trainer.global_step == 0:
        raise TrainingInputError(
            f"{out_dir}: training ran no optimisation step (check training.max_epochs, limit_train_batches and the "
            f"train split {params.data.splits.train.as_str()}); no model written"
        )
    final_validated = bool(history.validations) and history.validations[-1]["global_step"] == trainer.global_step
    if logger and trainer.is_global_zero:
        _settle_metrics(logger, params, ckpt_dir)
    if not trainer.is_global_zero:
        return {"kind": MANIFEST_KIND, "rank": int(trainer.global_rank)}

    # -- outputs (rank 0), finished as one directory (zonda.outputs); the checkpoints are linked in
    weights, best = _best_weights(module, best_cb, t.checkpoint.monitor, t.checkpoint.mode, final_validated)
    model_id = weights_content_id(weights)
    network = getattr(forecaster, "network", None)

    def write(tmp: Path) -> dict[str, Any]:
        shutil.copytree(ckpt_dir, tmp / CHECKPOINT_DIR, copy_function=link_or_copy, ignore=_unfinished_writes)
        weights_sha = save_weights(weights, tmp / WEIGHTS_FILE, metadata={k: str(v) for k, v in lineage.items()})
        card = model_card(
            model_params=params.model.model_dump(mode="json"),
            layout=datamodule.layout,
            forcing_names=datamodule.forcing_names,
            static_names=datamodule.static_names,
            in_channels=int(getattr(network, "in_channels", 0)),
            out_channels=int(getattr(network, "out_channels", len(datamodule.layout))),
            latitudes=datamodule.latitudes,
            longitudes=datamodule.longitudes,
            lineage=lineage,
            weights_sha256=weights_sha,
            model_id=model_id,
            training={
                "global_step": int(trainer.global_step), "epochs": int(trainer.current_epoch),
                "precision": str(trainer.precision), **best,
            },
        )
        write_json_atomic(tmp / MODEL_CARD, card)
        write_json_atomic(tmp / HISTORY_FILE, history.as_dict())
        return {
            "kind": MANIFEST_KIND,
            "model_id": model_id,
            **lineage,
            "weights": {"file": WEIGHTS_FILE, "sha256": weights_sha, **best},
            "global_step": int(trainer.global_step),
            "epochs": int(trainer.current_epoch),
            "metrics": dict(module.validation_metrics),
            "throughput": history.summary(),
            "checkpoints": sorted(p.name for p in (tmp / CHECKPOINT_DIR).glob("*.ckpt")),
            "start": {"resume_from": t.resume_from, "fork_from": t.fork_from, "warm_start_from": t.warm_start_from},
            "mlflow_run_id": run_id if track else None,
            "seconds": round(time.time() - started, 3),
            "code_version": code_version(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    manifest = write_output(params, out_dir, write)
    if track and logger:
        from mlflow.exceptions import MlflowException

        try:
            _log_outputs(logger, out_dir, manifest, best.get("checkpoint"))
        except (MlflowException, OSError) as exc:  # the server gone after MLflow's retries: one line, the model stands
            raise tracking.TrackingServerLost(
                f"MLflow tracking server {tracking.shown_uri(tracking.tracking_uri(params))} failed while the "
                f"outputs were logged to run {run_id} ({type(exc).__name__}); the trained model in {out_dir} is "
                f"complete (manifest.json), its artifacts are not in the run"
            ) from exc
    return manifest


def _settle_metrics(logger: RetainingMLFlowLogger, params: Params, ckpt_dir: Path) -> None:
    """Every metric value in the store, or TrackingServerLost (before any output is written; checkpoints intact)."""
    unsent = logger.settle(ckpt_dir / UNSENT_FILE)
    if unsent:
        last = ckpt_dir / "last.ckpt"
        raise tracking.TrackingServerLost(
            f"MLflow tracking server {tracking.shown_uri(tracking.tracking_uri(params))} stopped answering during "
            f"training: {unsent} metric values of run {logger.run_id} are kept in {ckpt_dir / UNSENT_FILE}, no model "
            f"was written; when it answers again, resume with training.resume_from={last} (trains no further step, "
            f"logs them, writes the model)"
        )


def _best_weights(
    module: ForecastModule, checkpoint_cb: Any, monitor: str, mode: str, final_validated: bool
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The best Forecaster weights: the best top-k checkpoint, or the final weights if they score better."""
    best_path = getattr(checkpoint_cb, "best_model_path", "") or ""
    best_score = getattr(checkpoint_cb, "best_model_score", None)
    best_score = float(best_score) if best_score is not None else None
    final_score = module.validation_metrics.get(monitor) if final_validated else None
    use_final = (
        not best_path
        or not Path(best_path).is_file()
        or best_score is None
        or (final_score is not None and not _better(best_score, final_score, mode))
    )
    if use_final:
        return module.forecaster_state_dict(), {
            "source": "final", "monitor": monitor, "score": final_score, "checkpoint": None,
        }
    weights = forecaster_weights_from_checkpoint(load_training_checkpoint(best_path))
    return weights, {"source": "checkpoint", "monitor": monitor, "score": best_score, "checkpoint": best_path}


def _log_outputs(logger: Any, out_dir: Path, manifest: dict[str, Any], best_checkpoint: str | None) -> None:
    """Final metrics, throughput and the artifact files into the run (rank 0)."""
    import mlflow

    client, run_id = logger.experiment, logger.run_id
    mlflow.flush_async_logging()  # every queued per-step metric is in the store before the run ends
    throughput = manifest.get("throughput", {})
    if throughput.get("samples_per_second"):
        client.log_metric(run_id, "train/samples_per_second", float(throughput["samples_per_second"]))
    for name in (WEIGHTS_FILE, MODEL_CARD, HISTORY_FILE, MANIFEST_FILENAME, RESOLVED_PARAMS_FILENAME):
        if (out_dir / name).is_file():
            client.log_artifact(run_id, str(out_dir / name), artifact_path="train")
    if best_checkpoint and Path(best_checkpoint).is_file():
        client.log_artifact(run_id, best_checkpoint, artifact_path="train/checkpoints")
        client.log_artifact(run_id, str(digest_path(best_checkpoint)), artifact_path="train/checkpoints")
    logger.end()
