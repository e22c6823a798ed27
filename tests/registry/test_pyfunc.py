"""Registration end to end on a sqlite store: version tags, aliases, the pyfunc round trip, input checks."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest
import xarray as xr
from mlflow import MlflowClient

from tests.support import registry_builders as rf
from zonda.channels import ChannelLayout
from zonda.provenance import code_version
from zonda.registry.errors import InitialStateError, RegistryError
from zonda.registry.promotion import TAG_DECISION, TAG_REASON
from zonda.registry.register import register_model


@pytest.fixture(scope="module")
def registered():
    p, result = rf.registered()
    rf.use_store(p)  # load_model("models:/...") reads the global registry URI
    return p, result


@pytest.fixture(scope="module")
def champion(registered):
    p, result = registered
    return mlflow.pyfunc.load_model(f"models:/{result['name']}@champion")


def client_for(p) -> MlflowClient:
    uri = rf.store_uri(p)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def layout(p) -> ChannelLayout:
    return ChannelLayout.of(p.data.variables, p.data.levels)


def test_registration_tags_lineage_provenance_and_scores(registered):
    p, result = registered
    client = client_for(p)
    tags = client.get_model_version(result["name"], result["version"]).tags
    card = json.loads((rf.model_dir() / "model.json").read_text())
    for key in ("snapshot_id", "statistics_hash", "graph_hash"):
        assert tags[f"zonda.{key}"] == card[key]
    assert tags["zonda.params_hash"] == p.section_hash()
    commit = code_version()["git_commit"] or "unknown"
    assert tags["zonda.code_version"].removesuffix("-dirty") == commit.removesuffix("-dirty")
    assert tags["zonda.weights_sha256"] == card["weights"]["sha256"]
    assert float(tags[f"score.{rf.METRIC}"]) == 100.0 and float(tags["score.acc.geopotential.500.1d"]) == 0.9
    assert tags["zonda.mlflow_run_id"] == result["mlflow_run_id"]
    run = client.get_run(result["mlflow_run_id"])
    assert run.data.tags["zonda.model_version"] == result["version"]
    assert result["decision"] == "promoted" and result["aliases"] == ["challenger", "champion"]
    assert tags[TAG_DECISION] == "promoted"


def test_champion_forecast_equals_the_forecasters_own_rollout(registered, champion):
    p, _ = registered
    forecast = champion.predict(rf.initial_state(12, 2), params={"lead": "1d"})
    assert isinstance(forecast, xr.Dataset)
    assert forecast.sizes["prediction_timedelta"] == 4
    reference = rf.reference_rollout(12, 4)
    np.testing.assert_allclose(layout(p).stack(forecast.isel(time=0)), reference, **rf.CLOSE)

    # Longer input: only the last two times count. Latitude stored north to south: flipped back.
    longer = rf.initial_state(12, 5).isel(latitude=slice(None, None, -1))
    short = champion.predict(longer, params={"lead": "6h"})
    np.testing.assert_allclose(layout(p).stack(short.isel(time=0)), reference[:1], **rf.CLOSE)


def test_default_lead_and_a_file_path_as_input(registered, champion, tmp_path):
    p, _ = registered
    path = tmp_path / "init.nc"
    rf.initial_state(12, 2).to_netcdf(path, engine="h5netcdf")
    forecast = champion.predict(str(path))  # evaluation.lead_days of the debug preset: 1 day
    assert forecast.sizes["prediction_timedelta"] == 4
    np.testing.assert_allclose(layout(p).stack(forecast.isel(time=0)), rf.reference_rollout(12, 4), **rf.CLOSE)


def _with_nan(ds: xr.Dataset) -> xr.Dataset:
    ds = ds.copy(deep=True)
    ds["temperature"].values[-1, 0, 0, 0] = np.nan
    return ds


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda ds: ds.drop_vars("temperature"), r"lacks variable\(s\) \['temperature'\]"),
        (lambda ds: ds.isel(longitude=slice(0, 8)), r"grid of 8 latitudes .* 8 longitudes .* not the model's"),
        (lambda ds: ds.isel(time=[-1]), r"has 1 time\(s\); the model needs the last 2"),
        (lambda ds: ds.isel(time=[0, 2]), r"not consecutive 6-hourly"),
        (lambda ds: ds.sel(level=[500]), r"lacks pressure level\(s\) \[850\]"),
        (_with_nan, r"NaN or infinite values in \['temperature'\]"),
    ],
    ids=["missing-variable", "wrong-grid", "too-few-times", "gap-in-times", "missing-level", "nan"],
)
def test_bad_initial_states_are_rejected_with_clear_errors(champion, change, message):
    with pytest.raises(InitialStateError, match=message):
        champion.predict(change(rf.initial_state(12, 3)), params={"lead": "6h"})


def test_a_worse_model_stays_challenger_with_the_reason_recorded(tmp_path):
    p = rf.params("registry.model_name=zonda-sequence", store=rf.new_store(tmp_path / "store"))
    first = rf.register(p, {rf.METRIC: 100.0})
    worse = 1.2 * rf.true_rmse(0)  # (12,) 20 % above the champion's true per-init RMSE
    second = rf.register(p, {rf.METRIC: 120.0}, seed=1, per_init_scores=rf.per_init({rf.METRIC: worse}))
    assert first["decision"] == "promoted" and second["decision"] == "rejected"
    assert second["champion"] == first["version"] and second["aliases"] == ["challenger"]
    client = client_for(p)
    assert str(client.get_registered_model("zonda-sequence").aliases["champion"]) == first["version"]
    tags = client.get_model_version("zonda-sequence", second["version"]).tags
    assert tags[TAG_DECISION] == "rejected" and "(worse" in tags[TAG_REASON] and rf.METRIC in tags[TAG_REASON]
    challenger = mlflow.pyfunc.load_model("models:/zonda-sequence@challenger")
    assert challenger.predict(rf.initial_state(12, 2), params={"lead": "6h"}).attrs["weights_sha256"] == json.loads(
        (rf.model_dir(1) / "model.json").read_text()
    )["weights"]["sha256"]


def test_registration_refuses_mismatched_or_incomplete_outputs(registered):
    p, result = registered
    dirs = rf.stage_dirs()
    client = client_for(p)
    before = len(client.search_model_versions(f"name='{result['name']}'"))
    other = rf.evaluation_dir({rf.METRIC: 1.0})
    (other / "manifest.json").write_text(json.dumps({"model_lineage": {"snapshot_id": "sha256:other"}}))

    with pytest.raises(RegistryError, match="evaluated a model with snapshot_id sha256:other"):
        register_model(p, rf.model_dir(), dirs["statistics"], dirs["graph"], other, snapshot_dir=dirs["snapshot"])
    incomplete = rf.evaluation_dir({"rmse.temperature.850.1d": 1.0})
    with pytest.raises(RegistryError, match=rf"promotion.metrics \['{rf.METRIC}'\] are not among"):
        register_model(p, rf.model_dir(), dirs["statistics"], dirs["graph"], incomplete, snapshot_dir=dirs["snapshot"])
    assert len(client.search_model_versions(f"name='{result['name']}'")) == before
