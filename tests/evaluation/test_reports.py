"""Scorecard, error-growth and map PNGs, the Markdown summary and the verdict against every baseline."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from zonda.evaluation import (
    compute_climatology,
    console_verdict,
    evaluate_with_baselines,
    markdown_summary,
    plot_error_growth,
    plot_maps,
    plot_scorecard,
    write_summary,
)
from zonda.evaluation.alignment import valid_times
from zonda.evaluation.plots import error_growth_figure, relative_differences, scorecard_figure

LAT = np.linspace(-80.0, 80.0, 9)
LON = np.arange(0.0, 360.0, 30.0)
TIMES = pd.date_range("2000-01-01", periods=20, freq="6h")
INITS = TIMES[:4]
LEADS = pd.to_timedelta([6, 12, 18, 24], unit="h").values.astype("timedelta64[ns]")
HEADLINE = ["geopotential/500", "surface_pressure"]


@pytest.fixture(scope="module")
def data():
    """Random-walk truth, and a model = truth at valid time + noise growing slower than persistence error."""
    rng = np.random.default_rng(0)
    walk = lambda *shape: np.cumsum(rng.normal(size=(len(TIMES), *shape)), axis=0)  # noqa: E731
    truth = xr.Dataset(
        {
            "geopotential": (("time", "level", "latitude", "longitude"), 5e4 + 100 * walk(1, 9, 12), {"units": "m**2 s**-2"}),
            "surface_pressure": (("time", "latitude", "longitude"), 1e5 + 50 * walk(9, 12), {"units": "Pa"}),
        },
        coords={"time": TIMES, "level": [500], "latitude": LAT, "longitude": LON},
    )
    perfect = truth.sel(time=valid_times(INITS, LEADS)).assign_coords(time=INITS.values).transpose("time", "prediction_timedelta", ...)
    noise_scale = (np.arange(1, 5) * 0.3)[None, :, None, None, None]  # grows with lead
    model = perfect.copy()
    model["geopotential"] = perfect["geopotential"] + 100 * noise_scale * rng.normal(size=perfect["geopotential"].shape)
    # surface pressure: the model is much worse than persistence at every lead
    model["surface_pressure"] = perfect["surface_pressure"] + 2000 * rng.normal(size=perfect["surface_pressure"].shape)
    clim = compute_climatology(truth)
    return truth, model, clim, evaluate_with_baselines(model, truth, clim)


def _assert_png(path, min_width, min_height):
    assert path.exists() and path.stat().st_size > 10_000
    image = mpimg.imread(path)
    assert image.shape[1] >= min_width and image.shape[0] >= min_height
    assert image[..., :3].std() > 0.05  # not a blank canvas
    return image


def test_scorecard_png_and_numbers(tmp_path, data):
    results = data[3]
    path = plot_scorecard(results, tmp_path / "scorecard.png", HEADLINE, [0.5, 1])
    _assert_png(path, 300, 300)
    pct, values, rows = relative_differences(results, HEADLINE, [0.5, 1])
    assert rows[0] == "geopotential/500\nvs persistence" and len(rows) == 4
    model = float(results["model"]["geopotential"].sel(metric="rmse", level=500, lead_time=np.timedelta64(1, "D")))
    pers = float(results["persistence"]["geopotential"].sel(metric="rmse", level=500, lead_time=np.timedelta64(1, "D")))
    assert pct[0, 1] == pytest.approx(100 * (model - pers) / pers)
    assert values[0, 1] == pytest.approx(model)
    assert pct[2, 0] > 0  # surface pressure: model worse than persistence (red)
    with pytest.raises(ValueError, match="rmse"):
        plot_scorecard(results, tmp_path / "acc.png", HEADLINE, [1], metric="acc")


def test_error_growth_png(tmp_path, data):
    path = plot_error_growth(data[3], tmp_path / "growth.png", HEADLINE)
    _assert_png(path, 600, 400)
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left no temporary behind


def test_maps_png_per_headline_variable(tmp_path, data):
    truth, model = data[0], data[1]
    paths = plot_maps(model, truth, tmp_path / "maps", HEADLINE, [0.5, 1], init_time=INITS[1])
    assert [p.name for p in paths] == ["maps_geopotential_500.png", "maps_surface_pressure.png"]
    for p in paths:
        _assert_png(p, 900, 400)
    with pytest.raises(KeyError, match="init time"):
        plot_maps(model, truth, tmp_path, HEADLINE, [1], init_time="1999-01-01")


def test_markdown_summary(tmp_path, data):
    results = data[3]
    text = markdown_summary(results, HEADLINE, [0.5, 1])
    assert "**4** init times, 2000-01-01 00:00:00 to 2000-01-01 18:00:00" in text
    assert "- **geopotential/500**: beats persistence at all 4 leads (RMSE and ACC); beats climatology at all 4 leads (RMSE)." in text
    assert "- **surface_pressure**: **loses** to persistence at all 4 leads (RMSE and ACC); **loses** to climatology at all 4 leads (RMSE)." in text
    rows = [line for line in text.splitlines() if line.startswith("| geopotential/500 [m**2 s**-2] | 1d |")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    model = results["model"]["geopotential"].sel(metric="rmse", level=500, lead_time=np.timedelta64(1, "D"))
    assert cells[2] == f"**{float(model):.4g}**" and cells[-1] == "model"
    acc_header = text.split("## ACC")[1].splitlines()[4]
    assert acc_header == "| variable | lead | model | persistence | best |"  # the climatology's ACC 0 is not a score
    path = write_summary(text, tmp_path / "summary.md")
    assert path.read_text(encoding="utf-8") == text


# --- crafted results: the model loses to climatology at long leads and to an extra baseline by ACC ---

DAYS = np.arange(1, 41) * 0.25  # 0.25d .. 10d, the pipeline's 40 leads
EXTRA = "dinosaur-T10L6"


def _crafted(rmse_z, acc_z, rmse_sp=None, acc_sp=None, *, days=DAYS) -> xr.Dataset:
    """A results Dataset (as from ``evaluate``) with the given per-lead RMSE and ACC; mse and bias derived/zero."""
    lead = pd.to_timedelta(days, unit="D").values.astype("timedelta64[ns]")

    def block(rmse, acc):
        rmse, acc = np.asarray(rmse, float), np.asarray(acc, float)
        return np.stack([rmse, rmse**2, np.zeros_like(rmse), acc])  # (metric, lead)

    data = {"geopotential": (("metric", "lead_time", "level"), block(rmse_z, acc_z)[..., None], {"units": "m**2 s**-2"})}
    if rmse_sp is not None:
        data["surface_pressure"] = (("metric", "lead_time"), block(rmse_sp, acc_sp), {"units": "Pa"})
    return xr.Dataset(
        data,
        coords={"metric": ["rmse", "mse", "bias", "acc"], "lead_time": lead, "level": [500]},
        attrs={"n_init_times": 60, "first_init_time": "2020-01-01 00:00:00", "last_init_time": "2020-12-31 00:00:00"},
    )


@pytest.fixture()
def crafted():
    """Model RMSE 10 d grows past climatology's 30 at 3 days (a tie counts as a loss); its ACC turns negative
    after 6.7 days (below the climatology's conventional 0, which must not count); the extra baseline has
    a better ACC up to 1 day, a worse RMSE everywhere and no surface pressure."""
    d = DAYS
    return {
        "model": _crafted(10 * d, 1 - 0.15 * d, np.full(d.shape, 100.0), np.full(d.shape, 0.5)),
        "persistence": _crafted(20 * d + 1, 0.9 - 0.2 * d, 50 + 100 * d, np.full(d.shape, 0.4)),
        "climatology": _crafted(np.full(d.shape, 30.0), np.zeros(d.shape), np.full(d.shape, 80.0), np.zeros(d.shape)),
        EXTRA: _crafted(10 * d + 5, np.where(d <= 1, 0.99, -1.0)),
    }


def test_verdict_names_every_baseline_the_model_loses_to(crafted):
    text = markdown_summary(crafted, HEADLINE, [1, 3, 5])
    assert (
        "- **geopotential/500**: beats persistence at all 40 leads (RMSE and ACC); "
        "beats climatology up to 2.75d, **loses** from 3d to 10d (RMSE); "
        f"beats {EXTRA} at all 40 leads (RMSE), **loses** to {EXTRA} up to 1d, beats it from 1.25d to 10d (ACC)."
    ) in text
    assert (
        "- **surface_pressure**: **loses** to persistence up to 0.5d, beats it from 0.75d to 10d (RMSE), "
        "beats persistence at all 40 leads (ACC); **loses** to climatology at all 40 leads (RMSE); "
        f"no scores of {EXTRA} to compare with."
    ) in text
    assert (
        f"The model loses to persistence, climatology and {EXTRA} at some leads on 2 of 2 headline variables "
        "(geopotential/500, surface_pressure)."
    ) in text
    # the extra baseline is a column of the RMSE table (n/a where it has no score) and of the ACC table
    rmse_rows = [line for line in text.split("## ACC")[0].splitlines() if line.startswith("| surface_pressure [Pa] | 5d |")]
    assert rmse_rows == ["| surface_pressure [Pa] | 5d | 100 | 550 | **80** | n/a | climatology |"]
    acc_rows = [line for line in text.split("## ACC")[1].splitlines() if line.startswith("| geopotential/500 | 1d |")]
    assert acc_rows == [f"| geopotential/500 | 1d | 0.85 | 0.7 | **0.99** | {EXTRA} |"]


def test_verdict_model_nan_loses_and_baseline_gaps_are_not_compared(crafted):
    blown = crafted["model"].copy(deep=True)
    blown["geopotential"].loc[{"metric": "rmse", "lead_time": np.timedelta64(10, "D")}] = np.nan
    half_daily = DAYS[1::2]  # an external store scored every 12 h only
    sparse = _crafted(10 * half_daily + 5, np.full(half_daily.shape, -1.0), days=half_daily)
    results = {"model": blown, "persistence": crafted["persistence"], "ifs": sparse}
    text = markdown_summary(results, ["geopotential/500"], [1])
    assert "beats persistence up to 9.75d, **loses** at 10d (RMSE), beats persistence at all 40 leads (ACC)" in text
    assert "beats ifs up to 9.5d, **loses** at 10d (RMSE), beats ifs at all 20 leads (ACC)" in text


def test_console_verdict_is_one_plain_paragraph(crafted):
    text = console_verdict(crafted, HEADLINE)
    assert "\n" not in text and not {"*", "|", "#", "`"} & set(text)
    assert text.startswith(f"Verdict (60 init times; model vs persistence, climatology and {EXTRA}): The model loses to")
    assert "geopotential/500: beats persistence at all 40 leads (RMSE and ACC); beats climatology up to 2.75d, loses from 3d to 10d (RMSE);" in text
    assert "surface_pressure: loses to persistence up to 0.5d, beats it from 0.75d to 10d (RMSE)" in text


def test_verdict_when_the_model_wins_everywhere(crafted):
    results = {k: crafted[k] for k in ("model", "persistence")}
    assert "The model beats every baseline at every compared lead on all 1 headline variables." in console_verdict(
        results, ["geopotential/500"]
    )
    with pytest.raises(KeyError, match="persistence"):
        markdown_summary({"model": crafted["model"]}, ["geopotential/500"], [1])
    with pytest.raises(ValueError, match="no baselines"):
        console_verdict({"model": crafted["model"]}, ["geopotential/500"])


def test_error_growth_draws_only_computed_lines(crafted):
    fig = error_growth_figure(crafted, HEADLINE)
    axes = fig.axes  # rows (geopotential/500, surface_pressure) x columns (RMSE, ACC)
    labels = [[line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")] for ax in axes]
    assert labels[0] == ["model", "persistence", "climatology", EXTRA]  # RMSE
    assert labels[1] == ["model", "persistence", EXTRA]  # ACC: no climatology line (0 by convention)
    assert labels[2] == ["model", "persistence", "climatology"]  # the extra baseline has no surface pressure
    assert labels[3] == ["model", "persistence"]
    styles = {(line.get_color(), line.get_linestyle(), line.get_marker()) for line in axes[0].get_lines() if not line.get_label().startswith("_")}
    assert len(styles) == 4  # every forecast distinguishable
    extra = [line for line in axes[0].get_lines() if line.get_label() == EXTRA][0]
    np.testing.assert_allclose(extra.get_ydata(), 10 * DAYS + 5)


def test_scorecard_has_every_baseline_and_marks_losses(tmp_path, crafted):
    lead_days = [1, 3, 5]
    pct, values, rows = relative_differences(crafted, HEADLINE, lead_days)
    assert rows == [f"{spec}\nvs {b}" for spec in HEADLINE for b in ("persistence", "climatology", EXTRA)]
    assert pct[1].tolist() == pytest.approx([100 * (10 - 30) / 30, 0.0, 100 * (50 - 30) / 30])  # vs climatology
    assert np.isnan(pct[5]).all()  # the extra baseline has no surface pressure
    fig = scorecard_figure(crafted, HEADLINE, lead_days)
    hatched = sorted((round(p.get_y() + 0.5), round(p.get_x() + 0.5)) for p in fig.axes[0].patches if p.get_hatch())
    # losses: geopotential vs climatology at 3d (tie) and 5d; surface pressure vs climatology at all three leads
    assert hatched == [(1, 1), (1, 2), (4, 0), (4, 1), (4, 2)]
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert sum("LOSS" in t for t in texts) == 5 and texts.count("n/a") == 3
    _assert_png(plot_scorecard(crafted, tmp_path / "scorecard.png", HEADLINE, lead_days), 300, 300)
