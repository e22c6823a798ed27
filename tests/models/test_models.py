"""Tests of the model family (zonda.models) on tiny synthetic graphs."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import xarray as xr
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode
from torch_geometric.data import HeteroData

from tests.support.repo import REPO
from zonda.channels import ChannelLayout
from zonda.graph import build_graph
from zonda.models import Forecaster, Normalisation, build_network, summary, summary_dict
from zonda.models.dense import dense, onednn_linear_available
from zonda.models.edge_attention import edge_attention
from zonda.models.interaction_network import InteractionNetwork
from zonda.models.message_passing import EdgeSet, gather, scatter_sum, segment_softmax
from zonda.models.ordering import hilbert_index, hilbert_order
from zonda.models.summary import params_summary, params_summary_dict
from zonda.models.toy_graph import toy_graph
from zonda.models.transformer import band_attention
from zonda.params import GraphParams, ModelParams, load_params

LAT = np.linspace(-78.75, 78.75, 8)
LON = np.arange(0.0, 360.0, 22.5)
G = len(LAT) * len(LON)
C_IN, C_OUT = 7, 5

PROCESSORS = [
    pytest.param({"processor": "gnn"}, id="gnn"),
    pytest.param({"processor": "graph_transformer"}, id="graph_transformer"),
    pytest.param({"processor": "transformer"}, id="transformer"),
    pytest.param({"processor": "transformer", "attention_window": 8}, id="transformer_window"),
]


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Tiny models run thousands of small ops: on a shared 2-core machine a second OpenMP
    thread only adds barrier waits. Restored after this module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def graph() -> HeteroData:
    return toy_graph(LAT, LON, num_mesh=48)


def make_params(**overrides) -> ModelParams:
    base = {"hidden_dim": 16, "processor_layers": 2, "num_heads": 4, "mlp_hidden_layers": 1}
    return ModelParams(**{**base, **overrides})


def make_net(graph: HeteroData, seed: int = 0, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_network(make_params(**overrides), graph, C_IN, C_OUT)


def inputs(batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, G, C_IN, generator=torch.Generator().manual_seed(seed))


def grads(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in net.named_parameters()}


def permute_mesh(graph: HeteroData, perm: torch.Tensor) -> HeteroData:
    """The same graph with mesh node ``perm[i]`` renamed ``i`` (features, coordinates, edges)."""
    new_id = torch.argsort(perm)
    out = HeteroData()
    out["grid"].x, out["grid"].latlon = graph["grid"].x, graph["grid"].latlon
    out["mesh"].x, out["mesh"].latlon = graph["mesh"].x[perm], graph["mesh"].latlon[perm]
    for key in graph.edge_types:
        index = graph[key].edge_index.clone()
        if key[0] == "mesh":
            index[0] = new_id[index[0]]
        if key[2] == "mesh":
            index[1] = new_id[index[1]]
        flip = torch.randperm(index.shape[1], generator=torch.Generator().manual_seed(3))
        out[key].edge_index, out[key].edge_attr = index[:, flip], graph[key].edge_attr[flip]
    return out


# ------------------------------------------------------------------ network


@pytest.mark.parametrize("overrides", PROCESSORS)
def test_shapes_and_finite_gradients_for_every_parameter(graph, overrides):
    net = make_net(graph, **overrides)
    x = inputs(batch=2).requires_grad_()
    y = net(x)
    assert y.shape == (2, G, C_OUT)
    y.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("overrides", PROCESSORS)
def test_output_invariant_to_mesh_node_numbering(graph, overrides):
    perm = torch.randperm(graph["mesh"].x.shape[0], generator=torch.Generator().manual_seed(7))
    net_a = make_net(graph, **overrides)
    net_b = build_network(make_params(**overrides), permute_mesh(graph, perm), C_IN, C_OUT)
    net_b.load_state_dict(net_a.state_dict())
    x = inputs()
    torch.testing.assert_close(net_b(x), net_a(x), rtol=1e-5, atol=1e-5)


def test_attention_window_restricts_attention(graph):
    """The windowed transformer is not secretly full attention (so its invariance above means something)."""
    x = inputs()
    full = make_net(graph, processor="transformer")(x)
    windowed = make_net(graph, processor="transformer", attention_window=4)(x)
    assert (full - windowed).abs().max() > 1e-3


@pytest.mark.parametrize("overrides", PROCESSORS)
def test_batch_of_two_equals_two_single_samples(graph, overrides):
    net = make_net(graph, **overrides)
    x = inputs(batch=2)
    both = net(x)
    torch.testing.assert_close(both[:1], net(x[:1]), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(both[1:], net(x[1:]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("processor", ["gnn", "graph_transformer"])
def test_mapper_chunks_give_the_same_outputs_and_gradients(graph, processor):
    x = inputs()
    results = []
    for chunks in (1, 3):
        net = make_net(graph, processor=processor, mapper_chunks=chunks)
        y = net(x)
        y.square().mean().backward()
        results.append((y.detach(), grads(net)))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-5, atol=1e-6)
    for name, g in results[0][1].items():
        torch.testing.assert_close(results[1][1][name], g, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("overrides", PROCESSORS[:3])
def test_gradient_checkpointing_gives_the_same_gradients(graph, overrides):
    x = inputs()
    results = []
    for checkpointing in (False, True):
        net = make_net(graph, gradient_checkpointing=checkpointing, **overrides)
        net(x).square().mean().backward()
        results.append(grads(net))
    for name, g in results[0].items():
        torch.testing.assert_close(results[1][name], g, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("overrides", PROCESSORS)
def test_bf16_autocast_runs_and_stays_close_to_fp32(graph, overrides):
    net = make_net(graph, **overrides)
    x = inputs()
    reference = net(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = net(x)
        low.float().square().mean().backward()
    assert torch.isfinite(low.float()).all()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())
    error = (low.float() - reference).norm() / reference.norm()
    assert error < 0.05, f"bf16 relative error {error:.3f}"


def test_graph_buffers_move_with_to(graph):
    net = make_net(graph, processor="graph_transformer")
    buffers = dict(net.named_buffers())
    for name in ("graph.encoder.senders", "graph.processor.receivers", "graph.decoder.attr", "grid_features"):
        assert name in buffers
    assert not any(name.startswith("graph.") for name in net.state_dict()), "graph must not bloat checkpoints"
    y64 = net.to(torch.float64)(inputs().double())
    assert y64.dtype == torch.float64
    assert net.graph["decoder"].attr.dtype == torch.float64
    assert net.graph["decoder"].senders.dtype == torch.int64


def test_wrong_input_shape_is_rejected(graph):
    with pytest.raises(ValueError, match="expected input"):
        make_net(graph)(torch.zeros(1, G + 1, C_IN))


# ------------------------------------------------- layers against references


def _naive_mlp_apply(mlp, x):
    """Reference MLP application on an explicitly concatenated input."""
    h = x
    for i, linear in enumerate(mlp.linears):
        h = linear(h)
        if i < len(mlp.linears) - 1:
            h = F.silu(h)
    return mlp.norm(h) if mlp.norm is not None else h


@pytest.mark.skipif(not onednn_linear_available(), reason="this PyTorch has no oneDNN linear kernel")
@pytest.mark.parametrize("in_dim,out_dim,bias", [(24, 16, True), (4, 32, True), (16, 16, False)], ids=["narrows", "widens", "no-bias"])
def test_onednn_dense_matches_f_linear_in_values_and_gradients(in_dim, out_dim, bias):
    """dense() runs oneDNN on the CPU; it must agree with F.linear, gradients included,
    for a (N, B, K) input and a weight that is a strided column block of a larger one."""
    torch.manual_seed(0)
    big = torch.randn(out_dim, in_dim + 5)
    x = torch.randn(37, 2, in_dim)
    b = torch.randn(out_dim) if bias else None
    grad_out = torch.randn(37, 2, out_dim)
    results = []
    for fn in (dense, F.linear):
        xs, bigs = x.clone().requires_grad_(), big.clone().requires_grad_()
        bs = b.clone().requires_grad_() if bias else None
        out = fn(xs, bigs[:, 2 : 2 + in_dim], bs)
        out.backward(grad_out)
        results.append((out, xs.grad, bigs.grad) + ((bs.grad,) if bias else ()))
    for ours, reference in zip(*results):
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    assert results[0][2][:, :2].abs().max() == 0  # columns outside the block get no gradient


def test_dense_falls_back_to_f_linear_under_autocast_and_in_float64():
    x, w = torch.randn(5, 8), torch.randn(3, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert dense(x, w).dtype == torch.bfloat16
    torch.testing.assert_close(dense(x.double(), w.double()), F.linear(x.double(), w.double()))


def test_flop_counter_counts_dense_matmuls():
    """The model benchmark's roofline divides FLOPs counted this way by time: oneDNN linears must count."""
    x, w = torch.randn(10, 3, 8, requires_grad=True), torch.randn(4, 8, requires_grad=True)
    onednn_linear_available()  # its one-off probe must not be counted below
    with FlopCounterMode(display=False) as counter:
        dense(x, w).sum().backward()
    assert counter.get_total_flops() == 3 * 2 * 30 * 8 * 4  # forward, input gradient, weight gradient


@pytest.mark.parametrize("aggregation", ["sum", "mean"])
def test_interaction_network_matches_explicit_concatenation(aggregation):
    torch.manual_seed(0)
    d, ns, nr = 8, 6, 5
    index = torch.tensor([[0, 1, 2, 3, 4, 5, 0, 2], [0, 0, 1, 1, 2, 3, 3, 3]])  # receiver 4 has no edge
    attr = torch.randn(index.shape[1], d)
    edges = EdgeSet(index, attr, ns, nr)
    layer = InteractionNetwork(d, hidden_layers=1, aggregation=aggregation)
    hs, hr = torch.randn(ns, 2, d), torch.randn(nr, 2, d)
    new_nodes, new_edges = layer(hs, hr, edges.attr, edges)

    expected_edges = torch.zeros(index.shape[1], 2, d)
    aggregate = torch.zeros(nr, 2, d)
    for k in range(index.shape[1]):  # edges in the EdgeSet's (sorted) order
        s, r = int(edges.senders[k]), int(edges.receivers[k])
        e = edges.attr[k].expand(2, d)
        expected_edges[k] = e + _naive_mlp_apply(layer.edge_mlp, torch.cat([e, hs[s], hr[r]], -1))
        aggregate[r] += expected_edges[k]
    if aggregation == "mean":
        counts = torch.bincount(index[1], minlength=nr).clamp_min(1).view(-1, 1, 1)
        aggregate = aggregate / counts
    expected_nodes = hr + _naive_mlp_apply(layer.node_mlp, torch.cat([hr, aggregate], -1))
    torch.testing.assert_close(new_edges, expected_edges, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(new_nodes, expected_nodes, rtol=1e-5, atol=1e-6)


def test_graph_attention_matches_hand_written_dense_softmax():
    torch.manual_seed(0)
    n, heads, d = 4, 2, 3
    index = torch.tensor([[1, 2, 3, 0, 2, 0, 1, 2], [0, 0, 0, 1, 1, 2, 2, 2]])  # node 3 receives nothing
    q, k, v = (torch.randn(n, 1, heads * d) for _ in range(3))
    eps = torch.randn(index.shape[1], heads * d)
    out = edge_attention(q, k, v, eps, index[0], index[1], heads)

    expected = torch.zeros(n, heads * d)
    for i in range(n):
        for h in range(heads):
            cols = slice(h, None, heads)  # heads are interleaved
            incoming = [e for e in range(index.shape[1]) if index[1, e] == i]
            if not incoming:
                continue
            scores = torch.tensor(
                [float(q[i, 0, cols] @ (k[index[0, e], 0, cols] + eps[e, cols])) / math.sqrt(d) for e in incoming]
            )
            weights = torch.exp(scores - scores.max())
            weights = weights / weights.sum()
            for w, e in zip(weights, incoming):
                expected[i, cols] += w * (v[index[0, e], 0, cols] + eps[e, cols])
    torch.testing.assert_close(out[:, 0], expected, rtol=1e-5, atol=1e-6)
    assert out[3].abs().max() == 0


@pytest.mark.parametrize("batch,shared_edges", [(1, True), (2, True), (2, False)])
def test_graph_attention_backward_matches_finite_differences(batch, shared_edges):
    """The hand-written backward of edge_attention, checked by torch.autograd.gradcheck in float64."""
    torch.manual_seed(0)
    index = torch.tensor([[1, 2, 3, 0, 2, 0, 1, 2, 4, 4], [0, 0, 0, 1, 1, 2, 2, 2, 0, 2]])  # nodes 3, 4 receive nothing
    q, k, v = (torch.randn(5, batch, 6, dtype=torch.float64, requires_grad=True) for _ in range(3))
    eps_shape = (10, 6) if shared_edges else (10, batch, 6)
    eps = torch.randn(*eps_shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: edge_attention(*t, index[0], index[1], 2), (q, k, v, eps))


def test_gather_and_scatter_backward_match_finite_differences():
    index = torch.tensor([3, 0, 3, 1, 1, 1])
    nodes = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    values = torch.randn(6, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: gather(x, index), (nodes,))
    assert torch.autograd.gradcheck(lambda x: scatter_sum(x, index, 5), (values,))
    torch.testing.assert_close(gather(nodes, index), nodes[index])
    torch.testing.assert_close(scatter_sum(values, index, 5)[1], values[3:].sum(0))


def test_segment_softmax_sums_to_one_and_survives_huge_scores():
    index = torch.tensor([0, 0, 0, 2, 2])
    scores = torch.tensor([1000.0, 999.0, -5.0, -1e4, -1e4 + 1.0])
    alpha = segment_softmax(scores, index, 3)
    assert torch.isfinite(alpha).all()
    torch.testing.assert_close(alpha[:3].sum(), torch.tensor(1.0))
    torch.testing.assert_close(alpha[3:], torch.softmax(scores[3:], 0))


@pytest.mark.parametrize("half_width,length", [(1, 7), (3, 10), (4, 16), (20, 9)])
def test_band_attention_equals_sdpa_with_a_dense_band_mask(half_width, length):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, length, 4) for _ in range(3))
    pos = torch.arange(length)
    mask = (pos[:, None] - pos[None, :]).abs() <= half_width
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(band_attention(q, k, v, half_width), expected, rtol=1e-5, atol=1e-6)


def test_hilbert_curve_moves_one_cell_per_step():
    bits = 4
    x, y = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
    d = hilbert_index(x.ravel(), y.ravel(), bits)
    assert sorted(d.tolist()) == list(range(256))
    path = np.stack([x.ravel(), y.ravel()], 1)[np.argsort(d)]
    assert (np.abs(np.diff(path, axis=0)).sum(1) == 1).all()


def test_hilbert_order_keeps_neighbours_close():
    latlon = toy_graph(LAT, LON, num_mesh=500)["mesh"].latlon.numpy()
    order = hilbert_order(latlon)
    assert sorted(order.tolist()) == list(range(500))
    xyz = np.stack([np.cos(np.deg2rad(latlon[:, 0])) * np.cos(np.deg2rad(latlon[:, 1])),
                    np.cos(np.deg2rad(latlon[:, 0])) * np.sin(np.deg2rad(latlon[:, 1])),
                    np.sin(np.deg2rad(latlon[:, 0]))], 1)
    step = lambda idx: np.median(np.linalg.norm(np.diff(xyz[idx], axis=0), axis=1))  # noqa: E731
    assert step(order) < 0.25 * step(np.arange(500))  # Fibonacci numbering jumps around the globe


# ------------------------------------------------------------- forecaster

LAYOUT = ChannelLayout.of(["temperature", "surface_pressure"], [500, 850])  # 3 channels
FORCINGS = ["year_progress_sin", "toa_incident_solar_radiation"]
STATICS = ["geopotential_at_surface", "land_sea_mask"]


def statistics_dataset() -> xr.Dataset:
    stat = ["mean", "std", "tendency_std", "min", "max"]
    temp = np.array([[250.0, 280.0], [10.0, 12.0], [1.0, 1.5], [200.0, 220.0], [300.0, 320.0]])  # levels 500, 850
    data = {
        "temperature": (("statistic", "level"), temp[:, ::-1]),  # stored with levels descending
        "surface_pressure": (("statistic",), np.array([1.0e5, 1.0e3, 50.0, 9.0e4, 1.05e5])),
        "year_progress_sin": (("statistic",), np.array([0.0, 0.7, 0.0, -1.0, 1.0])),
        "toa_incident_solar_radiation": (("statistic",), np.array([1.0e6, 1.2e6, 3.0e5, 0.0, 4.0e6])),
        "geopotential_at_surface": (("statistic",), np.array([3.0e3, 6.0e3, 0.0, 0.0, 5.0e4])),
        "land_sea_mask": (("statistic",), np.array([0.3, 0.0, 0.0, 0.0, 1.0])),  # constant: zero std
    }
    return xr.Dataset(data, coords={"statistic": stat, "level": [850, 500]})


def test_normalisation_from_statistics_picks_channels_and_guards_zero_std():
    norm = Normalisation.from_statistics(statistics_dataset(), LAYOUT, FORCINGS, STATICS)
    assert LAYOUT.names == ["temperature/500", "temperature/850", "surface_pressure"]
    torch.testing.assert_close(norm.state_mean, torch.tensor([250.0, 280.0, 1.0e5]))
    torch.testing.assert_close(norm.state_std, torch.tensor([10.0, 12.0, 1.0e3]))
    torch.testing.assert_close(norm.tendency_std, torch.tensor([1.0, 1.5, 50.0]))
    torch.testing.assert_close(norm.forcing_std, torch.tensor([0.7, 1.2e6]))
    torch.testing.assert_close(norm.static_std, torch.tensor([6.0e3, 1.0]))  # zero std -> 1
    x = torch.tensor([[260.0, 262.0, 1.01e5]])
    torch.testing.assert_close(norm.normalise_state(x), torch.tensor([[1.0, -1.5, 1.0]]))
    torch.testing.assert_close(norm.denormalise_state(norm.normalise_state(x)), x)


def test_normalisation_names_missing_statistics():
    with pytest.raises(KeyError, match="land_sea_mask"):
        Normalisation.from_statistics(statistics_dataset().drop_vars("land_sea_mask"), LAYOUT, FORCINGS, STATICS)
    with pytest.raises(KeyError, match="level 250"):
        Normalisation.from_statistics(statistics_dataset(), ChannelLayout.of(["temperature"], [250]), [], [])


class ConstantNetwork(torch.nn.Module):
    """Predicts a fixed normalised tendency (times a learnable scale) whatever the input."""

    def __init__(self, in_channels: int, tendency: torch.Tensor) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.tendency = tendency
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.scale * self.tendency).expand(x.shape[0], x.shape[1], -1)


def forecaster_inputs(steps: int = 1, batch: int = 2):
    gen = torch.Generator().manual_seed(0)
    states = torch.tensor([260.0, 270.0, 1.0e5]) + torch.randn(batch, 2, G, 3, generator=gen)
    forcings = torch.rand(batch, 2 + steps, G, 2, generator=gen)
    static = torch.rand(G, 2, generator=gen)
    return states, forcings, static


def in_channels() -> int:
    return 2 * 3 + 3 * 2 + 2


def test_zero_prediction_step_returns_the_last_state():
    norm = Normalisation.from_statistics(statistics_dataset(), LAYOUT, FORCINGS, STATICS)
    model = Forecaster(ConstantNetwork(in_channels(), torch.zeros(3)), norm, input_steps=2)
    states, forcings, static = forecaster_inputs()
    torch.testing.assert_close(model.step(states, forcings, static), states[:, -1])


def test_step_and_target_tendency_are_inverse():
    norm = Normalisation.from_statistics(statistics_dataset(), LAYOUT, FORCINGS, STATICS)
    tendency = torch.tensor([0.5, -2.0, 1.0])
    model = Forecaster(ConstantNetwork(in_channels(), tendency), norm, input_steps=2)
    states, forcings, static = forecaster_inputs()
    nxt = model.step(states, forcings, static)
    torch.testing.assert_close(nxt - states[:, -1], (tendency * torch.tensor([1.0, 1.5, 50.0])).expand_as(nxt))
    target = model.normalised_target_tendency(states[:, -1], nxt)
    torch.testing.assert_close(target, tendency.expand_as(target))


def test_rollout_steps_chain_each_prediction_into_the_next_step():
    norm = Normalisation.from_statistics(statistics_dataset(), LAYOUT, FORCINGS, STATICS)
    tendency = torch.tensor([0.5, -2.0, 1.0])
    model = Forecaster(ConstantNetwork(in_channels(), tendency), norm, input_steps=2)
    states, forcings, static = forecaster_inputs(steps=3)
    increment = tendency * torch.tensor([1.0, 1.5, 50.0])  # tendency_std of the statistics by hand
    steps = list(model.rollout_steps(states, forcings, static, 3))
    assert len(steps) == 3
    for k, step in enumerate(steps):
        torch.testing.assert_close(step.tendency, tendency.expand_as(step.tendency))
        # A constant tendency: after k + 1 steps the state has moved k + 1 increments from the last input state.
        torch.testing.assert_close(step.input_state, states[:, -1] + k * increment)
        torch.testing.assert_close(step.state, states[:, -1] + (k + 1) * increment)
    torch.testing.assert_close(model.rollout(states, forcings, static, 3), torch.stack([s.state for s in steps], dim=1))
    with pytest.raises(ValueError, match="forcings must be"):
        next(model.rollout_steps(states, forcings, static, 4))


def test_network_input_layout_is_normalised_and_time_major():
    norm = Normalisation.from_statistics(statistics_dataset(), LAYOUT, FORCINGS, STATICS)
    model = Forecaster(ConstantNetwork(in_channels(), torch.zeros(3)), norm, input_steps=2)
    states, forcings, static = forecaster_inputs()
    x = model.network_input(states, forcings, static)
    assert x.shape == (2, G, in_channels())
    torch.testing.assert_close(x[:, :, 3:6], norm.normalise_state(states[:, 1]))  # state at t
    torch.testing.assert_close(x[:, :, 10:12], norm.normalise_forcing(forcings[:, 2]))  # forcing at t+6h
    torch.testing.assert_close(x[0, :, 12:], norm.normalise_static(static))
    with pytest.raises(ValueError, match="forcings must be"):
        model.network_input(states, forcings[:, :2], static)


def test_rollout_backpropagates_through_every_step(graph):
    model = Forecaster.build(make_params(), graph, LAYOUT, FORCINGS, STATICS, statistics_dataset())
    outputs = []

    def keep(module, args, output):
        output.retain_grad()
        outputs.append(output)

    model.network.register_forward_hook(keep)
    states, forcings, static = forecaster_inputs(steps=3)
    forecast = model.rollout(states, forcings, static, steps=3)
    assert forecast.shape == (2, 3, G, 3)
    forecast[:, -1].square().mean().backward()  # loss on the last step only
    assert len(outputs) == 3
    for k, out in enumerate(outputs):
        assert out.grad is not None and out.grad.abs().sum() > 0, f"no gradient reached step {k}"
    assert all(p.grad is not None for p in model.parameters())
    # the first step feeds the later ones: it is the same as a single step
    torch.testing.assert_close(forecast[:, 0], model.step(states, forcings[:, :3], static))


def test_forecaster_build_from_params_feeds_the_network(graph):
    model = Forecaster.build(make_params(processor="graph_transformer"), graph, LAYOUT, FORCINGS, STATICS, statistics_dataset())
    assert model.network.in_channels == in_channels() and model.network.out_channels == 3
    states, forcings, static = forecaster_inputs()
    assert model.step(states, forcings, static).shape == (2, G, 3)
    assert "norm_tendency_std" in model.state_dict()


# ---------------------------------------------------------------- summary


def test_summary_counts_match_the_layer_shapes(graph):
    d, layers = 16, 2
    net = make_net(graph, processor="gnn")

    def mlp(i, o):  # one hidden layer of width d, LayerNorm
        return i * d + d + d * o + o + 2 * o

    assert summary_dict(net)["processor"] == layers * (mlp(3 * d, d) + mlp(2 * d, d))
    counts = summary_dict(net)
    assert counts["total"] == sum(p.numel() for p in net.parameters())
    assert sum(counts[c] for c in ("embedders", "encoder", "processor", "decoder")) == counts["total"]
    table = summary(net)
    for name in ("embedders", "encoder", "processor", "decoder", "total"):
        assert name in table
    assert f"{counts['total']:,}" in table


# ------------------------------------------------------------ real graph


def test_networks_on_the_icosahedral_graph_of_a_5625_degree_grid():
    """zonda.graph's multi-mesh: every grid point feeds the mesh and is fed by it, for each processor."""
    lat, lon = np.arange(-87.1875, 87.19, 5.625), np.arange(0.0, 360.0, 5.625)
    n_grid = len(lat) * len(lon)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = build_graph(GraphParams(refinement=1, encoder_radius_factor=1.0, on_uncovered="warn"), lat, lon)
    for overrides in ({"processor": "gnn"}, {"processor": "graph_transformer"}, {"processor": "transformer", "attention_window": 8}):
        torch.manual_seed(0)
        net = build_network(make_params(**overrides), graph, C_IN, C_OUT)
        x = torch.randn(2, n_grid, C_IN, requires_grad=True)
        mesh_out = []
        hook = net.encoder.register_forward_hook(lambda module, args, out: mesh_out.append(out[1]))
        y = net(x)
        hook.remove()
        assert y.shape == (2, n_grid, C_OUT) and torch.isfinite(y).all()
        # encoder: the mesh latents depend on every grid point
        (mesh_out[0] * torch.randn_like(mesh_out[0])).sum().backward()
        assert (x.grad.abs().sum(dim=(0, 2)) > 0).all(), f"{overrides}: grid points without encoder edges"
        # decoder: shifting the processed mesh latents changes the output at every grid point
        hook = net.processor.register_forward_hook(lambda module, args, out: out + 1.0)
        shifted = net(x)
        hook.remove()
        assert ((shifted - y).abs().amax(dim=(0, 2)) > 0).all(), f"{overrides}: grid points without decoder edges"


def test_params_summary_does_not_depend_on_the_graph_size(graph):
    params = load_params(REPO / "params" / "local.yaml")
    layout = ChannelLayout.of(params.data.variables, params.data.levels)
    steps = params.model.input_steps
    in_channels = steps * len(layout) + (steps + 1) * len(params.data.forcings) + len(params.data.static)
    full = build_network(params.model, graph, in_channels, len(layout))
    assert params_summary_dict(params) == summary_dict(full)
    assert f"{summary_dict(full)['total']:,}" in params_summary(params)
