"""Training data: samples line up in time, stay inside their split, shard and resume exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.support import training_builders as support
from zonda.params import ParamsError, TimeWindow
from zonda.snapshot import open_snapshot
from zonda.snapshot_reader import ChunkCache, SnapshotReader
from zonda.training.data import (
    FirstBatchForever,
    ResumableDataLoader,
    ShardedEpochSampler,
    SnapshotDataModule,
    rollout_for_epoch,
    window_anchors,
    worker_start_method,
)


@pytest.fixture(scope="module")
def datamodule() -> SnapshotDataModule:
    return SnapshotDataModule(support.params(), support.artifacts()["snapshot"])


def test_samples_hold_the_right_times_in_layout_order(datamodule):
    ds = open_snapshot(support.artifacts()["snapshot"]).load()
    layout = datamodule.layout
    dataset = datamodule.dataset("train", rollout=3)
    t_index = {t: i for i, t in enumerate(ds["time"].values.astype("datetime64[ns]"))}
    for k in (0, len(dataset) // 2, len(dataset) - 1):
        sample = dataset[k]
        anchor = t_index[np.datetime64(int(sample["time"]), "ns")]
        # Independent reference: xarray selection + ChannelLayout.stack.
        expected_states = layout.stack(ds.isel(time=[anchor - 1, anchor]))
        expected_targets = layout.stack(ds.isel(time=[anchor + 1, anchor + 2, anchor + 3]))
        np.testing.assert_array_equal(sample["states"].numpy(), expected_states)
        np.testing.assert_array_equal(sample["targets"].numpy(), expected_targets)
        # The time-coded temperature (200 + 0.5 t) reads the 6-hourly steps directly.
        c = layout.index("temperature", 500)
        np.testing.assert_allclose(sample["states"][:, 0, c].numpy(), 200 + 0.5 * np.array([anchor - 1, anchor]))
        np.testing.assert_allclose(sample["targets"][:, 0, c].numpy(), 200 + 0.5 * np.arange(anchor + 1, anchor + 4))
        assert sample["forcings"].shape == (5, layout_grid(ds), len(datamodule.forcing_names))


def layout_grid(ds) -> int:
    return ds.sizes["latitude"] * ds.sizes["longitude"]


def test_forcings_are_broadcast_on_the_grid_in_row_major_order(datamodule):
    ds = open_snapshot(support.artifacts()["snapshot"]).load()
    sample = datamodule.dataset("train", rollout=1)[2]
    anchor = int(np.flatnonzero(ds["time"].values.astype("datetime64[ns]") == np.datetime64(int(sample["time"]), "ns"))[0])
    times = [anchor - 1, anchor, anchor + 1]
    names = datamodule.forcing_names
    day = ds["day_progress_sin"].isel(time=times).values  # (T, lon)
    expected_day = np.broadcast_to(day[:, None, :], (3, support.N_LAT, support.N_LON)).reshape(3, -1)
    np.testing.assert_array_equal(sample["forcings"][..., names.index("day_progress_sin")].numpy(), expected_day)
    year = ds["year_progress_cos"].isel(time=times).values
    np.testing.assert_array_equal(sample["forcings"][..., names.index("year_progress_cos")].numpy(), np.repeat(year[:, None], 128, 1))
    np.testing.assert_array_equal(
        datamodule.static.numpy()[:, 0], ds["geopotential_at_surface"].values.reshape(-1)
    )


def test_no_sample_crosses_a_split_boundary_and_edge_windows_are_kept(datamodule):
    p = support.params()
    times = datamodule.times
    for split, rollout in (("train", 1), ("train", 2), ("validation", 4)):
        window = getattr(p.data.splits, split)
        anchors = datamodule.anchors(split, rollout)
        first, last = times[anchors - 1], times[anchors + rollout]
        assert (first >= np.datetime64(window.start)).all() and (last <= np.datetime64(window.end)).all()
        # Every window that fits is used: the first starts at the split start, the last ends at its end.
        assert first.min() == np.datetime64(window.start) and last.max() == np.datetime64(window.end)
        steps = int((np.datetime64(window.end) - np.datetime64(window.start)) / np.timedelta64(6, "h")) + 1
        assert anchors.size == steps - (1 + rollout)


def test_windows_with_a_time_gap_are_skipped():
    times = np.array(["2000-01-01T00", "2000-01-01T06", "2000-01-01T12", "2000-01-02T00", "2000-01-02T06"], dtype="datetime64[ns]")
    window = TimeWindow.model_validate("2000-01-01/2000-01-02")
    # Windows of 3 steps: [0,1,2] is contiguous; [1,2,3] and [2,3,4] span the 12 h gap.
    assert window_anchors(times, window, input_steps=2, rollout=1).tolist() == [1]


def test_a_split_too_short_for_the_validation_rollout_is_named():
    p = support.params("data.splits.validation=2000-01-05/2000-01-05")
    with pytest.raises(ValueError, match=r"data\.splits\.validation .* no complete window"):
        SnapshotDataModule(p, support.artifacts()["snapshot"])


def test_curriculum_adds_a_step_every_n_epochs():
    p = support.params("training.rollout.start=1", "training.rollout.end=3", "training.rollout.increase_every_epochs=2")
    assert [rollout_for_epoch(p.training.rollout, e) for e in range(7)] == [1, 1, 2, 2, 3, 3, 3]


def test_curriculum_holds_one_step_training_then_grows():
    """GraphCast's schedule: one-step training for hold_epochs, then the rollout grows; the dataloaders
    are rebuilt at every epoch where the curriculum moves (3, 5, 7 here: every gcd(3, 2) = 1 epoch)."""
    p = support.params(
        "training.rollout.start=1", "training.rollout.end=4", "training.rollout.increase_every_epochs=2",
        "training.rollout.hold_epochs=3",
    )
    steps = [rollout_for_epoch(p.training.rollout, e) for e in range(10)]
    assert steps == [1, 1, 1, 1, 1, 2, 2, 3, 3, 4]
    every = SnapshotDataModule(p, support.artifacts()["snapshot"]).reload_every_n_epochs
    moves = [e for e in range(1, 10) if steps[e] != steps[e - 1]]
    assert all(e % every == 0 for e in moves)


def test_ddp_shards_make_up_the_single_process_global_batches():
    single = ShardedEpochSampler(23, 4, seed=7)
    ranks = [ShardedEpochSampler(23, 2, world_size=2, rank=r, seed=7) for r in range(2)]
    for epoch in (0, 1):
        full = single.batches(epoch)
        shards = [s.batches(epoch) for s in ranks]
        assert len(full) == 5 and all(len(b) == 5 for b in shards)  # 23 // 4 global batches, last dropped
        for j, batch in enumerate(full):
            np.testing.assert_array_equal(np.concatenate([shards[0][j], shards[1][j]]), batch)
    assert not np.array_equal(single.order(0), single.order(1))  # reshuffled every epoch
    np.testing.assert_array_equal(single.order(1), ShardedEpochSampler(23, 4, seed=7).order(1))  # reproducible


def test_validation_sampler_keeps_every_sample_once_across_ranks():
    ranks = [ShardedEpochSampler(7, 2, world_size=2, rank=r, shuffle=False, drop_last=False) for r in range(2)]
    seen = sorted(int(i) for s in ranks for i in s)
    assert seen == list(range(7))
    assert [len(s) for s in ranks] == [4, 3]


def _loader(datamodule, **kwargs) -> ResumableDataLoader:
    if kwargs.get("num_workers"):  # as the DataModule starts its workers
        kwargs.setdefault("multiprocessing_context", worker_start_method())
    dataset = datamodule.dataset("train", 1)
    sampler = ShardedEpochSampler(len(dataset), 2, seed=3, epoch=kwargs.pop("epoch", 0))
    return ResumableDataLoader(dataset, sampler, **kwargs)


@pytest.mark.parametrize("workers", [0, 1], ids=["inline", "worker"])
def test_loader_state_resumes_mid_epoch_with_the_next_batch(datamodule, workers):
    reference = [b["time"].tolist() for b in _loader(datamodule)]
    loader = _loader(datamodule, num_workers=workers)
    iterator = iter(loader)
    consumed = [next(iterator)["time"].tolist() for _ in range(3)]
    state = loader.state_dict()  # batches handed over, not the ones read ahead
    assert consumed == reference[:3] and state["batches"] == 3
    iterator.close()

    resumed = _loader(datamodule)
    resumed.load_state_dict(state)
    rest = [b["time"].tolist() for b in resumed]
    assert rest == reference[3:]
    # The next epoch starts from its first batch again, in that epoch's order.
    resumed.sampler.set_epoch(1)
    assert [b["time"].tolist() for b in resumed] == [b["time"].tolist() for b in _loader(datamodule, epoch=1)]


def test_loader_state_of_a_finished_epoch_moves_to_the_next_epoch(datamodule):
    loader = _loader(datamodule)
    n = len(list(loader))
    resumed = _loader(datamodule)
    resumed.load_state_dict(loader.state_dict())
    assert resumed.sampler.epoch == 1 and resumed.state_dict()["batches"] == 0
    assert len(list(resumed)) == n


def test_worker_processes_read_the_same_batches(datamodule):
    serial = [b["targets"] for b in _loader(datamodule)]
    parallel = [b["targets"] for b in _loader(datamodule, num_workers=2, persistent_workers=True, prefetch_factor=2)]
    assert len(serial) == len(parallel)
    for a, b in zip(serial, parallel):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_fake_loader_serves_the_identical_first_batch_every_step(datamodule):
    real = _loader(datamodule)
    first = next(iter(_loader(datamodule)))
    fake = FirstBatchForever(real)
    for _epoch in range(2):
        batches = list(fake)
        assert len(batches) == len(real)
        assert all(b is batches[0] for b in batches)  # the same tensors, from memory
        torch.testing.assert_close(batches[0]["states"], first["states"], rtol=0, atol=0)


def test_reader_is_exact_across_chunk_boundaries_whatever_the_cache_holds(datamodule):
    ds = open_snapshot(support.artifacts()["snapshot"]).load()
    r = datamodule.reader
    tiny = SnapshotReader(r.path, r.layout, r.forcing_names, r.static_names, [500, 850], (support.N_LAT, support.N_LON),
                          cache_bytes=1)  # keeps one chunk: every read evicts
    for start, stop in ((0, 3), (2, 7), (3, 5), (7, 13), (25, 32), (0, 32)):  # chunks of 4 steps
        expected = datamodule.layout.stack(ds.isel(time=slice(start, stop)))
        for reader in (r, tiny):
            states, forcings = reader.window(start, stop)
            np.testing.assert_array_equal(states, expected)
            assert forcings.shape == (stop - start, support.N_LAT * support.N_LON, 4)
    assert len(tiny._cache) == 1


def test_chunk_cache_is_bounded_and_least_recently_used_goes_first():
    cache = ChunkCache(max_bytes=3 * 80)
    for k in range(3):
        cache.put(k, np.zeros(10))  # 80 bytes each
    cache.get(0)  # 0 is now the most recent
    cache.put(3, np.zeros(10))
    assert 1 not in cache and all(k in cache for k in (0, 2, 3)) and cache.nbytes == 240


def test_an_explicit_schedule_gives_each_epoch_its_rollout_and_holds_the_last():
    """GraphCast's curriculum followed by a long-rollout phase (README, Skill): one entry per epoch, the last
    holding; the dataloaders are rebuilt every epoch, and the train split must hold the longest window."""
    p = support.params("training.rollout={schedule: [1, 1, 2, 3, 3, 8]}")  # replaces the preset's start/end
    steps = [rollout_for_epoch(p.training.rollout, e) for e in range(8)]
    assert steps == [1, 1, 2, 3, 3, 8, 8, 8]
    assert p.training.rollout.longest == 8
    assert SnapshotDataModule(p, support.artifacts()["snapshot"]).reload_every_n_epochs == 1
    assert support.params("training.rollout={schedule: [2]}").training.rollout.longest == 2
    too_long = support.params("training.rollout={schedule: [1, 400]}")
    with pytest.raises(ValueError, match=r"data\.splits\.train .* no complete window of 2 input and 400 target steps"):
        SnapshotDataModule(too_long, support.artifacts()["snapshot"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["training.rollout={schedule: [1, 0, 2]}"], r"schedule entries are rollout steps \(>= 1\), got \[0\]"),
        (["training.rollout.schedule=[1, 2]"], "give either schedule or start, end, not both"),  # debug.yaml sets both
        (["training.rollout={schedule: []}"], "training.rollout.schedule"),
    ],
)
def test_a_bad_schedule_is_refused_naming_the_field(overrides, message):
    with pytest.raises(ParamsError, match=message):
        support.params(*overrides)
