"""Zonal power spectra: analytic fields, Parseval, white noise, and the forecast / truth ratio."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from zonda.evaluation import forecast_spectra, max_spectral_ratio, plot_spectra, read_spectra, spectral_ratio, write_spectra, zonal_spectrum
from zonda.evaluation.alignment import valid_times
from zonda.evaluation.plots import spectra_figure
from zonda.evaluation.spectra import band_mean, small_scale_ratio, spectral_headline
from zonda.evaluation.summary import markdown_summary

EQUATOR_M = 2 * np.pi * 6371e3  # circumference of the equator, R = 6371 km


def _circles(values: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> xr.DataArray:
    return xr.DataArray(values, dims=("latitude", "longitude"), coords={"latitude": lat, "longitude": lon}, name="z", attrs={"units": "m"})


@pytest.mark.parametrize("n_lon", [36, 35])
def test_cosine_has_all_its_power_at_its_wavenumber(n_lon):
    """f = A(lat) cos(k0 lon + phase): |F[k0]| = A/2, doubled for +-k0, times the circumference C = C_eq cos(lat)."""
    lon = np.arange(n_lon) * 360.0 / n_lon
    lat = np.array([-50.0, 0.0, 30.0, 70.0])
    amplitude = 3.0 + lat / 100  # any latitude profile
    k0 = 4
    field = amplitude[:, None] * np.cos(k0 * np.deg2rad(lon) + 0.7)[None, :]
    spectrum = zonal_spectrum(_circles(field, lat, lon))
    assert spectrum.dims == ("latitude", "zonal_wavenumber") and spectrum.sizes["zonal_wavenumber"] == n_lon // 2 + 1
    expected = EQUATOR_M * np.cos(np.deg2rad(lat)) * amplitude**2 / 2
    np.testing.assert_allclose(spectrum.sel(zonal_wavenumber=k0).values, expected, rtol=1e-12)
    others = spectrum.drop_sel(zonal_wavenumber=k0).values
    assert np.abs(others).max() < 1e-12 * expected.max()
    # wavelength coordinate: the circle's circumference over k
    np.testing.assert_allclose(spectrum["wavelength"].sel(zonal_wavenumber=k0).values, expected / (amplitude**2 / 2) / k0)
    assert spectrum.attrs["units"] == "m (m)**2"


def test_nyquist_wavenumber_is_not_doubled():
    """With 36 longitudes, (-1)^l is wavenumber 18: |F[18]| = A and its energy C A^2 (Parseval: (C/L) sum A^2)."""
    lon = np.arange(36) * 10.0
    field = 2.0 * (-1.0) ** np.arange(36)[None, :]
    spectrum = zonal_spectrum(_circles(field, np.array([0.0]), lon))
    assert float(spectrum.sel(latitude=0, zonal_wavenumber=18)) == pytest.approx(EQUATOR_M * 4.0)


@pytest.mark.parametrize("n_lon", [24, 25])
def test_parseval(n_lon):
    """Sum over wavenumbers = (C / L) sum_l f[l]^2, the discrete integral of f^2 around each circle."""
    rng = np.random.default_rng(1)
    lon = np.arange(n_lon) * 360.0 / n_lon
    lat = np.linspace(-75, 75, 7)
    field = 5 + rng.normal(size=(7, n_lon))
    spectrum = zonal_spectrum(_circles(field, lat, lon))
    circumference = EQUATOR_M * np.cos(np.deg2rad(lat))
    np.testing.assert_allclose(spectrum.sum("zonal_wavenumber").values, circumference / n_lon * (field**2).sum(axis=1), rtol=1e-12)


def test_white_noise_is_flat():
    """Unit white noise: E|F[k]|^2 = 1/L, so E S[k] = 2 C / L for 0 < k < L/2 (within sampling error)."""
    rng = np.random.default_rng(2)
    n_lon, n_samples = 64, 4000
    lon = np.arange(n_lon) * 360.0 / n_lon
    noise = xr.DataArray(
        rng.normal(size=(n_samples, n_lon)), dims=("sample", "longitude"),
        coords={"longitude": lon, "latitude": 0.0}, name="noise",
    )
    mean = zonal_spectrum(noise).mean("sample").isel(zonal_wavenumber=slice(1, -1)).values
    np.testing.assert_allclose(mean, 2 * EQUATOR_M / n_lon, rtol=0.1)  # 4000 samples: ~3% sampling error


def test_band_mean_keeps_only_latitudes_within_60():
    """Amplitude ~ 1/sqrt(cos lat) gives the same power on every circle; the polar circles (huge amplitude) must be left out."""
    lon = np.arange(24) * 15.0
    lat = np.array([-80.0, -60.0, -20.0, 0.0, 40.0, 60.0, 80.0])
    amplitude = np.where(np.abs(lat) <= 60, 1 / np.sqrt(np.cos(np.deg2rad(lat))), 100.0)
    field = amplitude[:, None] * np.cos(3 * np.deg2rad(lon))[None, :]
    mean = band_mean(zonal_spectrum(_circles(field, lat, lon)))
    assert mean.dims == ("zonal_wavenumber",)
    assert float(mean.sel(zonal_wavenumber=3)) == pytest.approx(EQUATOR_M / 2)
    with pytest.raises(ValueError, match="latitude within"):
        band_mean(zonal_spectrum(_circles(field[[0, -1]], lat[[0, -1]], lon)))


def test_bad_grids_are_refused():
    lat = np.array([0.0])
    with pytest.raises(ValueError, match="full circle"):
        zonal_spectrum(_circles(np.ones((1, 10)), lat, np.arange(10) * 10.0))
    with pytest.raises(ValueError, match="uniformly spaced"):
        zonal_spectrum(_circles(np.ones((1, 4)), lat, np.array([0.0, 90.0, 200.0, 270.0])))


# --- forecasts: WB2 layout, truth at the valid times ---

LAT = np.linspace(-80.0, 80.0, 9)
LON = np.arange(0.0, 360.0, 5.0)  # 72 longitudes: wavenumbers 0..36
TIMES = pd.date_range("2000-01-01", periods=24, freq="6h")
INITS = TIMES[:8]
LEADS = pd.to_timedelta([12, 24, 48], unit="h").values.astype("timedelta64[ns]")
HEADLINE = ["geopotential/500", "surface_pressure"]


@pytest.fixture(scope="module")
def fields():
    """Truth with a red spectrum (amplitude ~ k^-2 at every wavenumber 1..36, random per time); the perfect
    forecast; and the perfect forecast plus white noise of 2% of the truth's largest amplitude (grid-scale speckle)."""
    rng = np.random.default_rng(3)
    lam = np.deg2rad(LON)
    k = np.arange(1, 37)
    amp = rng.normal(size=(len(TIMES), 2, len(LAT), len(k)))  # (time, field, lat, k)
    phase = rng.uniform(0, 2 * np.pi, size=len(k))
    waves = np.einsum("tflk,kx->tflx", amp / k**2, np.cos(k[:, None] * lam[None, :] + phase[:, None]))  # (time, field, lat, lon)
    truth = xr.Dataset(
        {
            "geopotential": (("time", "level", "latitude", "longitude"), 5e4 + 100 * waves[:, :1], {"units": "m**2 s**-2"}),
            "surface_pressure": (("time", "latitude", "longitude"), 1e5 + 50 * waves[:, 1], {"units": "Pa"}),
        },
        coords={"time": TIMES, "level": [500], "latitude": LAT, "longitude": LON},
    )
    perfect = truth.sel(time=valid_times(INITS, LEADS)).assign_coords(time=INITS.values).transpose("time", "prediction_timedelta", ...)
    noisy = perfect.copy()
    noisy["geopotential"] = perfect["geopotential"] + 2.0 * rng.normal(size=perfect["geopotential"].shape)
    noisy["surface_pressure"] = perfect["surface_pressure"] + 1.0 * rng.normal(size=perfect["surface_pressure"].shape)
    return truth, perfect, noisy


@pytest.fixture(scope="module")
def spectra(fields):
    truth, perfect, noisy = fields
    return forecast_spectra({"model": perfect, "noisy": noisy}, truth, variables=HEADLINE, lead_days=[0.5, 2])


def test_forecast_spectra_layout_and_truth_at_valid_times(fields, spectra):
    truth = fields[0]
    assert set(spectra.data_vars) == {"geopotential_500", "surface_pressure"}
    assert spectra["geopotential_500"].dims == ("model", "lead_time", "zonal_wavenumber")
    assert spectra["model"].values.tolist() == ["model", "noisy", "truth"]
    assert spectra["zonal_wavenumber"].values.tolist() == list(range(37))
    # the truth row at 2 days: the band- and init-mean spectrum of the truth valid at init + 2 days
    valid = truth["surface_pressure"].sel(time=INITS + pd.Timedelta(days=2))
    expected = band_mean(zonal_spectrum(valid)).mean("time").values
    np.testing.assert_allclose(spectra["surface_pressure"].sel(model="truth").isel(lead_time=1).values, expected, rtol=1e-12)
    # 12 h later the truth is other weather: a different spectrum
    assert not np.allclose(spectra["surface_pressure"].sel(model="truth").isel(lead_time=0).values, expected)


def test_ratio_of_identical_fields_is_one(spectra):
    ratio = spectral_ratio(spectra, model="model")
    np.testing.assert_allclose(ratio["geopotential_500"].values, 1.0, rtol=1e-9)
    np.testing.assert_allclose(max_spectral_ratio(spectra)["surface_pressure"].values, 1.0, rtol=1e-9)


def test_ratio_where_power_is_zero():
    """0 / 0 (no power in either) is 1, power where the truth has none is inf."""
    power = xr.DataArray([[[0.0, 4.0, 0.0, 1.0]], [[0.0, 2.0, 0.0, 0.0]]], dims=("model", "lead_time", "zonal_wavenumber"))
    spectra = xr.Dataset({"z": power}, coords={"model": ["model", "truth"], "lead_time": [np.timedelta64(1, "D")], "zonal_wavenumber": range(4)})
    assert spectral_ratio(spectra)["z"].values.tolist() == [[1.0, 2.0, 1.0, np.inf]]
    assert max_spectral_ratio(spectra, min_wavenumber=1)["z"].values.tolist() == [np.inf]


def test_grid_scale_noise_shows_as_ratio_above_two(spectra):
    ratio = spectral_ratio(spectra, model="noisy")["geopotential_500"]  # (lead, k)
    high = ratio.sel(zonal_wavenumber=slice(24, None))
    assert bool((high > 2).all())  # the speckle dominates the small scales
    assert float(ratio.sel(zonal_wavenumber=slice(1, 3)).max()) < 1.05  # the large scales are hardly touched
    peak = max_spectral_ratio(spectra, model="noisy")
    assert bool((peak["geopotential_500"] > 2).all())
    keys = spectral_headline(spectra, [2], model="noisy")
    assert set(keys) == {
        f"{m}.{v}.2d" for m in ("max_spectral_ratio", "small_scale_ratio") for v in ("geopotential.500", "surface_pressure")
    }
    assert keys["max_spectral_ratio.geopotential.500.2d"] > 2 and keys["small_scale_ratio.geopotential.500.2d"] > 2
    assert spectral_headline(spectra, [2])["max_spectral_ratio.geopotential.500.2d"] == pytest.approx(1.0)


def test_blurred_forecast_ratio_is_the_filter_response(fields):
    """Damping zonal wavenumber k by g(k) = exp(-(k/20)^2) multiplies its power by g(k)^2 exactly, on every circle."""
    truth, perfect, _ = fields
    gain = np.exp(-((np.arange(37) / 20.0) ** 2))  # (K,)

    def blur(x):  # (..., longitude) filtered along longitude with numpy's FFT
        return np.fft.irfft(np.fft.rfft(x, axis=-1) * gain, n=x.shape[-1], axis=-1)

    blurred = perfect.copy()
    blurred["surface_pressure"] = xr.apply_ufunc(blur, perfect["surface_pressure"], input_core_dims=[["longitude"]], output_core_dims=[["longitude"]])
    spectra = forecast_spectra({"model": blurred}, truth, variables=["surface_pressure"], lead_days=[1])
    ratio = spectral_ratio(spectra)["surface_pressure"].isel(lead_time=0)
    np.testing.assert_allclose(ratio.sel(zonal_wavenumber=slice(1, None)).values, gain[1:] ** 2, rtol=1e-6)
    expected_small = np.exp(np.mean(np.log(gain[18:] ** 2)))  # wavenumbers 18..36, the upper half
    assert float(small_scale_ratio(spectra)["surface_pressure"].squeeze()) == pytest.approx(expected_small, rel=1e-6)
    assert float(max_spectral_ratio(spectra)["surface_pressure"].squeeze()) == pytest.approx(gain[1] ** 2, rel=1e-6)


def test_blown_up_forecast_has_nan_ratio(fields):
    truth, perfect, _ = fields
    blown = perfect.copy()
    blown["surface_pressure"] = perfect["surface_pressure"].where(perfect["prediction_timedelta"] < np.timedelta64(2, "D"))
    peak = max_spectral_ratio(forecast_spectra({"model": blown}, truth, variables=["surface_pressure"], lead_days=[0.5, 2]))
    assert peak["surface_pressure"].values[0] == pytest.approx(1.0) and np.isnan(peak["surface_pressure"].values[1])


def test_forecast_spectra_refuses_bad_input(fields):
    truth, perfect, _ = fields
    with pytest.raises(KeyError, match="lead 5d"):
        forecast_spectra({"model": perfect}, truth, variables=HEADLINE, lead_days=[5])
    with pytest.raises(ValueError, match="reserved"):
        forecast_spectra({"truth": perfect}, truth, variables=HEADLINE, lead_days=[1])
    with pytest.raises(ValueError, match="grid"):
        forecast_spectra({"model": perfect.isel(latitude=slice(1, None))}, truth, variables=HEADLINE, lead_days=[1])
    with pytest.raises(KeyError, match="level 850"):
        forecast_spectra({"model": perfect}, truth, variables=["geopotential/850"], lead_days=[1])
    with pytest.raises(KeyError, match="truth has no variable 'surface_pressure'"):
        forecast_spectra({"model": perfect}, truth.drop_vars("surface_pressure"), variables=HEADLINE, lead_days=[1])
    with pytest.raises(KeyError, match="times are not in the truth"):
        forecast_spectra({"model": perfect}, truth.isel(time=slice(0, 10)), variables=HEADLINE, lead_days=[2])


def test_spectra_file_and_plot(tmp_path, spectra):
    path = write_spectra(spectra, tmp_path / "spectra.nc")
    xr.testing.assert_identical(read_spectra(path), spectra)
    png = plot_spectra(spectra, tmp_path / "spectra.png", HEADLINE, [0.5, 2])
    image = mpimg.imread(png)
    assert image.shape[1] >= 900 and image[..., :3].std() > 0.05
    fig = spectra_figure(spectra, HEADLINE, [2])
    ratio_axis = fig.axes[1]  # geopotential/500: forecast / truth
    labels = [line.get_label() for line in ratio_axis.get_lines() if not line.get_label().startswith("_")]
    assert labels == ["model 2d", "noisy 2d", "2x truth"]
    limit = ratio_axis.get_lines()[-1]
    assert set(limit.get_ydata()) == {2.0}
    assert not list(tmp_path.glob(".*tmp*"))


def test_summary_reports_the_spectral_ratio(spectra):
    days = (spectra["lead_time"].values / np.timedelta64(1, "D")).tolist()
    results = {
        name: xr.Dataset(
            {"geopotential": (("metric", "lead_time", "level"), np.ones((2, 2, 1))), "surface_pressure": (("metric", "lead_time"), np.ones((2, 2)))},
            coords={"metric": ["rmse", "acc"], "lead_time": spectra["lead_time"].values, "level": [500]},
        )
        for name in ("noisy", "persistence")
    }
    text = markdown_summary(results, HEADLINE, days, model="noisy", spectra=spectra)
    section = text.split("## Zonal spectra")[1].splitlines()
    peak = max_spectral_ratio(spectra, model="noisy")
    small = small_scale_ratio(spectra, model="noisy")
    row = [line for line in section if line.startswith("| geopotential/500 |")][0]
    assert (peak["geopotential_500"].values > 2).all()  # bold: above the limit
    cells = [f"**{p:.3g}** / {s:.3g}" for p, s in zip(peak["geopotential_500"].values, small["geopotential_500"].values)]
    assert row == "| geopotential/500 | " + " | ".join(cells) + " |"
