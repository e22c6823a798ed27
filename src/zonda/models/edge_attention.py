"""Multi-head attention over the edges of a graph, edge features added to keys and values.

For receiver ``i``, its senders ``j`` (edges ``e = j -> i``) and each head::

    a_e   = softmax_{e -> i}( q_i . (k_j + eps_e) / sqrt(d) )
    out_i = sum_{e -> i} a_e (v_j + eps_e)

(Shi et al. 2021, "Masked label prediction", as used by AIFS). Heads are
interleaved: head ``h`` of ``H`` owns channels ``h, h + H, h + 2H, ...`` of
the width ``D = H d`` (a relabelling of the channels, equivalent to
contiguous blocks since q, k, v and eps come from learned linear maps). With
the head index innermost, the per-head sums over ``d`` are whole-vector adds
across ``H`` lanes instead of ``d``-long horizontal reductions: the fused
kernels ran 1.9x faster than with contiguous heads (``d = 8``, ``H = 16``).

Two implementations of the same maths, chosen per call:

* eager: a hand-written autograd function that keeps only its inputs, the
  ``(E, B, H)`` softmax numerators and the output, and recomputes the per-edge
  keys and values in the backward pass, so a layer stores no edge-sized
  activations (autograd would keep four);
* fused: the same forward and backward formulas as plain tensor functions
  compiled by ``torch.compile`` (:mod:`zonda.models.compiled`), which fuses
  each pass's gathers, products, softmax and scatters into a few loops.
  It saves the same tensors as the eager one. On the CPU with more than one
  thread only the per-edge maths is compiled and the scatters run in ATen's
  index_add (Inductor would parallelise them with atomic adds, slower than
  one thread).

The eager path is not those formulas run op by op: out of place they took
about 2x the hand-written function's time (r5, one core), and the eager path
is what runs where no compiler is at hand (a CPU machine without a C++
compiler, such as the zonda data image) or with ``fused_kernels: off``.
"""

from __future__ import annotations

import torch

from zonda.models.compiled import FusedKernel
from zonda.models.message_passing import gather, scatter_sum, segment_softmax_parts


def edge_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    eps: torch.Tensor,
    senders: torch.Tensor,
    receivers: torch.Tensor,
    num_heads: int,
    fused: bool = False,
) -> torch.Tensor:
    """Multi-head attention restricted to graph edges, edge features in keys and values.

    Args:
        q: ``(Nr, B, D)`` queries of the receivers.
        k, v: ``(Ns, B, D)`` keys and values of the senders.
        eps: ``(E, D)`` (shared by the batch) or ``(E, B, D)`` edge terms added to keys and values.
        senders, receivers: ``(E,)`` edge end points.
        num_heads: ``H``; ``D = H * d``, head ``h`` owns channels ``h::H``.
        fused: run the ``torch.compile``-fused forward and backward
            (see :class:`zonda.models.compiled.FusedKernel` for when it
            still runs eagerly).

    Returns:
        ``(Nr, B, D)`` in ``q``'s dtype: per head, the softmax-weighted sum
        (over the incoming edges of each receiver) of ``v_j + eps_ij``; zero
        for a receiver without edges. Scores, softmax and sums are accumulated
        in float32 for bf16/fp16 inputs.
    """
    if fused:
        return _FusedEdgeAttention.apply(q, k, v, eps, senders, receivers, num_heads)
    return _EdgeAttention.apply(q, k, v, eps, senders, receivers, num_heads)


class _EdgeAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, eps, senders, receivers, num_heads):  # noqa: ANN001, D102
        num_receivers, batch, dim = q.shape
        scale = (dim // num_heads) ** -0.5
        eps3 = _batched(eps)
        products = _edge_keys(k, eps3, senders).mul_(gather(q, receivers))
        acc = _accumulation_dtype(q)
        scores = _per_head(products, num_heads).sum(-2, dtype=acc)
        del products
        p, z = segment_softmax_parts(scores * scale, receivers, num_receivers)
        weighted = _edge_keys(v, eps3, senders).to(acc)
        _per_head(weighted, num_heads).mul_(p.unsqueeze(-2))
        out = scatter_sum(weighted, receivers, num_receivers)
        _per_head(out, num_heads).div_(z.unsqueeze(-2))
        ctx.save_for_backward(q, k, v, eps, senders, receivers, p, z, out)
        ctx.num_heads, ctx.scale = num_heads, scale
        return out.to(q.dtype, copy=True)  # never hand out the saved tensor itself

    @staticmethod
    def backward(ctx, grad_out):  # noqa: ANN001, D102
        q, k, v, eps, senders, receivers, p, z, out = ctx.saved_tensors
        heads, scale = ctx.num_heads, ctx.scale
        eps3 = _batched(eps)
        # out = acc / z with acc = sum_e p_e (v_j + eps_e) and z = sum_e p_e, per receiver and head
        acc = _accumulation_dtype(q)
        grad_acc = grad_out.to(acc, copy=True)
        _per_head(grad_acc, heads).div_(z.unsqueeze(-2))
        grad_z = _per_head(grad_acc * out, heads).sum(-2)  # minus dL/dz * z, (Nr, B, H)
        grad_w = gather(grad_acc, receivers)  # (E, B, D): dL/d(p_e (v_j + eps_e))
        values = _edge_keys(v, eps3, senders).to(acc)
        grad_p = _per_head(values.mul_(grad_w), heads).sum(-2) - gather(grad_z, receivers)
        del values
        grad_values = grad_w
        _per_head(grad_values, heads).mul_(p.unsqueeze(-2))
        grad_scores = grad_p.mul_(p).mul_(scale)  # softmax numerator p = exp(score - const)
        grad_q_edges = _edge_keys(k, eps3, senders).to(acc)
        _per_head(grad_q_edges, heads).mul_(grad_scores.unsqueeze(-2))
        grad_q = scatter_sum(grad_q_edges, receivers, q.shape[0])
        del grad_q_edges
        grad_keys = gather(q, receivers).to(acc)
        _per_head(grad_keys, heads).mul_(grad_scores.unsqueeze(-2))
        grad_k = scatter_sum(grad_keys, senders, k.shape[0])
        grad_v = scatter_sum(grad_values, senders, v.shape[0])
        grad_eps = _unbatched_like(grad_keys.add_(grad_values), eps)
        return grad_q.to(q.dtype), grad_k.to(k.dtype), grad_v.to(v.dtype), grad_eps.to(eps.dtype), None, None, None


def _edge_scores(q, k, eps3, senders, receivers, heads: int):  # noqa: ANN001, ANN202
    """Scaled scores ``q_i . (k_j + eps_e) / sqrt(d)`` per edge and head, ``(E, B, H)`` in the accumulation dtype."""
    acc = _accumulation_dtype(q)
    num_edges, batch, d = senders.shape[0], q.shape[1], q.shape[2] // heads
    keys = (k[senders].to(acc) + eps3).view(num_edges, batch, d, heads)
    return (keys * q[receivers].to(acc).view(num_edges, batch, d, heads)).sum(-2) * d**-0.5


def _weighted_values(v, eps3, senders, receivers, scores, group_max, heads: int):  # noqa: ANN001, ANN202
    """Softmax numerators ``p = exp(score - receiver max)`` ``(E, B, H)`` and ``p (v_j + eps_e)`` ``(E, B, D)``."""
    num_edges, batch, dim = senders.shape[0], v.shape[1], v.shape[2]
    p = torch.exp(scores - group_max[receivers])
    values = (v[senders].to(scores.dtype) + eps3).view(num_edges, batch, dim // heads, heads)
    return p, (values * p.unsqueeze(-2)).view(num_edges, batch, dim)


def _edge_gradients(q, k, v, eps3, senders, receivers, p, z, out, grad_out, heads: int):  # noqa: ANN001, ANN202
    """Per-edge gradient terms ``(E, B, D)``: of q (to sum onto receivers), of k and v (onto senders), of eps."""
    acc = _accumulation_dtype(q)
    num_receivers, batch, dim = q.shape
    num_edges, d = senders.shape[0], dim // heads
    grad_acc = grad_out.to(acc).view(num_receivers, batch, d, heads) / z.unsqueeze(-2)
    grad_z = (grad_acc * out.view(num_receivers, batch, d, heads)).sum(-2)
    grad_w = grad_acc[receivers]
    values = (v[senders].to(acc) + eps3).view(num_edges, batch, d, heads)
    grad_scores = ((values * grad_w).sum(-2) - grad_z[receivers]) * p * d**-0.5
    grad_values = grad_w * p.unsqueeze(-2)
    keys = (k[senders].to(acc) + eps3).view(num_edges, batch, d, heads)
    grad_q_edges = keys * grad_scores.unsqueeze(-2)
    grad_keys = q[receivers].to(acc).view(num_edges, batch, d, heads) * grad_scores.unsqueeze(-2)
    shape = (num_edges, batch, dim)
    return grad_q_edges.view(shape), grad_keys.view(shape), grad_values.view(shape), (grad_keys + grad_values).view(shape)


def _fused_forward(q, k, v, eps, senders, receivers, heads: int, scores_fn=_edge_scores, values_fn=_weighted_values):  # noqa: ANN001, ANN202
    """Forward maths of the fused path: ``(out, p, z)`` with ``out`` in the accumulation dtype.

    ``p`` ``(E, B, H)`` are the softmax numerators ``exp(score - receiver max)``,
    ``z`` ``(Nr, B, H)`` their sums per receiver (1 where a receiver has no edges).
    Compiled whole, or run eagerly around compiled ``scores_fn`` / ``values_fn``
    (see :class:`_FusedEdgeAttention`).
    """
    acc = _accumulation_dtype(q)
    num_receivers, batch, dim = q.shape
    eps3 = _batched(eps).to(acc)
    scores = scores_fn(q, k, eps3, senders, receivers, heads)
    group_max = scores.new_full((num_receivers, batch, heads), float("-inf")).scatter_reduce(
        0, receivers.view(-1, 1, 1).expand_as(scores), scores, "amax", include_self=True
    )
    p, weighted = values_fn(v, eps3, senders, receivers, scores, group_max, heads)
    z = scatter_sum(p, receivers, num_receivers)
    z = z + (z == 0).to(z.dtype)
    out = scatter_sum(weighted, receivers, num_receivers).view(num_receivers, batch, dim // heads, heads)
    return (out / z.unsqueeze(-2)).view(num_receivers, batch, dim), p, z


def _fused_backward(q, k, v, eps, senders, receivers, p, z, out, grad_out, heads: int, gradients_fn=_edge_gradients):  # noqa: ANN001, ANN202
    """Backward maths of the fused path (the eager backward's, out of place): grads of q, k, v, eps."""
    eps3 = _batched(eps).to(_accumulation_dtype(q))
    grad_q_edges, grad_keys, grad_values, grad_eps = gradients_fn(q, k, v, eps3, senders, receivers, p, z, out, grad_out, heads)
    grad_q = scatter_sum(grad_q_edges, receivers, q.shape[0])
    grad_k = scatter_sum(grad_keys, senders, k.shape[0])
    grad_v = scatter_sum(grad_values, senders, v.shape[0])
    grad_eps = _unbatched_like(grad_eps, eps)
    return grad_q.to(q.dtype), grad_k.to(k.dtype), grad_v.to(v.dtype), grad_eps.to(eps.dtype)


# Compiled whole: gathers, maths and scatters in a few loops. Serial on the CPU
# (``cpp.threads``: 1), where Inductor's parallel scatters are per-element atomic adds.
_WHOLE_FORWARD = FusedKernel(_fused_forward, options={"cpp.threads": 1})
_WHOLE_BACKWARD = FusedKernel(_fused_backward, options={"cpp.threads": 1})
# Compiled per-edge maths only, for several CPU threads: the scatters run in ATen's parallel index_add.
_EDGE_SCORES = FusedKernel(_edge_scores)
_WEIGHTED_VALUES = FusedKernel(_weighted_values)
_EDGE_GRADIENTS = FusedKernel(_edge_gradients)


def _scatters_compiled(x: torch.Tensor) -> bool:
    """Whether the fused path compiles the scatters too: on a GPU, or on a single CPU thread.

    On the CPU with several threads Inductor parallelises a scatter over the
    edges with an atomic add per element: at r5 (81,900 edges, width 128, 16
    heads) the attention's forward+backward took 74-76 ms with 2 threads
    against 41 ms with 1. With the scatters left to ATen it took 36 ms with 2.
    """
    return x.device.type != "cpu" or torch.get_num_threads() == 1


class _FusedEdgeAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, eps, senders, receivers, num_heads):  # noqa: ANN001, D102
        if _scatters_compiled(q):
            out, p, z = _WHOLE_FORWARD(q, k, v, eps, senders, receivers, num_heads)
        else:
            out, p, z = _fused_forward(q, k, v, eps, senders, receivers, num_heads, _EDGE_SCORES, _WEIGHTED_VALUES)
        ctx.save_for_backward(q, k, v, eps, senders, receivers, p, z, out)
        ctx.num_heads = num_heads
        return out.to(q.dtype, copy=True)

    @staticmethod
    def backward(ctx, grad_out):  # noqa: ANN001, D102
        args = (*ctx.saved_tensors, grad_out.contiguous(), ctx.num_heads)
        if _scatters_compiled(grad_out):
            grads = _WHOLE_BACKWARD(*args)
        else:
            grads = _fused_backward(*args, _EDGE_GRADIENTS)
        return (*grads, None, None, None)


def _accumulation_dtype(x: torch.Tensor) -> torch.dtype:
    """float32 for half-precision inputs, else the input's own dtype."""
    return torch.float32 if x.dtype in (torch.bfloat16, torch.float16) else x.dtype


def _batched(eps: torch.Tensor) -> torch.Tensor:
    """Edge terms as ``(E, 1|B, D)``."""
    return eps if eps.ndim == 3 else eps.unsqueeze(1)


def _unbatched_like(grad: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """``(E, B, D)`` gradient summed over the batch where ``eps`` was shared ``(E, D)``."""
    if eps.ndim == 3:
        return grad
    return grad.squeeze(1) if grad.shape[1] == 1 else grad.sum(1)


def _edge_keys(nodes: torch.Tensor, eps3: torch.Tensor, senders: torch.Tensor) -> torch.Tensor:
    """``nodes[s_e] + eps_e``, ``(E, B, D)``."""
    out = gather(nodes, senders)
    out += eps3
    return out


def _per_head(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``(N, B, D)`` -> view ``(N, B, D/H, H)``: head ``h`` owns channels ``h, h + H, h + 2H, ...``."""
    return x.view(x.shape[0], x.shape[1], -1, heads)
