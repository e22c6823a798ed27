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
from zonda.registry.forecast import predict_forecast
from zonda.registry.inputs import open_initial_state
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


def test_registration_tags_lineage_and_provenance_and_logs_scores_as_model_metrics(registered):
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
    assert not [key for key in tags if key.startswith("score.") or key.startswith("test/")]  # scores are metrics
    assert not [key for key in tags if not key.startswith("zonda.")], tags  # lineage, provenance, the gate's decision
    source = client.get_model_version(result["name"], result["version"]).source
    assert source == result["logged_model_uri"] and source.startswith("models:/")
    logged = client.get_logged_model(source.removeprefix("models:/"))
    metrics = {m.key: m.value for m in logged.metrics}  # the evaluation's headline.json, under the evaluate run's names
    assert metrics == {"test/rmse/geopotential/500/1d": 100.0, "test/acc/geopotential/500/1d": 0.9}
    assert {m.run_id for m in logged.metrics} == {result["mlflow_run_id"]}
    assert tags["zonda.mlflow_run_id"] == result["mlflow_run_id"]
    run = client.get_run(result["mlflow_run_id"])
    assert run.data.tags["zonda.model_version"] == result["version"]
    assert result["decision"] == "promoted" and result["aliases"] == ["challenger", "champion"]
    assert tags[TAG_DECISION] == "promoted"


def test_the_signature_declares_the_initial_state_arrays_the_forecast_and_the_lead(registered, champion):
    p, _ = registered
    signature = champion.metadata.signature
    state = rf.initial_state(12, 2).sel(level=list(p.data.levels))  # the snapshot's layout: the model's grid
    fields = {name: state[name].shape[1:] for name in p.data.variables}  # ([level,] latitude, longitude)
    assert fields["temperature"] == (2, rf.N_LAT, rf.N_LON) and fields["surface_pressure"] == (rf.N_LAT, rf.N_LON)
    inputs = {spec.name: (spec.type, spec.shape) for spec in signature.inputs.inputs}
    assert inputs == {"time": (np.dtype("datetime64[ns]"), (-1,)),
                      **{name: (np.dtype("float32"), (-1, *shape)) for name, shape in fields.items()}}
    outputs = {spec.name: (spec.type, spec.shape) for spec in signature.outputs.inputs}
    assert outputs == {name: (np.dtype("float32"), (1, -1, *shape)) for name, shape in fields.items()}
    assert [q.to_dict() for q in signature.params.params] == [{"name": "lead", "type": "string", "default": "1d", "shape": None}]

    # An input built from the signature alone (no zonda helper) is accepted; the forecast matches the outputs.
    arrays = {"time": state["time"].values.astype("datetime64[ns]"),
              **{name: state[name].values.astype(np.float32) for name in fields}}  # (time, [level,] lat, lon)
    forecast = champion.predict(arrays, params={"lead": "12h"})
    for name, (dtype, shape) in outputs.items():
        assert forecast[name].dtype == dtype and forecast[name].shape == (1, 2, *shape[2:]), name
    np.testing.assert_allclose(layout(p).stack(forecast.isel(time=0)), rf.reference_rollout(12, 2), **rf.CLOSE)
    with pytest.raises(mlflow.exceptions.MlflowException, match="temperature"):  # not conforming: refused by MLflow
        champion.predict({**arrays, "temperature": arrays["temperature"][:, :1]})


def test_champion_forecast_equals_the_forecasters_own_rollout(registered, champion):
    p, _ = registered
    forecast = predict_forecast(champion, rf.initial_state(12, 2), "1d")
    assert isinstance(forecast, xr.Dataset)
    assert forecast.sizes["prediction_timedelta"] == 4
    assert forecast.attrs["inference_precision"] == "32-true"  # a float32 model, as its evaluation ran it
    reference = rf.reference_rollout(12, 4)
    np.testing.assert_allclose(layout(p).stack(forecast.isel(time=0)), reference, **rf.CLOSE)

    # Longer input: only the last two times count. Latitude stored north to south: flipped back.
    longer = rf.initial_state(12, 5).isel(latitude=slice(None, None, -1))
    short = predict_forecast(champion, longer, "6h")
    np.testing.assert_allclose(layout(p).stack(short.isel(time=0)), reference[:1], **rf.CLOSE)


def test_default_lead_and_an_initial_state_from_a_file(registered, champion, tmp_path):
    p, _ = registered
    path = tmp_path / "init.nc"
    rf.initial_state(12, 2).to_netcdf(path, engine="h5netcdf")
    with open_initial_state(path) as ds:
        forecast = champion.predict(champion.unwrap_python_model().model_input(ds))  # debug preset's lead_days: 1 day
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
        predict_forecast(champion, change(rf.initial_state(12, 3)), "6h")


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
    assert predict_forecast(challenger, rf.initial_state(12, 2), "6h").attrs["weights_sha256"] == json.loads(
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
