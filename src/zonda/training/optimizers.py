"""Optimizers beyond ``torch.optim``: AdEMAMix.

AdEMAMix (Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better,
Faster, Older", arXiv:2409.03137, Algorithm 1) keeps two EMAs of the gradient,
a fast one ``m1`` (``beta1``) and a slow one ``m2`` (``beta3``), and Adam's
second moment ``nu`` (``beta2``). At step ``t = 1, 2, ...`` with gradient ``g``::

    alpha_t = f_alpha(t)        beta3_t = f_beta3(t)
    m1 = beta1 m1 + (1 - beta1) g
    m2 = beta3_t m2 + (1 - beta3_t) g
    nu = beta2 nu + (1 - beta2) g^2
    m1_hat = m1 / (1 - beta1^t)          nu_hat = nu / (1 - beta2^t)
    theta = theta - lr * ( (m1_hat + alpha_t m2) / (sqrt(nu_hat) + eps) + weight_decay * theta )

``m2`` is not bias-corrected. The warm-up schedulers of the paper are

* ``f_alpha(t) = min(t * alpha / T_alpha, alpha)`` (linear), and
* ``f_beta3(t) = min(exp(ln(beta1) ln(beta3) / ((1 - t/T) ln(beta3) + (t/T) ln(beta1))), beta3)``
  with ``T = T_beta3``: the slow EMA's half-life grows linearly from that of
  ``beta1`` to that of ``beta3`` (linear interpolation of ``1 / ln(beta)``).

Without a warm-up (``alpha_warmup`` / ``beta3_warmup`` None) the constant is
used from the first step. The paper recommends ``T_alpha = T_beta3`` = the
length of training for large ``beta3``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence

import torch
from torch.optim import Optimizer

from zonda.training.errors import TrainingInputError


def alpha_at(step: int, alpha: float, warmup: int | None) -> float:
    """The paper's ``f_alpha``: ``min(step * alpha / warmup, alpha)``; ``alpha`` without warm-up."""
    if not warmup:
        return float(alpha)
    return min(step * alpha / warmup, alpha)


def beta3_at(step: int, beta1: float, beta3: float, warmup: int | None) -> float:
    """The paper's ``f_beta3``: from ``beta1`` at step 0 to ``beta3`` at ``warmup``, linear in half-life."""
    if not warmup:
        return float(beta3)
    a = min(step / warmup, 1.0)
    if beta3 <= 0.0:
        return 0.0
    # 1/ln(beta) interpolates linearly; beta1 = 0 has 1/ln(beta1) = 0 (half-life 0).
    inv = (1.0 - a) / math.log(beta1) if beta1 > 0.0 else 0.0
    inv += a / math.log(beta3)
    if inv == 0.0:  # a == 0 and beta1 == 0
        return 0.0
    return min(math.exp(1.0 / inv), beta3)


class AdEMAMix(Optimizer):
    """AdEMAMix (arXiv:2409.03137, Algorithm 1) with the paper's alpha and beta3 warm-ups.

    Args:
      params: parameters or parameter groups.
      lr: learning rate ``eta`` (injected from ``training.lr``; a scheduler may change it).
      betas: ``(beta1, beta2, beta3)``: fast EMA, second moment, slow EMA.
      alpha: weight of the slow EMA in the update.
      alpha_warmup: ``T_alpha`` steps of linear warm-up of alpha (None: constant).
      beta3_warmup: ``T_beta3`` steps of the half-life warm-up of beta3 (None: constant).
      eps: added to ``sqrt(nu_hat)``.
      weight_decay: decoupled weight decay ``lambda`` (AdamW style, scaled by lr).

    State per parameter: ``step`` (float tensor), ``exp_avg_fast`` (m1),
    ``exp_avg_slow`` (m2), ``exp_avg_sq`` (nu), all tensors, so
    ``state_dict()`` loads with ``torch.load(weights_only=True)``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: Sequence[float] = (0.9, 0.999, 0.9999),
        alpha: float = 5.0,
        alpha_warmup: int | None = None,
        beta3_warmup: int | None = None,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        betas = tuple(float(b) for b in betas)
        if len(betas) != 3:
            raise TrainingInputError(f"training.optimizer.betas of AdEMAMix must be (beta1, beta2, beta3), got {betas}")
        for i, b in enumerate(betas):
            if not 0.0 <= b < 1.0:
                raise TrainingInputError(f"training.optimizer.betas[{i}] of AdEMAMix must lie in [0, 1), got {b}")
        if lr < 0 or eps < 0 or weight_decay < 0 or alpha < 0:
            raise TrainingInputError(
                f"AdEMAMix lr ({lr}), eps ({eps}), weight_decay ({weight_decay}) and alpha ({alpha}) must be >= 0"
            )
        for name, value in (("alpha_warmup", alpha_warmup), ("beta3_warmup", beta3_warmup)):
            if value is not None and int(value) < 1:
                raise TrainingInputError(f"training.optimizer.{name} of AdEMAMix must be >= 1 or None, got {value}")
        defaults = dict(
            lr=lr, betas=betas, alpha=float(alpha), alpha_warmup=alpha_warmup, beta3_warmup=beta3_warmup,
            eps=float(eps), weight_decay=float(weight_decay),
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One optimisation step (see the module docstring for the equations)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            beta1, beta2, beta3 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise RuntimeError("AdEMAMix does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg_fast"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_slow"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = int(state["step"].item())
                alpha_t = alpha_at(t, group["alpha"], group["alpha_warmup"])
                beta3_t = beta3_at(t, beta1, beta3, group["beta3_warmup"])
                m1, m2, nu = state["exp_avg_fast"], state["exp_avg_slow"], state["exp_avg_sq"]
                m1.mul_(beta1).add_(grad, alpha=1.0 - beta1)
                m2.mul_(beta3_t).add_(grad, alpha=1.0 - beta3_t)
                nu.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                denom = (nu / (1.0 - beta2**t)).sqrt_().add_(eps)
                update = (m1 / (1.0 - beta1**t)).add_(m2, alpha=alpha_t).div_(denom)
                if wd:
                    update.add_(p, alpha=wd)
                p.add_(update, alpha=-lr)
        return loss
