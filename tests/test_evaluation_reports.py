"""Scorecard, error-growth and map PNGs, and the Markdown summary."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from zonda.evaluation import (
    compute_climatology,
    evaluate_with_baselines,
    markdown_summary,
    plot_error_growth,
    plot_maps,
    plot_scorecard,
    write_summary,
)
from zonda.evaluation.alignment import valid_times
from zonda.evaluation.plots import relative_differences

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
    assert "- **geopotential/500**: model beats persistence (RMSE) at all 4 leads (0.25d..1d)." in text
    assert "- **surface_pressure**: model does **not** beat persistence (RMSE) at 4 of 4 leads: 0.25d, 0.5d, 0.75d, 1d." in text
    rows = [line for line in text.splitlines() if line.startswith("| geopotential/500 [m**2 s**-2] | 1d |")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    model = results["model"]["geopotential"].sel(metric="rmse", level=500, lead_time=np.timedelta64(1, "D"))
    assert cells[2] == f"**{float(model):.4g}**" and cells[-1] == "model"
    acc_rows = [line for line in text.splitlines() if line.startswith("| surface_pressure | 1d |")]
    assert acc_rows and acc_rows[0].split("|")[5].strip() == "0"  # climatology ACC 0
    path = write_summary(text, tmp_path / "summary.md")
    assert path.read_text(encoding="utf-8") == text
