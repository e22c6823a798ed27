"""Fused (torch.compile) kernels: the same numbers as the eager maths, and a safe fallback."""

from __future__ import annotations

import warnings

import pytest
import torch

from zonda.models import build_network, compiled
from zonda.models import edge_attention as edge_attention_module
from zonda.models.compiled import AUTO_MIN_ELEMENTS, FusedKernel, compiler_available, fusion_enabled
from zonda.models.edge_attention import edge_attention
from zonda.models.toy_graph import toy_graph
from zonda.params import ModelParams

needs_compiler = pytest.mark.skipif(not compiler_available("cpu"), reason="no C++ compiler for torch.compile")


def attention_inputs(batch: int, shared_edges: bool, seed: int = 0):
    """A small graph with a receiver (node 5) that has no incoming edges."""
    g = torch.Generator().manual_seed(seed)
    senders = torch.randint(0, 6, (40,), generator=g)
    receivers = torch.randint(0, 5, (40,), generator=g)
    q, k, v = (torch.randn(6, batch, 16, generator=g).requires_grad_() for _ in range(3))
    eps = torch.randn(*((40, 16) if shared_edges else (40, batch, 16)), generator=g).requires_grad_()
    return (q, k, v, eps), senders, receivers


@needs_compiler
@pytest.mark.parametrize("batch,shared_edges", [(1, True), (3, False)])
@pytest.mark.parametrize("scatters_compiled", [True, False], ids=["whole", "scatters-in-aten"])
def test_fused_edge_attention_matches_the_eager_one_in_values_and_gradients(batch, shared_edges, scatters_compiled, monkeypatch):
    # both compositions of the fused path: compiled whole (GPU, one CPU thread) and
    # compiled per-edge maths with ATen scatters (several CPU threads)
    monkeypatch.setattr(edge_attention_module, "_scatters_compiled", lambda x: scatters_compiled)
    tensors, senders, receivers = attention_inputs(batch, shared_edges)
    grad_out = torch.randn(6, batch, 16, generator=torch.Generator().manual_seed(1))
    results = []
    for fused in (False, True):
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # a compile failure must not pass as eager
            out = edge_attention(*tensors, senders, receivers, 4, fused=fused)
            grads = torch.autograd.grad(out, tensors, grad_out)
        results.append((out, grads))
    (out_eager, grads_eager), (out_fused, grads_fused) = results
    torch.testing.assert_close(out_fused, out_eager, rtol=1e-5, atol=1e-6)
    assert out_fused[5].abs().max() == 0  # no incoming edges: zero, not NaN
    for name, a, b in zip("q k v eps".split(), grads_fused, grads_eager):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=lambda m: f"grad of {name}: {m}")


@needs_compiler
def test_graph_transformer_with_fused_kernels_and_checkpointing_trains_like_the_eager_one():
    graph = toy_graph([-60.0, -20.0, 20.0, 60.0], [0.0, 90.0, 180.0, 270.0], num_mesh=24)
    base = {"processor": "graph_transformer", "hidden_dim": 16, "processor_layers": 2, "num_heads": 4}
    x = torch.randn(2, 16, 3, generator=torch.Generator().manual_seed(2))
    results = []
    for extra in ({"fused_kernels": "off"}, {"fused_kernels": "on", "gradient_checkpointing": True}):
        torch.manual_seed(0)
        net = build_network(ModelParams(**base, **extra), graph, 3, 3)
        assert all(layer.fused_kernels == extra["fused_kernels"] for layer in net.processor.layers)
        out = net(x)
        out.square().mean().backward()
        results.append((out, {n: p.grad for n, p in net.named_parameters()}))
    (out_eager, grads_eager), (out_fused, grads_fused) = results
    torch.testing.assert_close(out_fused, out_eager, rtol=1e-5, atol=1e-6)
    for name, grad in grads_eager.items():
        torch.testing.assert_close(grads_fused[name], grad, rtol=1e-4, atol=1e-6, msg=lambda m: f"{name}: {m}")


def test_a_kernel_that_fails_to_compile_warns_once_and_runs_eagerly(monkeypatch):
    calls = []
    kernel = FusedKernel(lambda a, b: a * b + 1)

    def broken(*args):
        calls.append(args)
        raise RuntimeError("no compiler here\nlong traceback")

    monkeypatch.setattr(FusedKernel, "compiled", broken)
    a, b = torch.arange(3.0), torch.full((3,), 2.0)
    with pytest.warns(RuntimeWarning, match="failed .*no compiler here.*running it eagerly"):
        torch.testing.assert_close(kernel(a, b), a * b + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.testing.assert_close(kernel(a, b), a * b + 1)  # no second attempt, no second warning
    assert len(calls) == 1


def test_an_error_of_the_inputs_is_raised_not_taken_for_a_compiler_failure(monkeypatch):
    kernel = FusedKernel(lambda a, b: a + b)
    monkeypatch.setattr(FusedKernel, "compiled", lambda *args: (_ for _ in ()).throw(RuntimeError("compile error")))
    with pytest.raises(RuntimeError, match="size of tensor a"):
        kernel(torch.ones(2), torch.ones(3))
    assert kernel.failed is None  # the next valid call still tries the compiled kernel


def test_fusion_policy_compiles_only_large_edge_sets_in_auto_mode(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr("zonda.models.compiled.compiler_available", lambda device_type: True)
    assert not fusion_enabled("auto", AUTO_MIN_ELEMENTS - 1, cpu)
    assert fusion_enabled("auto", AUTO_MIN_ELEMENTS, cpu)
    assert fusion_enabled("on", 1, cpu) and not fusion_enabled("off", 10**9, cpu)
    monkeypatch.setattr("zonda.models.compiled.compiler_available", lambda device_type: False)
    assert not fusion_enabled("auto", 10**9, cpu)  # no compiler: auto stays eager
    with pytest.raises(ValueError, match="fused_kernels"):
        fusion_enabled("sometimes", 1, cpu)


def test_compiler_is_looked_up_from_the_environment_then_path(monkeypatch):
    monkeypatch.setenv("CXX", "/nonexistent/bin/g++-99 -O2")
    compiled.compiler_available.cache_clear()
    try:
        assert not compiled.compiler_available("cpu")  # $CXX names a compiler that is not there
        monkeypatch.delenv("CXX")
        monkeypatch.setenv("PATH", "/nonexistent")
        compiled.compiler_available.cache_clear()
        assert not compiled.compiler_available("cpu")
        assert not compiled.compiler_available("tpu")
    finally:
        compiled.compiler_available.cache_clear()
