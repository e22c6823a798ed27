"""Learning-rate schedules stepped once per optimisation step."""

from __future__ import annotations

import math

import torch

from zonda.training.errors import TrainingInputError


class CosineWithWarmup(torch.optim.lr_scheduler.LRScheduler):
    """Linear warm-up then cosine decay to ``min_lr`` (timm ``CosineLRScheduler`` semantics).

    The Anemoi default. With base learning rate ``lr`` (from ``training.lr``),
    at optimisation step ``t``:

    - ``t < warmup_steps``: ``warmup_start_lr + t * (lr - warmup_start_lr) / warmup_steps``
    - otherwise: ``min_lr + 0.5 * (lr - min_lr) * (1 + cos(pi * t / total_steps))``
      (timm without ``warmup_prefix``: the cosine clock starts at step 0),
    - ``t >= total_steps``: ``min_lr``.

    ``total_steps`` is injected by the training stage from the trainer's
    estimated number of optimisation steps unless given in params.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        warmup_steps: int = 100,
        total_steps: int | None = None,
        min_lr: float = 3.0e-7,
        warmup_start_lr: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if total_steps is None:
            raise TrainingInputError("training.scheduler CosineWithWarmup needs total_steps (the training stage injects it)")
        if warmup_steps < 0 or total_steps <= 0:
            raise TrainingInputError(f"training.scheduler warmup_steps={warmup_steps} and total_steps={total_steps} must be >= 0 and > 0")
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.min_lr = float(min_lr)
        self.warmup_start_lr = float(warmup_start_lr)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, step: int, base_lr: float) -> float:
        """Learning rate at optimisation step ``step`` for a group whose base rate is ``base_lr``."""
        if step < self.warmup_steps:
            return self.warmup_start_lr + step * (base_lr - self.warmup_start_lr) / self.warmup_steps
        if step >= self.total_steps:
            return self.min_lr
        return self.min_lr + 0.5 * (base_lr - self.min_lr) * (1.0 + math.cos(math.pi * step / self.total_steps))

    def get_lr(self) -> list[float]:
        return [self.lr_at(self.last_epoch, base) for base in self.base_lrs]


def build_scheduler(spec, optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Instantiates ``training.scheduler`` (a :class:`~zonda.params.TargetSpec`) for ``optimizer``.

    ``total_steps`` (the run's number of optimisation steps) is injected when
    the class takes a ``total_steps`` argument that the params leave unset.
    Any ``torch.optim.lr_scheduler`` class works; the training stage steps it
    once per optimisation step.
    """
    import inspect

    cls = spec.resolve()
    injected = {}
    try:
        takes_total = "total_steps" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        takes_total = False
    if takes_total and "total_steps" not in spec.kwargs:
        if total_steps is None or total_steps <= 0 or math.isinf(total_steps):
            raise TrainingInputError(
                f"training.scheduler {spec.target} needs total_steps, and the run's length is unknown "
                f"({total_steps}); set training.max_steps or training.scheduler.total_steps"
            )
        injected["total_steps"] = int(total_steps)
    try:
        return spec.instantiate(optimizer, **injected)
    except TypeError as exc:
        raise TrainingInputError(f"training.scheduler {spec.target}: {exc}") from None
