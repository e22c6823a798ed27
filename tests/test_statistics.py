"""Statistics stage: every statistic against numpy on the full in-memory array."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from zonda.grid import cell_area_weights, is_full_circle
from zonda.snapshot import build_snapshot, open_snapshot
from zonda.statistics import (
    Moments,
    build_statistics,
    compute_statistics,
    load_statistics,
    statistics_hash,
    time_blocks,
    zonal_power_name,
)


def _reference(x: np.ndarray, w: np.ndarray, axes: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Weighted statistics written out directly from their definitions."""
    w = np.broadcast_to(w, x.shape)
    mean = (w * x).sum(axes) / w.sum(axes)
    expand = tuple(slice(None) if i not in axes else None for i in range(x.ndim))
    std = np.sqrt((w * (x - mean[expand]) ** 2).sum(axes) / w.sum(axes))
    return {"mean": mean, "std": std, "min": x.min(axes), "max": x.max(axes)}


@pytest.fixture
def snapshot_dir(synthetic_params, tmp_path: Path):
    def build(*overrides: str) -> tuple[Path, object]:
        params = synthetic_params(*overrides)
        build_snapshot(params, tmp_path / "snap", progress=False)
        return tmp_path / "snap", params

    return build


@pytest.mark.parametrize("area_weighted", [True, False])
def test_statistics_match_numpy(snapshot_dir, area_weighted: bool) -> None:
    path, params = snapshot_dir(f"statistics.area_weighted={area_weighted}", "statistics.chunk_budget_mb=0.05")
    stats = compute_statistics(path, params, progress=False)
    period = params.statistics_period
    ds = open_snapshot(path).sel(time=slice(np.datetime64(period.start), np.datetime64(period.end))).load()
    lat_w = cell_area_weights(ds.latitude.values) if area_weighted else np.ones(ds.sizes["latitude"])

    t = ds["temperature"].values.astype("f8")  # (time, level, lat, lon)
    w4 = lat_w[None, None, :, None]
    ref = _reference(t, w4, (0, 2, 3))
    tend = _reference(np.diff(t, axis=0), w4, (0, 2, 3))
    got = stats["temperature"]
    for name in ("mean", "std", "min", "max"):
        np.testing.assert_allclose(got.sel(statistic=name).values, ref[name], rtol=1e-10)
    np.testing.assert_allclose(got.sel(statistic="tendency_std").values, tend["std"], rtol=1e-10)
    assert list(got["level"].values) == [500, 850]

    sp = ds["surface_pressure"].values.astype("f8")
    ref_sp = _reference(sp, lat_w[None, :, None], (0, 1, 2))
    np.testing.assert_allclose(stats["surface_pressure"].sel(statistic="std").item(), ref_sp["std"], rtol=1e-10)

    dp = ds["day_progress_cos"].values.astype("f8")  # (time, lon): no latitude, unweighted
    np.testing.assert_allclose(stats["day_progress_cos"].sel(statistic="mean").item(), dp.mean(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        stats["day_progress_cos"].sel(statistic="tendency_std").item(), np.diff(dp, axis=0).std(), rtol=1e-9
    )
    assert stats["geopotential_at_surface"].sel(statistic="tendency_std").item() == 0.0
    assert stats.attrs["time_steps"] == ds.sizes["time"]


def test_tendency_zonal_power_is_the_mean_dft_power_of_the_differences_per_circle(snapshot_dir) -> None:
    """Brute force: the DFT written out as a sum, per time step, level, circle and wavenumber."""
    path, params = snapshot_dir("statistics.chunk_budget_mb=0.05")
    stats = compute_statistics(path, params, progress=False)
    period = params.statistics_period
    ds = open_snapshot(path).sel(time=slice(np.datetime64(period.start), np.datetime64(period.end))).load()
    diff = np.diff(ds["temperature"].values.astype("f8"), axis=0)  # (T-1, level, lat, lon)
    n_lon = diff.shape[-1]
    k = np.arange(n_lon // 2 + 1)
    basis = np.exp(-2j * np.pi * np.outer(k, np.arange(n_lon)) / n_lon) / n_lon  # (K, L)
    expected = (np.abs(np.einsum("tzyl,kl->tzyk", diff, basis)) ** 2).mean(axis=0)  # (level, lat, K)
    got = stats[zonal_power_name("temperature")]
    assert got.dims == ("level", "latitude", "zonal_wavenumber")
    np.testing.assert_allclose(got.values, expected, rtol=1e-9, atol=1e-14)
    sp = stats[zonal_power_name("surface_pressure")]
    assert sp.dims == ("latitude", "zonal_wavenumber") and sp.sizes["zonal_wavenumber"] == n_lon // 2 + 1
    for name in ("day_progress_cos", "geopotential_at_surface"):  # no latitude circles / no tendency
        assert zonal_power_name(name) not in stats.data_vars


def test_only_longitudes_closing_the_circle_give_zonal_wavenumbers() -> None:
    assert is_full_circle(np.arange(64) * 5.625)  # 0 .. 354.375
    assert is_full_circle(-180.0 + np.arange(240) * 1.5)
    assert not is_full_circle(np.arange(0.0, 91.0, 1.5))  # a regional grid
    assert not is_full_circle(np.array([0.0, 90.0, 200.0, 270.0]))  # uneven
    assert not is_full_circle(np.arange(64)[::-1] * 5.625)  # descending
    assert not is_full_circle(np.array([0.0]))


def test_area_weighting_changes_the_mean_of_a_latitude_gradient(snapshot_dir) -> None:
    path, params = snapshot_dir()
    weighted = compute_statistics(path, params, progress=False)
    params.statistics.area_weighted = False
    plain = compute_statistics(path, params, progress=False)
    # synthetic data have no latitude structure, so the two means agree to noise level only
    a = weighted["temperature"].sel(statistic="mean").values
    b = plain["temperature"].sel(statistic="mean").values
    assert not np.array_equal(a, b) and np.allclose(a, b, atol=0.5)


def test_result_does_not_depend_on_the_chunk_budget(snapshot_dir) -> None:
    path, params = snapshot_dir("statistics.chunk_budget_mb=0.02")
    small = compute_statistics(path, params, progress=False)
    params.statistics.chunk_budget_mb = 512
    large = compute_statistics(path, params, progress=False)
    for name in small.data_vars:
        np.testing.assert_allclose(small[name].values, large[name].values, rtol=1e-10, atol=1e-12)


def test_blocks_respect_the_budget_and_cover_every_step() -> None:
    blocks = time_blocks(n_steps=101, bytes_per_step=1000, budget_bytes=20_000)
    assert blocks[0] == (0, 5) and blocks[-1][1] == 101  # 20 kB / (1 kB x 4 working copies)
    assert all(b - a >= 1 for a, b in blocks) and all(blocks[i][1] == blocks[i + 1][0] for i in range(len(blocks) - 1))
    assert time_blocks(5, 10**9, 1.0) == [(0, 2), (2, 4), (4, 5)]  # at least 2 steps per block


def test_chan_merge_equals_one_pass() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, size=(40, 3, 7))
    w = rng.uniform(0.5, 1.5, size=7)
    whole = Moments.of(x, level_axis=1, weight_axis=2, weights=w)
    parts = [Moments.of(part, level_axis=1, weight_axis=2, weights=w) for part in (x[:13], x[13:14], x[14:])]
    merged = parts[0].merge(parts[1]).merge(parts[2])
    ref_mean = (x * w).sum((0, 2)) / (w.sum() * 40)
    np.testing.assert_allclose(whole.mean, ref_mean, rtol=1e-12)
    parts = merged
    np.testing.assert_allclose(parts.mean, whole.mean, rtol=1e-12)
    np.testing.assert_allclose(parts.std, whole.std, rtol=1e-12)
    np.testing.assert_allclose(parts.weight, whole.weight, rtol=1e-12)


def test_dask_cluster_gives_the_same_statistics(snapshot_dir) -> None:
    from distributed import LocalCluster

    path, params = snapshot_dir("statistics.chunk_budget_mb=0.05")
    local = compute_statistics(path, params, progress=False)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        params.statistics.dask_address = cluster.scheduler_address
        distributed = compute_statistics(path, params, progress=False)
    for name in local.data_vars:
        np.testing.assert_allclose(distributed[name].values, local[name].values, rtol=1e-12, atol=1e-12)


def test_artifact_has_stable_hash_and_round_trips(snapshot_dir, tmp_path: Path) -> None:
    path, params = snapshot_dir()
    m1 = build_statistics(params, path, tmp_path / "stats1")
    m2 = build_statistics(params, path, tmp_path / "stats2")
    assert m1["statistics_hash"] == m2["statistics_hash"]
    loaded = load_statistics(tmp_path / "stats1")
    assert f"sha256:{statistics_hash(loaded)}" == m1["statistics_hash"]
    assert list(loaded["statistic"].values) == ["mean", "std", "tendency_std", "min", "max"]
    params.statistics.period = params.data.splits.validation
    m3 = build_statistics(params, path, tmp_path / "stats3")
    assert m3["statistics_hash"] != m1["statistics_hash"]


def test_too_short_period_is_rejected(snapshot_dir) -> None:
    path, params = snapshot_dir()
    params.statistics.period = params.statistics.period or params.data.splits.train
    params.statistics.period = type(params.data.splits.train).model_validate("2000-01-01T00/2000-01-01T00")
    with pytest.raises(ValueError, match="statistics.period .* holds 1 time step"):
        compute_statistics(path, params, progress=False)
