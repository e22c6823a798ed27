"""Registration and promotion against a real ``mlflow server`` on loopback, over HTTP.

The server (:class:`tests.support.mlflow_server.MlflowServer`: ``mlflow server
--workers 1``, sqlite backend, proxied artifacts) is started once for the module
and stopped at its end; it boots in seconds.
"""

from __future__ import annotations

import threading

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from tests.support import registry_builders as rf
from tests.support.mlflow_server import MlflowServer
from zonda.channels import ChannelLayout
from zonda.evaluation.headline import headline_metric_name
from zonda.registry.errors import PromotionLockTimeout
from zonda.registry.forecast import predict_forecast
from zonda.registry.lock import PromotionLock, lock_name
from zonda.registry.promotion import CHAMPION, TAG_BY, TAG_DECISION, gate, promote

NAME = "zonda-http"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> str:
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    srv.start()
    try:
        for seed in (0, 1):  # build what the tests need while the server boots
            rf.model_dir(seed)
        rf.reference_rollout(12, 2)
        srv.wait_healthy()
        with rf.preserved_tracking_uri():
            yield srv.url
    finally:
        srv.stop()


def test_register_load_and_promote_over_http(server):
    p = rf.params(f"registry.model_name={NAME}", f"runtime.mlflow_tracking_uri={server}")
    client = MlflowClient(tracking_uri=server, registry_uri=server)

    first = rf.register(p, {rf.METRIC: 100.0})
    assert first["decision"] == "promoted" and first["aliases"] == ["challenger", "champion"]
    assert first["tags"]["zonda.mlflow_run_id"] == first["mlflow_run_id"]
    logged = MlflowClient(tracking_uri=server).get_logged_model(first["logged_model_uri"].removeprefix("models:/"))
    assert {m.key: m.value for m in logged.metrics} == {headline_metric_name(rf.METRIC): 100.0}

    champion = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")  # artifacts through the server's proxy
    forecast = predict_forecast(champion, rf.initial_state(12, 2), "12h")
    layout = ChannelLayout.of(p.data.variables, p.data.levels)
    np.testing.assert_allclose(layout.stack(forecast.isel(time=0)), rf.reference_rollout(12, 2), **rf.CLOSE)

    second = rf.register(p, {rf.METRIC: 130.0}, seed=1, per_init_scores=rf.per_init({rf.METRIC: 1.3 * rf.true_rmse(0)}))
    assert second["decision"] == "rejected" and str(client.get_registered_model(NAME).aliases[CHAMPION]) == first["version"]

    manual = promote(NAME, second["version"], "seed 1 is sharper over the tropics", client=client, user="bob")
    assert manual["previous_champion"] == first["version"]
    assert str(client.get_registered_model(NAME).aliases[CHAMPION]) == second["version"]
    tags = client.get_model_version(NAME, second["version"]).tags
    assert tags[TAG_DECISION] == "manual" and tags[TAG_BY] == "bob"
    assert lock_name(NAME) not in {m.name for m in client.search_registered_models()}


def test_the_lock_serialises_concurrent_promotions_over_http(server):
    client = MlflowClient(tracking_uri=server, registry_uri=server)
    name = "zonda-http-lock"
    client.create_registered_model(name)
    source = client.get_model_version(NAME, "1").source  # models:/<logged model id>; re-scores come from `truth`
    model_id = source.removeprefix("models:/")
    rules = rf.params().registry.promotion
    v1, v2, v3 = (
        str(client.create_model_version(name, source, tags=rf.legacy_score_tags({rf.METRIC: s}), model_id=model_id).version)
        for s in (100.0, 80.0, 60.0)
    )
    noise = np.random.default_rng(0).normal(0.0, 1.0, 12)  # (12,)
    truth = {v: rf.per_init({rf.METRIC: s + noise}) for v, s in ((v1, 100.0), (v2, 80.0), (v3, 60.0))}

    def gate_with(version: str, **kwargs) -> dict:
        return gate(name, version, rules, challenger_scores=truth[version], rescore=lambda c: truth[str(c.version)],
                    client=client, **kwargs)

    gate_with(v1)

    held = PromotionLock(client, name).acquire()
    with pytest.raises(PromotionLockTimeout, match=name):
        PromotionLock(client, name, timeout=0.5, poll=0.1).acquire()
    held.release()

    results: dict[str, dict] = {}
    barrier = threading.Barrier(2)

    def run(version: str) -> None:
        barrier.wait()
        results[version] = gate_with(version, lock_timeout=60)

    threads = [threading.Thread(target=run, args=(v,)) for v in (v2, v3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert str(client.get_registered_model(name).aliases[CHAMPION]) == v3
    assert results[v3]["promoted"]
    expected_v2 = v1 if results[v2]["promoted"] else v3  # compared with whoever was champion when it held the lock
    assert results[v2]["previous_champion"] == expected_v2
