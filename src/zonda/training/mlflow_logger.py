"""Lightning's ``MLFlowLogger``, losing no metric when the tracking server goes away mid-training.

MLflow's own asynchronous logging retries an unreachable server
(``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR``: minutes by
default), then drops the batch with an ERROR line; flushing a queue of such
batches waits one retry budget per ten batches; and Lightning's ``finalize`` at the
end of ``fit`` asks the server for the run, so an outage at that moment fails the
whole training with a raw traceback. :class:`RetainingMLFlowLogger` instead:

* keeps every metric value until the store has taken it: one background thread
  sends what is kept every ``send_interval_s`` in one ``log_batch`` (MLflow splits
  it into requests of 1000, each with MLflow's retries); a failed send keeps the
  values for the next one (re-sending is harmless: the store ignores a metric
  it already holds with the same key, step, timestamp and value);
* :meth:`settle` (after training, before the outputs are written) sends what is
  left, one more retry budget; if the server still does not answer, the values
  are written to ``unsent_file`` (beside ``last.ckpt``) and their count returned,
  so the stage can fail with one line naming the URI while the checkpoints stay
  intact; a run resumed from that ``last.ckpt`` :meth:`restore`\\ s and sends them;
* leaves the run RUNNING when Lightning finalizes it after ``fit``/``validate``
  (zonda ends it with :meth:`end` once the outputs are logged); a failed fit ends
  it FAILED when the server answers.

Rank 0 only logs (as Lightning's logger); the other ranks keep nothing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Mapping

from lightning.fabric.utilities.logger import _add_prefix
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from zonda.files import write_json_atomic
from zonda.tracking import shown_uri

log = logging.getLogger(__name__)

#: Metric values the tracking server had not taken when training ended (beside ``last.ckpt``).
UNSENT_FILE = "mlflow_unsent.json"
#: The characters MLflow takes in a metric key (Lightning's MLFlowLogger removes the others).
_KEY_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_/. -"


def _metric_key(key: str) -> str:
    """The key as Lightning's MLFlowLogger sends it (characters MLflow refuses removed)."""
    return "".join(ch for ch in key if ch in _KEY_CHARS)


class RetainingMLFlowLogger(MLFlowLogger):
    """``MLFlowLogger`` whose metrics survive a tracking-server outage (see the module docstring).

    Args:
      send_interval_s: seconds between two sends of the kept metrics.
      **kwargs: ``MLFlowLogger``'s (``synchronous`` is fixed: this logger does its own buffering).
    """

    def __init__(self, *, send_interval_s: float = 1.0, **kwargs: Any) -> None:
        super().__init__(synchronous=True, **kwargs)
        self.send_interval_s = float(send_interval_s)
        self._kept: list[tuple[str, Any]] = []  # (run_id, mlflow Metric), oldest first
        self._kept_lock = threading.Lock()  # guards _kept (training thread appends, sender removes)
        self._send_lock = threading.Lock()  # one send at a time (sender thread or settle)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._sender: threading.Thread | None = None
        self._failing = False
        self._restored_from: Path | None = None

    # ------------------------------------------------------------ logging

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        timestamp_ms = int(time.time() * 1000)
        run_id = self.run_id
        batch = [
            (run_id, Metric(key=_metric_key(k), value=float(v), timestamp=timestamp_ms, step=step or 0))
            for k, v in _add_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR).items()
            if not isinstance(v, str)
        ]
        with self._kept_lock:
            self._kept.extend(batch)
        self._start_sender()

    def kept(self) -> int:
        """How many metric values the store has not taken yet."""
        with self._kept_lock:
            return len(self._kept)

    def _start_sender(self) -> None:
        if self._sender is None and not self._stop.is_set():
            self._sender = threading.Thread(target=self._send_loop, name="zonda-mlflow-metrics", daemon=True)
            self._sender.start()

    def _stop_sender(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._sender is not None:
            self._sender.join()

    def _send_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.send_interval_s)
            self._wake.clear()
            self.send_kept()

    def send_kept(self) -> bool:
        """Sends every kept value now (MLflow's retries per request); True when none is left."""
        with self._send_lock:
            with self._kept_lock:
                batch = list(self._kept)
            if not batch:
                return True
            try:
                for run_id in dict.fromkeys(r for r, _ in batch):
                    self._mlflow_client.log_batch(run_id, metrics=[m for r, m in batch if r == run_id])
            except Exception as exc:  # noqa: BLE001 - any failure keeps the values for the next send
                if not self._failing:
                    log.warning(
                        "MLflow tracking server %s does not answer (%s): %d metric values kept, sent when it is back",
                        shown_uri(self._tracking_uri or ""), type(exc).__name__, len(batch),
                    )
                self._failing = True
                return False
            with self._kept_lock:
                del self._kept[: len(batch)]  # values logged meanwhile were appended after these
            if self._failing:
                log.warning(
                    "MLflow tracking server %s answers again: %d kept metric values logged",
                    shown_uri(self._tracking_uri or ""), len(batch),
                )
                self._failing = False
            return True

    # ----------------------------------------------------------- settling

    def restore(self, unsent_file: Path) -> int:
        """Takes the values an earlier run of this training left in ``unsent_file`` (if any); returns their count."""
        from mlflow.entities import Metric

        if not unsent_file.is_file():
            return 0
        entries = json.loads(unsent_file.read_text())["metrics"]
        with self._kept_lock:
            self._kept[:0] = [(e["run_id"], Metric(e["key"], e["value"], e["timestamp"], e["step"])) for e in entries]
        self._restored_from = unsent_file
        log.info("%d metric values an earlier run could not log are sent to MLflow", len(entries))
        return len(entries)

    def settle(self, unsent_file: Path) -> int:
        """Stops the sender and sends what is kept; returns how many values the store did not take.

        Those values are then in ``unsent_file`` (written atomically) for a resumed run; with none
        left, ``unsent_file`` and a restored file are removed.
        """
        self._stop_sender()
        if self.send_kept():
            for path in {unsent_file, self._restored_from} - {None}:
                path.unlink(missing_ok=True)
            return 0
        with self._kept_lock:
            kept = list(self._kept)
        write_json_atomic(unsent_file, {
            "tracking_uri": shown_uri(self._tracking_uri or ""),
            "metrics": [{"run_id": r, "key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step}
                        for r, m in kept],
        })
        return len(kept)

    # ------------------------------------------------------------ the run

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        """Lightning's end of ``fit``/``validate``: the run stays RUNNING (:meth:`end` ends it); a failure sends what is
        kept (if the server answers) and ends it FAILED."""
        if status != "failed" or not self._initialized:
            return
        self._stop_sender()
        self.send_kept()
        try:
            self._mlflow_client.set_terminated(self.run_id, "FAILED")
        except Exception as exc:  # noqa: BLE001 - the training's own error is the one to report
            log.warning("could not mark MLflow run %s FAILED: %s", self.run_id, exc)

    @rank_zero_only
    def end(self) -> None:
        """Ends the run FINISHED (after :meth:`settle` and the outputs)."""
        self._mlflow_client.set_terminated(self.run_id, "FINISHED")
