"""The gate re-scores the registered champion on the challenger's evaluation data (sqlite store, real pyfunc)."""

from __future__ import annotations

import shutil
from urllib.parse import urlparse

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from tests.support import registry_builders as rf
from zonda.evaluation.headline import headline_metric_name
from zonda.registry.errors import RegistryError
from zonda.registry.promotion import TAG_DECISION, TAG_METRIC, TAG_N_INITS, TAG_REASON, TAG_RESCORED
from zonda.registry.register import register_model


def rmse_of(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(values**2)))


def client_for(p) -> MlflowClient:
    uri = rf.store_uri(p)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_the_champion_is_rescored_on_the_challengers_inits_and_its_stored_score_ignored(tmp_path):
    p = rf.params("registry.model_name=zonda-rescore", store=rf.new_store(tmp_path / "store"))
    # v1 claims an RMSE of 1 in its stored tags and evaluation (far below its true ~hundreds)
    first = rf.register(p, {rf.METRIC: 1.0}, per_init_scores=rf.per_init({rf.METRIC: 1.0}))
    assert first["decision"] == "promoted"
    # v2's evaluation: 10 % below the champion's true per-init RMSE at every init
    better = rf.per_init({rf.METRIC: 0.9 * rf.true_rmse(0)})
    second = rf.register(p, {rf.METRIC: rmse_of(0.9 * rf.true_rmse(0))}, seed=1, per_init_scores=better)
    assert second["decision"] == "promoted", second["reason"]
    assert second["champion_rescored"] == first["version"] and second["n_inits"] == 12
    verdict = second["metrics"][0]
    assert verdict["champion"] == pytest.approx(rmse_of(rf.true_rmse(0)), rel=1e-5)  # re-scored, not the stored 1.0
    assert verdict["mean_improvement"] == pytest.approx(0.1 * rf.true_rmse(0).mean(), rel=1e-4)
    tags = client_for(p).get_model_version("zonda-rescore", second["version"]).tags
    assert tags[TAG_RESCORED] == first["version"] and tags[TAG_N_INITS] == "12"
    assert float(tags[f"{TAG_METRIC}{rf.METRIC}.champion"]) == verdict["champion"]
    assert tags[f"{TAG_METRIC}{rf.METRIC}.outcome"] == "better"

    # v3 is 5 % worse than the champion (v2, whose logged model's metric claims 1e9) truly is: rejected
    claimed = client_for(p).get_model_version("zonda-rescore", second["version"]).source.removeprefix("models:/")
    client_for(p).log_metric(second["mlflow_run_id"], headline_metric_name(rf.METRIC), 1e9, model_id=claimed)
    assert {m.value for m in client_for(p).get_logged_model(claimed).metrics if m.key == headline_metric_name(rf.METRIC)} >= {1e9}
    worse = rf.per_init({rf.METRIC: 1.05 * rf.true_rmse(1)})
    third = rf.register(p, {rf.METRIC: 1.0}, seed=2, per_init_scores=worse)
    assert third["decision"] == "rejected" and third["champion"] == second["version"]
    assert third["metrics"][0]["champion"] == pytest.approx(rmse_of(rf.true_rmse(1)), rel=1e-5)
    assert third["metrics"][0]["outcome"] == "worse"


@pytest.mark.slow  # three registrations; the policy itself is covered fast in test_registry_promotion
def test_a_champion_that_cannot_be_loaded_follows_on_incomparable(tmp_path):
    p = rf.params("registry.model_name=zonda-gone", store=rf.new_store(tmp_path / "store"))
    first = rf.register(p, {rf.METRIC: 100.0})
    rf.use_store(p)
    model_id = client_for(p).get_model_version("zonda-gone", first["version"]).source.removeprefix("models:/")
    shutil.rmtree(urlparse(mlflow.get_logged_model(model_id).artifact_location).path)  # its artifacts are lost

    kept = rf.register(p, {rf.METRIC: 50.0}, seed=1)
    assert kept["decision"] == "rejected" and kept["champion"] == first["version"]
    assert f"champion version {first['version']}: the champion cannot be scored" in kept["reason"]
    assert "cannot load model models:/zonda-gone/1" in kept["reason"] and "on_incomparable=reject" in kept["reason"]
    tags = client_for(p).get_model_version("zonda-gone", kept["version"]).tags
    assert tags[TAG_DECISION] == "rejected" and tags[TAG_REASON] == kept["reason"] and tags[TAG_RESCORED] == "none"

    handover = rf.params("registry.model_name=zonda-gone", "registry.promotion.on_incomparable=promote",
                         store=tmp_path / "store")
    taken = rf.register(handover, {rf.METRIC: 50.0}, seed=2)
    assert taken["decision"] == "promoted" and "on_incomparable=promote" in taken["reason"]


def test_registration_refuses_an_evaluation_without_per_init_scores(tmp_path):
    p = rf.params("registry.model_name=zonda-old-eval", store=rf.new_store(tmp_path / "store"))
    dirs = rf.stage_dirs()
    evaluation = rf.evaluation_dir({rf.METRIC: 1.0})
    (evaluation / "per_init.nc").unlink()
    with pytest.raises(RegistryError, match=r"per_init.nc: no per-init scores .* re-run it"):
        register_model(p, rf.model_dir(), dirs["statistics"], dirs["graph"], evaluation, snapshot_dir=dirs["snapshot"])
    other = rf.evaluation_dir({rf.METRIC: 1.0}, per_init_scores=rf.per_init({"rmse.temperature.850.1d": 1.0}))
    with pytest.raises(RegistryError, match=rf"per_init.nc: registry.promotion.metrics \['{rf.METRIC}'\] have no"):
        register_model(p, rf.model_dir(), dirs["statistics"], dirs["graph"], other, snapshot_dir=dirs["snapshot"])
    rf.use_store(p)
    assert MlflowClient().search_registered_models(filter_string="name='zonda-old-eval'") == []
