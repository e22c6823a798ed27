"""The promotion gate: comparison rules, the champion alias in a registry, manual override, the lock."""

from __future__ import annotations

import math
import threading
import time
import uuid

import pytest
from mlflow import MlflowClient
from registry_fixtures import tracking_db

from zonda.params import PromotionParams
from zonda.registry import promotion as promotion_module
from zonda.registry.errors import PromotionLockTimeout, RegistryError
from zonda.registry.lock import TAG_OWNER, PromotionLock, lock_name
from zonda.registry.promotion import (
    CHAMPION,
    TAG_BY,
    TAG_DECISION,
    TAG_PREVIOUS,
    TAG_REASON,
    compare_scores,
    gate,
    promote,
    score_tags,
)

Z500, T850, U250 = "rmse.geopotential.500.5d", "rmse.temperature.850.5d", "rmse.u_component_of_wind.250.5d"


def rules(metrics=(Z500,), rule="all", tolerance=0.0) -> PromotionParams:
    return PromotionParams(metrics=list(metrics), rule=rule, tolerance=tolerance)


# ------------------------------------------------------------------ comparing


def test_better_promotes_and_worse_does_not():
    assert compare_scores({Z500: 90.0}, {Z500: 100.0}, rules()).promote
    rejected = compare_scores({Z500: 110.0}, {Z500: 100.0}, rules())
    assert not rejected.promote
    assert Z500 in rejected.reason and "110" in rejected.reason and "100" in rejected.reason


@pytest.mark.parametrize("rule", ["all", "any", "majority"])
def test_ties_keep_the_champion_under_every_rule(rule):
    result = compare_scores({Z500: 100.0, T850: 2.0}, {Z500: 100.0, T850: 2.0}, rules((Z500, T850), rule))
    assert not result.promote
    assert "ties the champion" in result.reason
    assert [v.outcome for v in result.verdicts] == ["tie", "tie"]


def test_tolerance_turns_a_small_loss_into_a_draw():
    challenger, champion = {Z500: 90.0, T850: 2.02}, {Z500: 100.0, T850: 2.0}  # T850 1 % worse
    assert not compare_scores(challenger, champion, rules((Z500, T850), "all", 0.0)).promote
    assert compare_scores(challenger, champion, rules((Z500, T850), "all", 0.02)).promote
    beyond = compare_scores({Z500: 90.0, T850: 2.1}, champion, rules((Z500, T850), "all", 0.02))  # 5 % worse
    assert not beyond.promote
    assert "beyond the tolerance" in beyond.reason


def test_any_and_majority_rules():
    champion = {Z500: 100.0, T850: 2.0, U250: 3.0}
    one_better = {Z500: 90.0, T850: 2.5, U250: 3.5}
    two_better = {Z500: 90.0, T850: 1.5, U250: 3.5}
    three = (Z500, T850, U250)
    assert compare_scores(one_better, champion, rules(three, "any")).promote
    assert not compare_scores(one_better, champion, rules(three, "majority")).promote
    assert compare_scores(two_better, champion, rules(three, "majority")).promote
    assert not compare_scores(two_better, champion, rules(three, "all")).promote


def test_anomaly_correlation_is_higher_is_better():
    acc = "acc.geopotential.500.5d"
    assert compare_scores({acc: 0.95}, {acc: 0.90}, rules((acc,))).promote
    assert not compare_scores({acc: 0.85}, {acc: 0.90}, rules((acc,))).promote


def test_nan_scores_lose_and_missing_champion_scores_reject():
    assert not compare_scores({Z500: math.nan}, {Z500: 100.0}, rules()).promote
    assert compare_scores({Z500: 100.0}, {Z500: math.nan}, rules()).promote
    result = compare_scores({Z500: 1.0, T850: 1.0}, {Z500: 2.0}, rules((Z500, T850)))
    assert not result.promote and T850 in result.reason and "zonda promote" in result.reason
    with pytest.raises(RegistryError, match=T850):
        compare_scores({Z500: 1.0}, {Z500: 2.0, T850: 1.0}, rules((Z500, T850)))


# ------------------------------------------------------------------ registry


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> MlflowClient:
    uri = tracking_db(tmp_path_factory.mktemp("promotion") / "mlflow.db")
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture
def name() -> str:
    return f"model-{uuid.uuid4().hex[:8]}"


def add_version(client: MlflowClient, name: str, **scores: float) -> str:
    """A registry version carrying score tags (no model files: the gate reads only tags)."""
    try:
        client.create_registered_model(name)
    except Exception as exc:  # noqa: BLE001
        assert exc.error_code == "RESOURCE_ALREADY_EXISTS"
    tags = score_tags({Z500 if key == "z500" else T850: value for key, value in scores.items()})
    return str(client.create_model_version(name, source="file:///dev/null/model", tags=tags).version)


def champion_of(client: MlflowClient, name: str) -> str | None:
    version = client.get_registered_model(name).aliases.get(CHAMPION)
    return None if version is None else str(version)


def test_first_version_becomes_champion_and_better_ones_take_over(client, name):
    v1 = add_version(client, name, z500=100.0)
    first = gate(name, v1, rules(), client=client)
    assert first["decision"] == "promoted" and "no champion yet" in first["reason"]
    assert champion_of(client, name) == v1

    v2 = add_version(client, name, z500=90.0)
    second = gate(name, v2, rules(), client=client)
    assert second["promoted"] and second["previous_champion"] == v1
    assert champion_of(client, name) == v2
    tags = client.get_model_version(name, v2).tags
    assert tags[TAG_DECISION] == "promoted" and tags[TAG_PREVIOUS] == v1 and Z500 in tags[TAG_REASON]


def test_a_worse_challenger_is_rejected_with_the_reason_tagged(client, name):
    v1 = add_version(client, name, z500=100.0)
    gate(name, v1, rules(), client=client)
    v2 = add_version(client, name, z500=120.0)
    result = gate(name, v2, rules(), client=client)
    assert result["decision"] == "rejected" and result["champion"] == v1
    assert champion_of(client, name) == v1
    tags = client.get_model_version(name, v2).tags
    assert tags[TAG_DECISION] == "rejected"
    assert tags[TAG_REASON] == result["reason"] and "120" in tags[TAG_REASON]
    assert lock_name(name) not in {m.name for m in client.search_registered_models()}


def test_gate_errors_name_the_model_version_and_metric(client, name):
    v1 = add_version(client, name, z500=100.0)
    with pytest.raises(RegistryError, match=rf"{name}.*no version 7"):
        gate(name, 7, rules(), client=client)
    with pytest.raises(RegistryError, match=rf"{name}.*version {v1}.*{T850}"):
        gate(name, v1, rules((Z500, T850)), client=client)


def test_manual_promotion_overrides_the_gate_and_records_why(client, name):
    v1 = add_version(client, name, z500=100.0)
    gate(name, v1, rules(), client=client)
    v2 = add_version(client, name, z500=150.0)
    assert not gate(name, v2, rules(), client=client)["promoted"]

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
    v1 = add_version(client, name, z500=100.0)
    gate(name, v1, rules(), client=client)
    v2, v3 = add_version(client, name, z500=80.0), add_version(client, name, z500=60.0)

    compare = promotion_module.compare_scores

    def slow_for_v2(challenger, champion, promotion):
        if challenger[Z500] == 80.0:
            time.sleep(0.5)
        return compare(challenger, champion, promotion)

    monkeypatch.setattr(promotion_module, "compare_scores", slow_for_v2)
    results: dict[str, dict] = {}
    barrier = threading.Barrier(2)

    def run(version: str) -> None:
        barrier.wait()
        results[version] = gate(name, version, rules(), client=client, lock_timeout=30)

    threads = [threading.Thread(target=run, args=(v,)) for v in (v2, v3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert set(results) == {v2, v3}
    assert champion_of(client, name) == v3
    assert results[v3]["promoted"]
    if results[v2]["promoted"]:  # v2 went first: v3 must then have beaten v2, not v1
        assert results[v2]["previous_champion"] == v1 and results[v3]["previous_champion"] == v2
    else:  # v3 went first: v2 was compared with v3 and lost
        assert results[v2]["previous_champion"] == v3 and results[v3]["previous_champion"] == v1
