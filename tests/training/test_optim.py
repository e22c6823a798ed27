"""AdEMAMix against the paper's equations; learning-rate schedules at their turning points."""

from __future__ import annotations

import io
import math

import pytest
import torch

from zonda.params import TargetSpec
from zonda.training import precision
from zonda.training.optimizers import AdEMAMix, alpha_at, beta3_at
from zonda.training.schedulers import CosineWithWarmup, build_scheduler


def paper_ademamix(theta, grads, lr, b1, b2, b3, alpha, t_alpha, t_beta3, eps, wd):
    """Algorithm 1 of arXiv:2409.03137 on a scalar, written out with plain floats."""
    m1 = m2 = nu = 0.0
    out = []
    for t, g in enumerate(grads, start=1):
        a = min(t * alpha / t_alpha, alpha)
        x = t / t_beta3
        beta3 = min(math.exp(math.log(b1) * math.log(b3) / ((1 - x) * math.log(b3) + x * math.log(b1))), b3)
        m1 = b1 * m1 + (1 - b1) * g
        m2 = beta3 * m2 + (1 - beta3) * g
        nu = b2 * nu + (1 - b2) * g * g
        m1_hat = m1 / (1 - b1**t)
        nu_hat = nu / (1 - b2**t)
        theta = theta - lr * ((m1_hat + a * m2) / (math.sqrt(nu_hat) + eps) + wd * theta)
        out.append(theta)
    return out


def run_ademamix(theta0, grads, **kwargs):
    p = torch.nn.Parameter(torch.tensor([theta0], dtype=torch.float64))
    opt = AdEMAMix([p], **kwargs)
    out = []
    for g in grads:
        p.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
        out.append(float(p.detach()))
    return out, opt


def test_ademamix_first_step_by_hand():
    # theta0=1, g=0.5, lr=0.1, b1=0.5, b2=0.75, b3=0.9, alpha=2, T_alpha=T_beta3=2, wd=0.1:
    #   alpha_1 = 1; beta3_1 = exp(ln .5 ln .9 / (.5 ln .9 + .5 ln .5)) = exp(-0.1829173) = 0.832837
    #   m1 = 0.25, m2 = (1 - 0.832837) * 0.5 = 0.083581, nu = 0.25 * 0.25 = 0.0625
    #   m1_hat = 0.25 / 0.5 = 0.5, sqrt(nu_hat) = sqrt(0.0625 / 0.25) = 0.5
    #   update = (0.5 + 1 * 0.083581) / 0.5 + 0.1 * 1 = 1.267163
    #   theta_1 = 1 - 0.1 * 1.267163 = 0.873284
    assert beta3_at(1, 0.5, 0.9, 2) == pytest.approx(0.832837, abs=1e-6)
    out, _ = run_ademamix(1.0, [0.5], lr=0.1, betas=(0.5, 0.75, 0.9), alpha=2.0, alpha_warmup=2, beta3_warmup=2,
                          eps=1e-8, weight_decay=0.1)
    assert out[0] == pytest.approx(0.873284, abs=1e-6)


def test_ademamix_follows_algorithm_1_over_several_steps():
    grads = [0.5, -1.0, 2.0, 0.25, -0.75, 1.5]
    cfg = dict(lr=0.05, b1=0.8, b2=0.9, b3=0.99, alpha=3.0, t_alpha=4, t_beta3=3, eps=1e-8, wd=0.02)
    expected = paper_ademamix(0.7, grads, **cfg)
    out, _ = run_ademamix(0.7, grads, lr=0.05, betas=(0.8, 0.9, 0.99), alpha=3.0, alpha_warmup=4, beta3_warmup=3,
                          eps=1e-8, weight_decay=0.02)
    assert out == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_warmup_schedules_match_the_paper():
    b1, b3, T = 0.9, 0.9999, 100
    assert beta3_at(0, b1, b3, T) == pytest.approx(b1)
    assert beta3_at(T, b1, b3, T) == pytest.approx(b3)
    assert beta3_at(5 * T, b1, b3, T) == b3
    # Linear in half-life: t_half(beta) = ln(0.5) / ln(beta).
    half = lambda b: math.log(0.5) / math.log(b)  # noqa: E731
    assert half(beta3_at(T // 2, b1, b3, T)) == pytest.approx((half(b1) + half(b3)) / 2, rel=1e-9)
    assert [alpha_at(t, 8.0, 4) for t in (0, 1, 2, 4, 9)] == [0.0, 2.0, 4.0, 8.0, 8.0]
    assert alpha_at(1, 8.0, None) == 8.0 and beta3_at(1, b1, b3, None) == b3


def test_ademamix_without_slow_ema_is_adamw():
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(4, 3))
    b = torch.nn.Parameter(a.detach().clone())
    opt_a = AdEMAMix([a], lr=1e-2, betas=(0.9, 0.99, 0.999), alpha=0.0, weight_decay=0.05)
    opt_b = torch.optim.AdamW([b], lr=1e-2, betas=(0.9, 0.99), weight_decay=0.05)
    for _ in range(5):
        g = torch.randn(4, 3)
        a.grad, b.grad = g.clone(), g.clone()
        opt_a.step()
        opt_b.step()
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_ademamix_state_round_trips_through_a_weights_only_load():
    _, opt = run_ademamix(1.0, [0.5, -0.5], lr=0.1, betas=(0.9, 0.99, 0.999), alpha=5.0, beta3_warmup=10)
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    p = torch.nn.Parameter(torch.tensor([0.0], dtype=torch.float64))
    fresh = AdEMAMix([p], lr=0.1, betas=(0.9, 0.99, 0.999), alpha=5.0, beta3_warmup=10)
    fresh.load_state_dict(state)
    assert float(fresh.state[p]["step"]) == 2.0
    torch.testing.assert_close(fresh.state[p]["exp_avg_slow"], next(iter(opt.state.values()))["exp_avg_slow"])


def test_ademamix_is_a_valid_optimizer_target():
    spec = TargetSpec.model_validate(
        {"_target_": "zonda.training.optimizers.AdEMAMix", "betas": [0.9, 0.999, 0.9999], "alpha": 5.0,
         "alpha_warmup": 1000, "beta3_warmup": 1000, "weight_decay": 0.1}
    )
    opt = spec.instantiate([torch.nn.Parameter(torch.zeros(2))], lr=3e-4)
    assert isinstance(opt, AdEMAMix) and opt.param_groups[0]["lr"] == 3e-4
    with pytest.raises(ValueError, match="betas"):
        AdEMAMix([torch.nn.Parameter(torch.zeros(1))], betas=(0.9, 0.999))


def lrs(scheduler_spec, steps, total_steps, lr=1e-3):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = build_scheduler(TargetSpec.model_validate(scheduler_spec), opt, total_steps)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_cosine_with_warmup_at_warmup_end_and_at_the_end():
    spec = {"_target_": "zonda.training.schedulers.CosineWithWarmup", "warmup_steps": 10, "min_lr": 1e-5}
    out = lrs(spec, 120, total_steps=100)
    assert out[0] == 0.0
    assert out[5] == pytest.approx(0.5e-3)  # half-way through the linear warm-up
    # timm semantics: the cosine clock runs from step 0, so at the end of warm-up
    # lr = 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + cos(0.1 pi)) = 9.757733e-4
    assert out[10] == pytest.approx(9.757733e-4, rel=1e-6)
    assert out[50] == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5), rel=1e-9)
    assert out[99] == pytest.approx(1e-5 + 0.5 * 0.99e-3 * (1 + math.cos(math.pi * 0.99)), rel=1e-9)
    assert out[100] == pytest.approx(1e-5) and out[119] == pytest.approx(1e-5)


def test_torch_schedulers_by_target_and_a_missing_total_is_explained():
    out = lrs({"_target_": "torch.optim.lr_scheduler.StepLR", "step_size": 3, "gamma": 0.5}, 7, total_steps=None)
    assert out == pytest.approx([1e-3] * 3 + [5e-4] * 3 + [2.5e-4])
    with pytest.raises(ValueError, match="total_steps"):
        lrs({"_target_": "zonda.training.schedulers.CosineWithWarmup"}, 1, total_steps=None)
    # An explicit total in params wins over the injected one.
    spec = {"_target_": "zonda.training.schedulers.CosineWithWarmup", "warmup_steps": 0, "total_steps": 4, "min_lr": 0.0}
    assert lrs(spec, 5, total_steps=1000)[4] == 0.0
    assert isinstance(CosineWithWarmup(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), total_steps=3), CosineWithWarmup)


def test_precision_auto_is_bf16_only_where_the_hardware_has_bf16_kernels(monkeypatch):
    assert precision.resolve_precision("16-mixed", "cpu") == "16-mixed"  # explicit values pass through
    monkeypatch.setattr(precision, "native_bf16", lambda accelerator: False)
    assert precision.resolve_precision("auto", "cpu") == "32-true"
    monkeypatch.setattr(precision, "native_bf16", lambda accelerator: accelerator == "cpu")
    assert precision.resolve_precision("auto", "cpu") == "bf16-mixed"
    assert precision.resolve_precision("auto", "cuda") == "32-true"
