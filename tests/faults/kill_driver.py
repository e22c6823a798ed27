"""Runs one training and SIGKILLs itself at a chosen point (run as a script by test_process_faults; no tests here).

    python kill_driver.py PARAMS_YAML SNAPSHOT STATISTICS GRAPH OUT EVENT N

EVENT, N: ``batch_start K`` (before optimisation step K), ``batch_end K`` (after step K's update, before its
checkpoint), ``ckpt_written N`` (the N-th checkpoint file written, not yet in place), ``sidecar_written N`` (its
digest sidecar replaced, the file not yet renamed), ``train_end 0`` (after the final checkpoint, before any output).
"""

from __future__ import annotations

import os
import signal
import sys

import lightning as L
import torch


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillAt(L.Callback):
    def __init__(self, event: str, n: int) -> None:
        self.event, self.n = event, n

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.event == "batch_start" and trainer.global_step == self.n:
            die()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.event == "batch_end" and trainer.global_step == self.n:
            die()

    def on_train_end(self, trainer, pl_module):
        if self.event == "train_end":
            die()


def kill_inside_checkpoint_writes(event: str, n: int) -> None:
    """Wraps the checkpoint writer's torch.save / sidecar write to die after the n-th one."""
    from zonda.training import checkpoints

    count = {"calls": 0}

    def counted(real):
        def wrapper(*args, **kwargs):
            result = real(*args, **kwargs)
            count["calls"] += 1
            if count["calls"] == n:
                die()
            return result
        return wrapper

    if event == "ckpt_written":
        torch.save = counted(torch.save)  # only the checkpoint writer saves with torch.save in a training run
    elif event == "sidecar_written":
        checkpoints.write_bytes_atomic = counted(checkpoints.write_bytes_atomic)


def main() -> None:
    params_file, snapshot, statistics, graph, out, event, n = sys.argv[1:8]
    from zonda.params import load_params
    from zonda.training.train import train

    torch.set_num_threads(1)  # as the in-process reference run
    kill_inside_checkpoint_writes(event, int(n))
    train(load_params(params_file), snapshot, statistics, graph, out, progress=False, track=False,
          callbacks=[KillAt(event, int(n))])
    sys.exit(f"{event} {n}: not reached, the run finished")


if __name__ == "__main__":
    main()
