"""The promotion gate: paired per-metric tests and rules, the champion re-scored, the alias, override, the lock."""

from __future__ import annotations

import math
import threading
import time
import uuid

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from mlflow import MlflowClient

from tests.support.registry_builders import legacy_score_tags, tracking_db
from zonda.params import PromotionParams
from zonda.registry import promotion as promotion_module
from zonda.registry.errors import ChampionIncomparable, PromotionLockTimeout, RegistryError
from zonda.registry.lock import TAG_OWNER, PromotionLock, lock_name
from zonda.registry.promotion import (
    CHAMPION,
    TAG_BY,
    TAG_DECISION,
    TAG_METRIC,
    TAG_N_INITS,
    TAG_PREVIOUS,
    TAG_REASON,
    TAG_RESCORED,
    compare_paired,
    gate,
    promote,
)

Z500, T850, U250 = "rmse.geopotential.500.5d", "rmse.temperature.850.5d", "rmse.u_component_of_wind.250.5d"
ACC = "acc.geopotential.500.5d"
N = 20
TIMES = pd.date_range("2020-01-01", periods=N, freq="12h").values


def rules(metrics=(Z500,), rule="all", tolerance=0.0, **more) -> PromotionParams:
    return PromotionParams(metrics=list(metrics), rule=rule, tolerance=tolerance, **more)


def noise(seed: int, scale: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, scale, N)


def scores(times=TIMES, **series) -> xr.DataArray:
    """``(key, time)`` per-init scores; keyword ``z500``/``t850``/``u250``/``acc`` -> (N,) values."""
    names = {"z500": Z500, "t850": T850, "u250": U250, "acc": ACC}
    rows = np.stack([np.broadcast_to(np.asarray(v, float), (len(times),)) for v in series.values()])
    return xr.DataArray(rows, dims=["key", "time"], coords={"key": [names[k] for k in series], "time": times})


CHAMP_Z = 100.0 + noise(1, 5.0)  # day-to-day variability far larger than the differences tested
CHAMP_T = 2.0 + noise(2, 0.1)
CHAMP_U = 3.0 + noise(3, 0.1)


# ------------------------------------------------------------------ comparing


def test_a_significant_gain_promotes_and_a_significant_loss_does_not():
    champion = scores(z500=CHAMP_Z)
    better = compare_paired(scores(z500=CHAMP_Z - 2.0 + noise(4, 0.5)), champion, rules())
    assert better.promote and better.verdicts[0].outcome == "better"
    assert better.verdicts[0].ci_low > 0 and better.verdicts[0].n == N
    worse = compare_paired(scores(z500=CHAMP_Z + 2.0 + noise(5, 0.5)), champion, rules())
    assert not worse.promote and worse.verdicts[0].outcome == "worse"
    assert Z500 in worse.reason and "CI [" in worse.reason and "p=" in worse.reason


@pytest.mark.parametrize("test", ["bootstrap", "t"])
def test_a_better_mean_that_is_not_significant_keeps_the_champion(test):
    """Mean 0.25 better (a stored-score comparison would promote), but the per-init gains swing by +-5."""
    swing = np.where(np.arange(N) % 2 == 0, 5.25, -4.75)  # (N,) mean 0.25
    result = compare_paired(scores(z500=CHAMP_Z - swing), scores(z500=CHAMP_Z), rules(test=test))
    verdict = result.verdicts[0]
    assert verdict.mean_improvement == pytest.approx(0.25)
    assert verdict.ci_low < 0 < verdict.ci_high and verdict.outcome == "tie"
    assert not result.promote and "not significantly different" in result.reason


@pytest.mark.parametrize("rule", ["all", "any", "majority"])
def test_ties_keep_the_champion_under_every_rule(rule):
    same = scores(z500=CHAMP_Z, t850=CHAMP_T)
    result = compare_paired(same, same, rules((Z500, T850), rule))
    assert not result.promote
    assert [v.outcome for v in result.verdicts] == ["tie", "tie"]


def test_tolerance_turns_a_small_significant_loss_into_a_draw():
    champion = scores(z500=CHAMP_Z, t850=CHAMP_T)
    gain_z = CHAMP_Z - 3.0 + noise(6, 0.5)
    one_percent_worse = scores(z500=gain_z, t850=CHAMP_T * 1.01)
    assert not compare_paired(one_percent_worse, champion, rules((Z500, T850), "all", 0.0)).promote
    assert compare_paired(one_percent_worse, champion, rules((Z500, T850), "all", 0.02)).promote
    beyond = compare_paired(scores(z500=gain_z, t850=CHAMP_T * 1.05), champion, rules((Z500, T850), "all", 0.02))
    assert not beyond.promote and "beyond the tolerance" in beyond.reason


def test_any_and_majority_rules():
    champion = scores(z500=CHAMP_Z, t850=CHAMP_T, u250=CHAMP_U)
    one_better = scores(z500=CHAMP_Z - 3, t850=CHAMP_T + 0.5, u250=CHAMP_U + 0.5)
    two_better = scores(z500=CHAMP_Z - 3, t850=CHAMP_T - 0.5, u250=CHAMP_U + 0.5)
    three = (Z500, T850, U250)
    assert compare_paired(one_better, champion, rules(three, "any")).promote
    assert not compare_paired(one_better, champion, rules(three, "majority")).promote
    assert compare_paired(two_better, champion, rules(three, "majority")).promote
    assert not compare_paired(two_better, champion, rules(three, "all")).promote


def test_anomaly_correlation_is_higher_is_better():
    champion = scores(acc=0.9 + noise(7, 0.02))
    assert compare_paired(scores(acc=champion.values[0] + 0.03), champion, rules((ACC,))).promote
    assert not compare_paired(scores(acc=champion.values[0] - 0.03), champion, rules((ACC,))).promote


def test_too_few_inits_cannot_be_significant():
    few = TIMES[:5]
    result = compare_paired(scores(few, z500=CHAMP_Z[:5] - 50), scores(few, z500=CHAMP_Z[:5]), rules())
    assert not result.promote and "min_inits 10" in result.reason
    assert compare_paired(scores(few, z500=CHAMP_Z[:5] - 50), scores(few, z500=CHAMP_Z[:5]), rules(min_inits=5)).promote


def test_non_finite_scores_and_mismatched_inits():
    broken = CHAMP_Z.copy()
    broken[3] = math.nan
    lost = compare_paired(scores(z500=CHAMP_Z + 1), scores(z500=broken), rules())
    assert lost.promote and "not finite at 1 of 20" in lost.reason
    with pytest.raises(RegistryError, match="challenger's per-init .* not finite"):
        compare_paired(scores(z500=broken), scores(z500=CHAMP_Z), rules())
    with pytest.raises(RegistryError, match=T850):
        compare_paired(scores(z500=CHAMP_Z), scores(z500=CHAMP_Z, t850=CHAMP_T), rules((Z500, T850)))
    with pytest.raises(RegistryError, match="init times"):
        compare_paired(scores(TIMES[1:], z500=CHAMP_Z[1:]), scores(TIMES[:-1], z500=CHAMP_Z[:-1]), rules())


# ------------------------------------------------------------------ registry


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> MlflowClient:
    uri = tracking_db(tmp_path_factory.mktemp("promotion") / "mlflow.db")
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture
def name() -> str:
    return f"model-{uuid.uuid4().hex[:8]}"


class Truth:
    """What re-scoring a version gives (its per-init scores on the challenger's inits), and who was re-scored."""

    def __init__(self) -> None:
        self.scores: dict[str, xr.DataArray] = {}
        self.rescored: list[str] = []

    def add(self, client: MlflowClient, name: str, z500: np.ndarray, stored: float | None = None) -> str:
        """A registry version with a stored score tag (as earlier zondas stored them) (``stored``, default the mean) and its true scores."""
        try:
            client.create_registered_model(name)
        except Exception as exc:  # noqa: BLE001
            assert exc.error_code == "RESOURCE_ALREADY_EXISTS"
        tags = legacy_score_tags({Z500: float(np.mean(z500)) if stored is None else stored})
        version = str(client.create_model_version(name, source="file:///dev/null/model", tags=tags).version)
        self.scores[version] = scores(z500=z500)
        return version

    def rescore(self, champion) -> xr.DataArray:
        self.rescored.append(str(champion.version))
        return self.scores[str(champion.version)]

    def gate(self, client, name, version, promotion=None, **kwargs) -> dict:
        return gate(name, version, promotion or rules(), challenger_scores=self.scores[version],
                    rescore=self.rescore, client=client, **kwargs)


def champion_of(client: MlflowClient, name: str) -> str | None:
    version = client.get_registered_model(name).aliases.get(CHAMPION)
    return None if version is None else str(version)


def test_first_version_becomes_champion_and_significantly_better_ones_take_over(client, name):
    truth = Truth()
    v1 = truth.add(client, name, CHAMP_Z)
    first = truth.gate(client, name, v1)
    assert first["decision"] == "promoted" and "no champion yet" in first["reason"] and truth.rescored == []
    assert champion_of(client, name) == v1

    v2 = truth.add(client, name, CHAMP_Z - 2.0 + noise(8, 0.5))
    second = truth.gate(client, name, v2)
    assert second["promoted"] and second["previous_champion"] == v1 and truth.rescored == [v1]
    assert champion_of(client, name) == v2
    tags = client.get_model_version(name, v2).tags
    assert tags[TAG_DECISION] == "promoted" and tags[TAG_PREVIOUS] == v1 and Z500 in tags[TAG_REASON]
    assert tags[TAG_RESCORED] == v1 and tags[TAG_N_INITS] == str(N)
    verdict = second["metrics"][0]
    for field in ("mean_improvement", "ci_low", "ci_high", "p_value", "bootstrap_fraction"):
        assert float(tags[f"{TAG_METRIC}{Z500}.{field}"]) == verdict[field]
    assert tags[f"{TAG_METRIC}{Z500}.outcome"] == "better" and verdict["mean_improvement"] == pytest.approx(2.0, abs=0.5)


def test_the_champions_stored_scores_are_ignored(client, name):
    """v1 claims 1.0 in its tags (unbeatable) but re-scores at ~100: v2 at ~95 wins; v2 then claims 10000, v3 still loses."""
    truth = Truth()
    v1 = truth.add(client, name, CHAMP_Z, stored=1.0)
    truth.gate(client, name, v1)
    v2 = truth.add(client, name, CHAMP_Z - 5.0 + noise(9, 0.5), stored=500.0)
    assert truth.gate(client, name, v2)["promoted"]
    v3 = truth.add(client, name, CHAMP_Z, stored=10000.0)  # the champion v2 is better on every init
    client.set_model_version_tag(name, v2, f"score.{Z500}", "10000.0")
    result = truth.gate(client, name, v3)
    assert not result["promoted"] and result["champion_rescored"] == v2 and champion_of(client, name) == v2
    assert result["metrics"][0]["champion"] == pytest.approx(float(np.sqrt(np.mean(truth.scores[v2].values ** 2))))


@pytest.mark.parametrize("policy", ["reject", "promote"])
def test_a_champion_that_cannot_be_scored_follows_the_policy(client, name, policy):
    truth = Truth()
    v1 = truth.add(client, name, CHAMP_Z)
    truth.gate(client, name, v1)
    v2 = truth.add(client, name, CHAMP_Z + 50.0)

    def incomparable(champion):
        raise ChampionIncomparable(f"models:/{name}/{champion.version}: the initial state lacks pressure level(s) [250] hPa")

    result = gate(name, v2, rules(on_incomparable=policy), challenger_scores=truth.scores[v2], rescore=incomparable,
                  client=client)
    assert result["promoted"] is (policy == "promote") and result["comparable"] is False
    assert f"champion version {v1}" in result["reason"] and "cannot be scored" in result["reason"]
    assert "lacks pressure level(s) [250]" in result["reason"] and f"on_incomparable={policy}" in result["reason"]
    assert champion_of(client, name) == (v2 if policy == "promote" else v1)
    tags = client.get_model_version(name, v2).tags
    assert tags[TAG_REASON] == result["reason"] and tags[TAG_RESCORED] == "none"


def test_a_worse_challenger_is_rejected_with_the_reason_tagged(client, name):
    truth = Truth()
    v1 = truth.add(client, name, CHAMP_Z)
    truth.gate(client, name, v1)
    v2 = truth.add(client, name, CHAMP_Z + 20.0)
    result = truth.gate(client, name, v2)
    assert result["decision"] == "rejected" and result["champion"] == v1
    assert champion_of(client, name) == v1
    tags = client.get_model_version(name, v2).tags
    assert tags[TAG_DECISION] == "rejected"
    assert tags[TAG_REASON] == result["reason"] and "-20" in tags[TAG_REASON]
    assert lock_name(name) not in {m.name for m in client.search_registered_models()}


def test_gate_errors_name_the_model_version_and_metric(client, name):
    truth = Truth()
    v1 = truth.add(client, name, CHAMP_Z)
    with pytest.raises(RegistryError, match=rf"{name}.*no version 7"):
        gate(name, 7, rules(), challenger_scores=truth.scores[v1], rescore=truth.rescore, client=client)
    with pytest.raises(RegistryError, match=rf"{name}.*version {v1}.*{T850}"):
        truth.gate(client, name, v1, rules((Z500, T850)))


def test_manual_promotion_overrides_the_gate_and_records_why(client, name):
    truth = Truth()
    v1 = truth.add(client, name, CHAMP_Z)
    truth.gate(client, name, v1)
    v2 = truth.add(client, name, CHAMP_Z + 50.0)
    assert not truth.gate(client, name, v2)["promoted"]

    result = promote(name, v2, "rollback: v1 drifts over the poles", client=client, user="alice")
    assert result["decision"] == "manual" and result["previous_champion"] == v1
    assert champion_of(client, name) == v2
    tags = client.get_model_version(name, v2).tags
    assert tags[TAG_DECISION] == "manual" and tags[TAG_BY] == "alice" and tags[TAG_PREVIOUS] == v1
    assert tags[TAG_REASON] == "rollback: v1 drifts over the poles"
    with pytest.raises(RegistryError, match="needs a reason"):
        promote(name, v1, "  ", client=client)
    with pytest.raises(RegistryError, match=rf"{name}.*no version 9"):
        promote(name, 9, "typo", client=client)
    assert champion_of(client, name) == v2


# ---------------------------------------------------------------------- lock


def test_lock_excludes_a_second_holder_until_released(client, name):
    first = PromotionLock(client, name).acquire()
    with pytest.raises(PromotionLockTimeout, match=rf"{name}.*held by"):
        PromotionLock(client, name, timeout=0.4, poll=0.05).acquire()
    first.release()
    with PromotionLock(client, name, timeout=2, poll=0.05) as second:
        assert second.still_held()
    assert lock_name(name) not in {m.name for m in client.search_registered_models()}


def test_a_stale_lock_is_broken_and_its_late_holder_cannot_release_the_new_one(client, name):
    crashed = PromotionLock(client, name).acquire()  # never released in time
    time.sleep(0.3)
    fresh = PromotionLock(client, name, stale_after=0.2, timeout=5, poll=0.05).acquire()
    assert fresh.still_held() and not crashed.still_held()
    crashed.release()  # must not delete the fresh holder's lock
    assert client.get_registered_model(lock_name(name)).tags[TAG_OWNER] == fresh.token
    fresh.release()
    leftovers = [m.name for m in client.search_registered_models() if m.name.startswith(lock_name(name))]
    assert leftovers == []


def test_concurrent_promotions_leave_the_best_challenger_champion(client, name, monkeypatch):
    """v2 and v3 both beat champion v1, v3 beats v2; v2's decision is slowed so, unlocked, it would land last."""
    truth = Truth()
    v1 = truth.add(client, name, CHAMP_Z)
    truth.gate(client, name, v1)
    v2, v3 = truth.add(client, name, CHAMP_Z - 20.0), truth.add(client, name, CHAMP_Z - 40.0)

    compare = promotion_module.compare_paired

    def slow_for_v2(challenger, champion, promotion):
        if challenger.identical(truth.scores[v2]):
            time.sleep(0.5)
        return compare(challenger, champion, promotion)

    monkeypatch.setattr(promotion_module, "compare_paired", slow_for_v2)
    results: dict[str, dict] = {}
    barrier = threading.Barrier(2)

    def run(version: str) -> None:
        barrier.wait()
        results[version] = truth.gate(client, name, version, lock_timeout=30)

    threads = [threading.Thread(target=run, args=(v,)) for v in (v2, v3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert set(results) == {v2, v3}
    assert champion_of(client, name) == v3
    assert results[v3]["promoted"]
    if results[v2]["promoted"]:  # v2 went first: v3 must then have beaten v2, not v1
        assert results[v2]["previous_champion"] == v1 and results[v3]["champion_rescored"] == v2
    else:  # v3 went first: v2 was compared with (re-scored) v3 and lost
        assert results[v2]["champion_rescored"] == v3 and results[v3]["previous_champion"] == v1
