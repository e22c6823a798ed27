"""The promotion gate: does a newly registered version take the ``champion`` alias?

**Like with like.** Stored scores are not compared: the champion may have
been evaluated on another snapshot, test window or settings. The gate takes
the challenger's per-init scores from its evaluation (``per_init.nc``:
``registry.promotion.metrics`` at each test init time) and *re-scores the
champion* on exactly those init times, leads and truth with the same metric
code (a ``rescore`` callable; at registration
:func:`zonda.registry.rescore.rescore_champion` loads the champion's
registered pyfunc and forecasts from the challenger's snapshot). The
champion's stored scores (its logged model's metrics, or an earlier zonda's
``score.*`` version tags) are ignored.

**Per metric**, a paired test over the init times
(:mod:`zonda.registry.significance`, ``confidence``, ``test``) on the per-init
improvements ``d_i`` (champion minus challenger for ``rmse.*``, challenger
minus champion for ``acc.*``), with ``t = registry.promotion.tolerance``:

- ``better``: the confidence interval of ``mean d`` lies above 0 (significant gain);
- ``worse``: it lies below ``-t * |champion mean score|`` (significant loss beyond the tolerance);
- ``tie``: neither (no significant difference; also with fewer than
  ``min_inits`` paired inits). A champion whose re-scored forecasts are not
  finite loses (``better``) to a finite challenger.

**Rules** (``registry.promotion.rule``):

- ``all``: no metric ``worse`` and at least one ``better``;
- ``any``: at least one metric ``better``;
- ``majority``: more metrics ``better`` than ``worse`` (ties abstain).

Ties alone never promote, so a challenger that is not significantly better
keeps the incumbent. With no champion yet, the first version checked becomes
champion. A champion that cannot be scored on the challenger's data (other
variables, levels or grid; a model that does not load) follows
``on_incomparable``: ``reject`` (default: fail closed, a person compares and
uses ``zonda promote``) or ``promote``. A rejected challenger keeps its
``challenger`` alias; the decision and, per metric, the re-scored champion
version, n, mean improvement, interval, p-value and bootstrap fraction are
returned and recorded as version tags (``zonda.promotion.*``), never raised,
so a pipeline reports it and succeeds.

The decision is taken inside :class:`~zonda.registry.lock.PromotionLock`,
re-reading the champion there, so two concurrent promotions are serialised:
the later one compares against whatever the earlier one left as champion.
The re-score and the tests run before the lock is taken and are redone inside
it only if the champion changed meanwhile, so the lock is held for a few
registry calls. :func:`promote` is the manual override
(``zonda promote NAME VERSION --reason``).
"""

from __future__ import annotations

import getpass
import logging
import math
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Literal, Mapping

import numpy as np
import xarray as xr

from zonda.evaluation.headline import HIGHER_IS_BETTER
from zonda.params import PromotionParams
from zonda.registry.errors import ChampionIncomparable, RegistryError
from zonda.registry.lock import DEFAULT_STALE_AFTER_S, DEFAULT_TIMEOUT_S, PromotionLock
from zonda.registry.significance import paired_test

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
TAG_DECISION = "zonda.promotion.decision"
#: Tags the registration sets on the pipeline's MLflow run (the pipeline report reads them).
TAG_REGISTERED_MODEL = "zonda.registered_model"
TAG_MODEL_VERSION = "zonda.model_version"
TAG_REASON = "zonda.promotion.reason"
TAG_AT = "zonda.promotion.at"
TAG_BY = "zonda.promotion.by"
TAG_PREVIOUS = "zonda.promotion.previous_champion"
TAG_RESCORED = "zonda.promotion.champion_rescored"
TAG_N_INITS = "zonda.promotion.n_inits"
TAG_TEST = "zonda.promotion.test"
TAG_METRIC = "zonda.promotion.metric."  # + <key>.<field>, e.g. ...metric.rmse.geopotential.500.5d.ci_low
_MAX_TAG_VALUE = 5000

Outcome = Literal["better", "tie", "worse"]
#: ``rescore(champion ModelVersion) -> (key, time)`` per-init scores on the challenger's init times.
Rescore = Callable[[Any], xr.DataArray]


# ----------------------------------------------------------------- comparing


@dataclass(frozen=True)
class MetricVerdict:
    """One metric of one paired comparison (scores aggregated as the headline: RMSE of the MSEs, mean ACC)."""

    metric: str
    n: int
    challenger: float
    champion: float
    mean_improvement: float
    ci_low: float
    ci_high: float
    p_value: float
    bootstrap_fraction: float
    outcome: Outcome
    note: str = ""

    def describe(self) -> str:
        return (
            f"{self.metric} {self.challenger:.6g} vs champion {self.champion:.6g} on {self.n} inits, mean improvement "
            f"{self.mean_improvement:+.4g} CI [{self.ci_low:+.4g}, {self.ci_high:+.4g}], p={self.p_value:.3g}, "
            f"bootstrap P(no gain)={self.bootstrap_fraction:.3g} ({self.outcome}{'; ' + self.note if self.note else ''})"
        )


@dataclass(frozen=True)
class Comparison:
    """The gate's verdict on challenger per-init scores against the re-scored champion's."""

    promote: bool
    reason: str
    verdicts: tuple[MetricVerdict, ...]


def higher_is_better(metric: str) -> bool:
    """``acc.*`` (anomaly correlation) scores improve upwards; every other headline score downwards."""
    return metric.split(".", 1)[0] in HIGHER_IS_BETTER


def aggregate(metric: str, per_init: np.ndarray) -> float:
    """The headline value of per-init scores: ``sqrt(mean rmse_i^2)`` for ``rmse.*``, the mean otherwise."""
    values = np.asarray(per_init, dtype=np.float64)
    if metric.split(".", 1)[0] == "rmse":
        return float(np.sqrt(np.mean(values**2)))
    return float(np.mean(values))


def _series(scores: xr.DataArray, metric: str, who: str) -> np.ndarray:
    keys = [str(k) for k in scores["key"].values]
    if metric not in keys:
        raise RegistryError(f"the {who}'s per-init scores have no {metric!r} (keys {keys})")
    return np.asarray(scores.sel(key=metric).values, dtype=np.float64)  # (time,)


def metric_verdict(metric: str, challenger: np.ndarray, champion: np.ndarray, promotion: PromotionParams) -> MetricVerdict:
    """The paired test of one metric (see the module docstring); ``(n,)`` per-init scores on the same inits."""
    if not np.isfinite(challenger).all():
        raise RegistryError(f"the challenger's per-init {metric} is not finite at {int((~np.isfinite(challenger)).sum())} inits")
    n = int(challenger.size)
    new, old = aggregate(metric, challenger), aggregate(metric, champion)
    if not np.isfinite(champion).all():
        bad = int((~np.isfinite(champion)).sum())
        return MetricVerdict(metric, n, new, old, math.nan, math.nan, math.nan, math.nan, math.nan, "better",
                             f"the champion's forecasts are not finite at {bad} of {n} inits")
    improvement = (challenger - champion) if higher_is_better(metric) else (champion - challenger)  # (n,)
    test = paired_test(improvement, confidence=promotion.confidence, method=promotion.test,
                       n_resamples=promotion.bootstrap_samples, seed=promotion.seed)
    if n < promotion.min_inits:
        outcome, note = "tie", f"{n} paired inits < registry.promotion.min_inits {promotion.min_inits}: not tested"
    elif test.significantly_better:
        outcome, note = "better", ""
    elif test.significantly_below(-promotion.tolerance * abs(float(np.mean(champion)))):
        outcome, note = "worse", ""
    else:
        outcome, note = "tie", "no significant difference"
    return MetricVerdict(metric, n, new, old, test.mean, test.ci_low, test.ci_high, test.p_value,
                         test.bootstrap_fraction, outcome, note)


def compare_paired(challenger: xr.DataArray, champion: xr.DataArray, promotion: PromotionParams) -> Comparison:
    """Applies the paired test per ``promotion.metrics`` and then ``promotion.rule``.

    Args:
      challenger, champion: ``(key, time)`` per-init scores
        (:func:`zonda.evaluation.per_init.per_init_scores`) on the same init times.

    Raises RegistryError if a metric is missing or the init times differ.
    """
    times = np.asarray(challenger["time"].values)
    if not np.array_equal(times, np.asarray(champion["time"].values)):
        raise RegistryError(
            f"the champion was scored on {champion.sizes['time']} init times, not the challenger's {times.size}; "
            "paired scores must share their init times"
        )
    verdicts = tuple(
        metric_verdict(m, _series(challenger, m, "challenger"), _series(champion, m, "champion"), promotion)
        for m in promotion.metrics
    )
    better = sum(v.outcome == "better" for v in verdicts)
    worse = sum(v.outcome == "worse" for v in verdicts)
    promote = {"all": worse == 0 and better > 0, "any": better > 0, "majority": better > worse}[promotion.rule]
    head = (f"rule {promotion.rule!r}, {promotion.test} at {promotion.confidence:g}, tolerance {promotion.tolerance:g}: "
            f"significantly better on {better}, worse on {worse} of {len(verdicts)}")
    why = "significantly beats the champion" if promote else _rejection(promotion.rule, better, worse)
    return Comparison(promote, f"{why} ({head}): " + "; ".join(v.describe() for v in verdicts), verdicts)


def _rejection(rule: str, better: int, worse: int) -> str:
    if better == 0 and worse == 0:
        return "not significantly different from the champion (ties keep the champion)"
    if rule == "all" and worse:
        return "significantly worse than the champion beyond the tolerance on some metric"
    if better == 0:
        return "significantly better than the champion on no metric"
    return "not significantly better than the champion on more metrics than it is worse"


# --------------------------------------------------------------- registry I/O


def _client(client: Any | None) -> Any:
    if client is not None:
        return client
    from mlflow import MlflowClient

    return MlflowClient()


def get_version(client: Any, name: str, version: str | int) -> Any:
    """The ModelVersion ``name``/``version``; RegistryError naming both if it does not exist."""
    try:
        version = str(int(version))
    except (TypeError, ValueError):
        raise RegistryError(f"model version {version!r} of {name!r} is not an integer") from None
    try:
        return client.get_model_version(name, version)
    except Exception as exc:  # noqa: BLE001 - MlflowException / RestException
        if getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise RegistryError(f"registered model {name!r} has no version {version} ({exc})") from None
        raise


def current_champion(client: Any, name: str) -> Any | None:
    """The ModelVersion holding the ``champion`` alias, or None."""
    aliases = getattr(client.get_registered_model(name), "aliases", None) or {}
    version = aliases.get(CHAMPION)
    return None if version is None else client.get_model_version(name, str(version))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _record(client: Any, name: str, version: str, tags: Mapping[str, str]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value)[:_MAX_TAG_VALUE])


def _set_champion(client: Any, lock: PromotionLock, name: str, version: str) -> None:
    if not lock.still_held():
        raise RegistryError(
            f"lost the promotion lock of {name!r} before setting {CHAMPION} to version {version} "
            f"(held longer than {lock.stale_after:.0f} s); run the promotion again"
        )
    client.set_registered_model_alias(name, CHAMPION, version)


# ---------------------------------------------------------------------- gate


def decide(
    name: str,
    version: str,
    challenger_scores: xr.DataArray,
    champion: Any | None,
    champion_scores: xr.DataArray | ChampionIncomparable | None,
    promotion: PromotionParams,
) -> dict[str, Any]:
    """The gate's decision for ``version`` (no registry writes).

    ``champion`` is the current champion ModelVersion or None;
    ``champion_scores`` its per-init scores on the challenger's init times, or
    the ChampionIncomparable saying why it could not be scored.
    """
    previous = None if champion is None else str(champion.version)
    base = {"name": name, "version": version, "previous_champion": previous, "champion_rescored": None,
            "n_inits": int(challenger_scores.sizes["time"]), "rule": promotion.rule, "tolerance": promotion.tolerance,
            "test": promotion.test, "confidence": promotion.confidence, "metrics": []}
    if champion is None:
        return {**base, "decision": "promoted", "promoted": True, "champion": version,
                "reason": f"version {version} is the first of {name!r} checked by the gate (no champion yet)"}
    if previous == version:
        return {**base, "decision": "unchanged", "promoted": False, "champion": version,
                "reason": f"version {version} already is the champion of {name!r}"}
    if isinstance(champion_scores, ChampionIncomparable):
        promote = promotion.on_incomparable == "promote"
        action = ("promoted without comparison (registry.promotion.on_incomparable=promote)" if promote else
                  "kept the champion (registry.promotion.on_incomparable=reject); compare by hand and use `zonda promote`")
        return {**base, "decision": "promoted" if promote else "rejected", "promoted": promote,
                "champion": version if promote else previous, "comparable": False,
                "reason": f"version {version} vs champion version {previous}: the champion cannot be scored on the "
                          f"challenger's evaluation data: {champion_scores}; {action}"}
    comparison = compare_paired(challenger_scores, champion_scores, promotion)
    return {
        **base,
        "champion_rescored": previous,
        "comparable": True,
        "decision": "promoted" if comparison.promote else "rejected",
        "promoted": comparison.promote,
        "champion": version if comparison.promote else previous,
        "reason": f"version {version} vs champion version {previous} re-scored on the challenger's "
                  f"{base['n_inits']} init times: {comparison.reason}",
        "metrics": [asdict(v) for v in comparison.verdicts],
    }


def decision_tags(result: Mapping[str, Any]) -> dict[str, str]:
    """The version tags recording a gate decision (``zonda.promotion.*``, per metric ``...metric.<key>.<field>``)."""
    tags = {
        TAG_DECISION: result["decision"], TAG_REASON: result["reason"], TAG_AT: _now(),
        TAG_PREVIOUS: result["previous_champion"] or "none",
        TAG_RESCORED: result.get("champion_rescored") or "none",
        TAG_N_INITS: str(result["n_inits"]),
        TAG_TEST: f"{result['test']} at confidence {result['confidence']:g}, rule {result['rule']}, "
                  f"tolerance {result['tolerance']:g}",
    }
    for verdict in result["metrics"]:
        for field in ("outcome", "n", "challenger", "champion", "mean_improvement", "ci_low", "ci_high", "p_value",
                      "bootstrap_fraction"):
            value = verdict[field]
            tags[f"{TAG_METRIC}{verdict['metric']}.{field}"] = repr(float(value)) if isinstance(value, float) else str(value)
    return tags


def _scored(rescore: Rescore, champion: Any, cache: dict[str, Any]) -> xr.DataArray | ChampionIncomparable:
    """``rescore(champion)`` once per version; a ChampionIncomparable is returned, not raised."""
    version = str(champion.version)
    if version not in cache:
        try:
            cache[version] = rescore(champion)
        except ChampionIncomparable as exc:
            log.warning("champion version %s cannot be scored on the challenger's data: %s", version, exc)
            cache[version] = exc
    return cache[version]


def gate(
    name: str,
    version: str | int,
    promotion: PromotionParams,
    *,
    challenger_scores: xr.DataArray,
    rescore: Rescore,
    client: Any | None = None,
    lock_timeout: float = DEFAULT_TIMEOUT_S,
    stale_after: float = DEFAULT_STALE_AFTER_S,
) -> dict[str, Any]:
    """Runs the promotion gate on ``name``/``version`` under the promotion lock.

    Args:
      challenger_scores: ``(key, time)`` per-init scores of the challenger (its ``per_init.nc``).
      rescore: ``rescore(champion ModelVersion)`` -> the champion's ``(key, time)`` scores on the
        same init times; raises ChampionIncomparable when it cannot be scored.

    Returns a dict with ``decision`` (``promoted``, ``rejected`` or
    ``unchanged``), ``promoted``, ``reason``, ``champion`` (after),
    ``previous_champion``, ``champion_rescored``, ``n_inits`` and per-metric
    ``metrics`` (n, aggregates, mean improvement, CI, p-value, bootstrap
    fraction, outcome); the same are tagged on the version (:func:`decision_tags`).
    """
    client = _client(client)
    version = str(get_version(client, name, version).version)
    keys = [str(k) for k in challenger_scores["key"].values]
    missing = [m for m in promotion.metrics if m not in keys]
    if missing:
        raise RegistryError(
            f"{name!r} version {version} has no per-init scores for registry.promotion.metrics {missing} (keys: {keys})"
        )
    cache: dict[str, Any] = {}

    def decision(champion: Any | None) -> dict[str, Any]:
        scores = None if champion is None or str(champion.version) == version else _scored(rescore, champion, cache)
        return decide(name, version, challenger_scores, champion, scores, promotion)

    def version_of(champion: Any | None) -> str | None:
        return None if champion is None else str(champion.version)

    before = current_champion(client, name)
    planned = decision(before)  # the slow part (re-score, paired tests), outside the lock
    with PromotionLock(client, name, timeout=lock_timeout, stale_after=stale_after) as lock:
        champion = current_champion(client, name)
        result = planned if version_of(champion) == version_of(before) else decision(champion)
        if result["promoted"]:
            _set_champion(client, lock, name, version)
    _record(client, name, version, decision_tags(result))  # this version's own tags: no lock needed
    log.info("promotion gate %s v%s: %s", name, version, result["reason"])
    return result


def promote(
    name: str,
    version: str | int,
    reason: str,
    *,
    client: Any | None = None,
    user: str | None = None,
    lock_timeout: float = DEFAULT_TIMEOUT_S,
    stale_after: float = DEFAULT_STALE_AFTER_S,
) -> dict[str, Any]:
    """Manual override: makes ``name``/``version`` the champion whatever its scores.

    Records on the version who (``user``, default the OS user), when, why
    (``reason``, required) and which version was champion before. Returns a
    dict like :func:`gate`'s with ``decision`` ``manual``.
    """
    if not reason or not reason.strip():
        raise RegistryError(f"promoting {name!r} version {version} by hand needs a reason (--reason)")
    client = _client(client)
    version = str(get_version(client, name, version).version)
    who = user or _user()
    with PromotionLock(client, name, timeout=lock_timeout, stale_after=stale_after) as lock:
        champion = current_champion(client, name)
        previous = None if champion is None else str(champion.version)
        _set_champion(client, lock, name, version)
        _record(client, name, version, {
            TAG_DECISION: "manual", TAG_REASON: reason.strip(), TAG_BY: who, TAG_AT: _now(),
            TAG_PREVIOUS: previous or "none",
        })
    log.info("%s promoted %s v%s to %s by hand (was v%s): %s", who, name, version, CHAMPION, previous, reason)
    return {"name": name, "version": version, "decision": "manual", "promoted": True, "champion": version,
            "previous_champion": previous, "reason": reason.strip(), "by": who}


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return "unknown"
