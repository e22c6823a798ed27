"""Tests of the physics baseline (zonda.data.hs_baseline) and the truth states it starts from.

The references are independent of the baseline's own output: the generator's
truth, the identity coarsening (which must reproduce the truth exactly), and
the error of the truncated initial state (computed by diagnosing the truth's
state after zeroing the dropped coefficients), which bounds the first step.
"""

from __future__ import annotations

import numpy as np
import pytest

from zonda.data import hs_dycore
from zonda.data.heldsuarez import generate
from zonda.data.hs_baseline import CoarseModel, check_coarsening, coarse_arrays, physics_forecast
from zonda.data.truth_states import STATE_PREFIX, STATE_TIME, TruthStatesError, split_states
from zonda.params import HeldSuarezParams

LEVELS = [250, 500, 850]
KEEP = (np.datetime64("2000-01-01T06:00"), np.datetime64("2000-01-02T00:00"))


@pytest.fixture(scope="module")
def truth():
    """2.5 days of T21 L12 truth with its states kept over 2000-01-01T06 .. 01-02T00 (4 states)."""
    ds = generate(HeldSuarezParams(days=2.5), LEVELS, progress=False, keep_states=KEEP)
    return split_states(ds)


def _area_rmse(a: np.ndarray, b: np.ndarray) -> float:
    """RMSE over (..., lat, lon) with cos(latitude) weights of the WB2 grid."""
    w = np.cos(np.deg2rad(hs_dycore.wb2_latitudes()))[:, None]
    w = np.broadcast_to(w, a.shape[-2:])
    return float(np.sqrt(np.sum((a - b) ** 2 * w) / (np.sum(w) * np.prod(a.shape[:-2]))))


def test_generator_keeps_states_only_inside_the_window(truth):
    data, states = truth
    assert states is not None and STATE_TIME not in data.dims
    kept = states[STATE_TIME].values
    assert kept[0] == KEEP[0] and kept[-1] == KEEP[1] and len(kept) == 4
    assert states[STATE_PREFIX + "vorticity"].shape == (4, 12, 43, 23)  # (n, L, 2T+1, T+2) at T21
    assert states[STATE_PREFIX + "log_surface_pressure"].shape == (4, 1, 43, 23)
    assert states[STATE_PREFIX + "vorticity"].attrs["hs_truncation"] == 21


def test_identity_coarsening_reproduces_the_truth(truth):
    """T21 L12 at the truth's time step is the truth's own model: the forecast equals the record."""
    data, states = truth
    init = states[STATE_TIME].values[:1]
    fc = physics_forecast(states, init_times=init, steps=4, levels=LEVELS, model=CoarseModel(21, 12, 30.0), progress=False)
    for k in range(4):
        valid = init[0] + fc["prediction_timedelta"].values[k]
        for name, tol in (("geopotential", 0.5), ("temperature", 1e-3), ("surface_pressure", 0.5)):
            got = fc[name].isel(time=0, prediction_timedelta=k).values
            want = data[name].sel(time=valid).values
            assert _area_rmse(got, want) < tol, (name, k)


def _truncation_error(states, truncation: int) -> float:
    """Z500 RMSE between the truth's first state and the same state with every coefficient of
    total wavenumber l > ``truncation`` zeroed, both diagnosed by the truth's own model."""
    fine = {f: states[STATE_PREFIX + f].isel({STATE_TIME: 0}).values for f in hs_dycore.STATE_FIELDS}
    cut = {}
    for name, values in fine.items():
        values = values.copy()  # (L, 2T+1, T+2), zonal wavenumbers interleaved 0, 1, -1, ...
        values[:, 2 * truncation + 1 :, :] = 0.0
        values[:, :, truncation + 1 :] = 0.0
        cut[name] = values
    dycore = hs_dycore.get_dycore(21, 12, 30.0)
    diagnose = hs_dycore.get_diagnostics(dycore, tuple(LEVELS))

    def z500(arrays):
        z = hs_dycore.dimensionalize(dycore, "geopotential", np.asarray(diagnose(hs_dycore.state_from_arrays(dycore, arrays))["geopotential"]))
        return np.swapaxes(z, -1, -2)[LEVELS.index(500)]  # (lat, lon)

    return _area_rmse(z500(cut), z500(fine))


def test_coarse_first_step_error_is_bounded_by_the_truncation(truth):
    """The 6-hour error of a T15 L12 forecast lies between the truncation errors it cannot avoid.

    Lower bound: the coefficients beyond T15 are gone (0.9 x that truncation error; the truth's own
    model started from the truncated state stays within a few percent of it over 6 hours).
    Upper bound: dinosaur's exponential filter damps every wavenumber above ``FILTER_CUTOFF * T``
    (l > 12 at T15) within a few steps, so the error reaches at most the truncation error beyond
    T12, plus 15% for 6 hours of growth."""
    data, states = truth
    init = states[STATE_TIME].values[:1]
    fc = physics_forecast(states, init_times=init, steps=1, levels=LEVELS, model=CoarseModel(15, 12, 30.0), progress=False)
    valid = init[0] + fc["prediction_timedelta"].values[0]
    error = _area_rmse(
        fc["geopotential"].sel(level=500).isel(time=0, prediction_timedelta=0).values,
        data["geopotential"].sel(level=500, time=valid).values,
    )
    lower = 0.9 * _truncation_error(states, 15)
    upper = 1.15 * _truncation_error(states, int(hs_dycore.FILTER_CUTOFF * 15))
    assert lower > 10.0  # the truth has energy beyond T15: the bound is not vacuous
    assert lower < error < upper


def test_coarse_arrays_by_hand():
    rng = np.random.default_rng(0)
    fine = {
        "vorticity": rng.standard_normal((4, 9, 6)).astype(np.float32),  # T4: (L=4, 2*4+1, 4+2)
        "log_surface_pressure": rng.standard_normal((1, 9, 6)).astype(np.float32),
    }
    out = coarse_arrays(fine, truncation=2, layers=2)
    assert out["vorticity"].shape == (2, 5, 4) and out["log_surface_pressure"].shape == (1, 5, 4)
    # coarse layer 1 = mean of fine layers 2 and 3; l <= 2 kept, the l = 3 column zero
    np.testing.assert_allclose(out["vorticity"][1, :, :3], 0.5 * (fine["vorticity"][2, :5, :3] + fine["vorticity"][3, :5, :3]), rtol=1e-6)
    assert not out["vorticity"][:, :, 3].any()
    np.testing.assert_array_equal(out["log_surface_pressure"][0, :, :3], fine["log_surface_pressure"][0, :5, :3])


@pytest.mark.parametrize(
    ("model", "match"),
    [(CoarseModel(31, 12, 30.0), "between T2 and the truth's T21"), (CoarseModel(10, 5, 60.0), "must divide the truth's 12")],
)
def test_coarsening_must_coarsen(model, match):
    with pytest.raises(ValueError, match=match):
        check_coarsening(truth_truncation=21, truth_layers=12, model=model)


def test_missing_init_time_is_named(truth):
    _, states = truth
    with pytest.raises(TruthStatesError, match=r"first 2000-01-05"):
        physics_forecast(
            states, init_times=np.array(["2000-01-05T00"], "datetime64[ns]"), steps=1, levels=LEVELS,
            model=CoarseModel(10, 6, 60.0), progress=False,
        )
