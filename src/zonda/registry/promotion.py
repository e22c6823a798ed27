"""The promotion gate: does a newly registered version take the ``champion`` alias?

Every registered version carries its evaluation's headline scores as tags
``score.<key>`` (e.g. ``score.rmse.geopotential.500.5d``). The gate compares
the challenger's scores with the current champion's on
``registry.promotion.metrics``.

**Per metric** (lower is better, except ``acc.*`` keys, the anomaly
correlation, where higher is better), with ``t = registry.promotion.tolerance``
and challenger ``new``, champion ``old``:

- ``better``: ``new < old`` (strictly better);
- ``tie``: not better, but ``new <= old + t * |old|`` (equal, or worse by at most
  the relative tolerance: a draw, not a loss);
- ``worse``: ``new > old + t * |old|``, or ``new`` is NaN (a NaN champion score
  loses to any finite challenger score).

(For ``acc.*`` mirror the inequalities: ``better`` is ``new > old``, ``worse``
is ``new < old - t * |old|``.)

**Rules** (``registry.promotion.rule``):

- ``all``: no metric ``worse`` and at least one ``better``;
- ``any``: at least one metric ``better``;
- ``majority``: more metrics ``better`` than ``worse`` (ties abstain).

Ties alone never promote: a challenger that only draws keeps the incumbent
(no churn between equally good models). With no champion yet, the first
version checked becomes champion. A rejected challenger keeps its
``challenger`` alias; the reason is returned and recorded as version tags
(``zonda.promotion.*``), never raised, so a pipeline reports it and succeeds.

The decision is taken inside :class:`~zonda.registry.lock.PromotionLock`,
re-reading the champion there, so two concurrent promotions are serialised:
the later one compares against whatever the earlier one left as champion.
:func:`promote` is the manual override (``zonda promote NAME VERSION --reason``).
"""

from __future__ import annotations

import getpass
import logging
import math
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Literal, Mapping

from zonda.evaluation.headline import HIGHER_IS_BETTER
from zonda.params import PromotionParams
from zonda.registry.errors import RegistryError
from zonda.registry.lock import DEFAULT_STALE_AFTER_S, DEFAULT_TIMEOUT_S, PromotionLock

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
SCORE_PREFIX = "score."
TAG_DECISION = "zonda.promotion.decision"
#: Tags the registration sets on the pipeline's MLflow run (the pipeline report reads them).
TAG_REGISTERED_MODEL = "zonda.registered_model"
TAG_MODEL_VERSION = "zonda.model_version"
TAG_REASON = "zonda.promotion.reason"
TAG_AT = "zonda.promotion.at"
TAG_BY = "zonda.promotion.by"
TAG_PREVIOUS = "zonda.promotion.previous_champion"
_MAX_TAG_VALUE = 5000

Outcome = Literal["better", "tie", "worse"]


# ----------------------------------------------------------------- comparing


@dataclass(frozen=True)
class MetricVerdict:
    """One metric of one comparison."""

    metric: str
    challenger: float
    champion: float
    outcome: Outcome

    def describe(self) -> str:
        return f"{self.metric} {self.challenger:.6g} vs {self.champion:.6g} ({self.outcome})"


@dataclass(frozen=True)
class Comparison:
    """The gate's verdict on challenger scores against champion scores."""

    promote: bool
    reason: str
    verdicts: tuple[MetricVerdict, ...]


def higher_is_better(metric: str) -> bool:
    """``acc.*`` (anomaly correlation) scores improve upwards; every other headline score downwards."""
    return metric.split(".", 1)[0] in HIGHER_IS_BETTER


def metric_outcome(metric: str, new: float, old: float, tolerance: float) -> Outcome:
    """``better`` / ``tie`` / ``worse`` of one metric (see the module docstring)."""
    if math.isnan(new):
        return "tie" if math.isnan(old) else "worse"
    if math.isnan(old):
        return "better"
    sign = -1.0 if higher_is_better(metric) else 1.0
    new, old = sign * new, sign * old
    if new < old:
        return "better"
    return "tie" if new <= old + tolerance * abs(old) else "worse"


def compare_scores(
    challenger: Mapping[str, float], champion: Mapping[str, float], promotion: PromotionParams
) -> Comparison:
    """Applies ``promotion.rule`` and ``promotion.tolerance`` to the ``promotion.metrics`` scores.

    Raises RegistryError if the challenger lacks a metric; a champion without
    one cannot be compared, which rejects the challenger (with that reason).
    """
    missing = [m for m in promotion.metrics if m not in challenger]
    if missing:
        raise RegistryError(f"the challenger has no score for {missing} (scores: {sorted(challenger)})")
    unknown = [m for m in promotion.metrics if m not in champion]
    if unknown:
        return Comparison(False, f"the champion has no score for {unknown}; compare by hand and use `zonda promote`", ())
    verdicts = tuple(
        MetricVerdict(m, float(challenger[m]), float(champion[m]),
                      metric_outcome(m, float(challenger[m]), float(champion[m]), promotion.tolerance))
        for m in promotion.metrics
    )
    better = sum(v.outcome == "better" for v in verdicts)
    worse = sum(v.outcome == "worse" for v in verdicts)
    promote = {"all": worse == 0 and better > 0, "any": better > 0, "majority": better > worse}[promotion.rule]
    head = f"rule {promotion.rule!r}, tolerance {promotion.tolerance:g}: better on {better}, worse on {worse} of {len(verdicts)}"
    why = "beats the champion" if promote else _rejection(promotion.rule, better, worse)
    return Comparison(promote, f"{why} ({head}): " + "; ".join(v.describe() for v in verdicts), verdicts)


def _rejection(rule: str, better: int, worse: int) -> str:
    if better == 0 and worse == 0:
        return "ties the champion (ties keep the champion)"
    if rule == "all" and worse:
        return "worse than the champion beyond the tolerance on some metric"
    if better == 0:
        return "better than the champion on no metric"
    return "not better than the champion on more metrics than it is worse"


# ------------------------------------------------------------------ scores


def score_tags(scores: Mapping[str, float]) -> dict[str, str]:
    """Version tags ``score.<key>`` holding the exact float (``repr``) of each headline score."""
    return {f"{SCORE_PREFIX}{key}": repr(float(value)) for key, value in scores.items()}


def scores_from_tags(tags: Mapping[str, str]) -> dict[str, float]:
    """Inverse of :func:`score_tags` (tags without the prefix are ignored)."""
    out = {}
    for key, value in tags.items():
        if key.startswith(SCORE_PREFIX):
            try:
                out[key[len(SCORE_PREFIX):]] = float(value)
            except ValueError:
                raise RegistryError(f"version tag {key}={value!r} is not a number") from None
    return out


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
    name: str, version: str, scores: Mapping[str, float], champion: Any | None, promotion: PromotionParams
) -> dict[str, Any]:
    """The gate's decision for ``version`` (no registry writes); ``champion`` is the current one or None."""
    previous = None if champion is None else str(champion.version)
    base = {"name": name, "version": version, "previous_champion": previous,
            "rule": promotion.rule, "tolerance": promotion.tolerance, "metrics": []}
    if champion is None:
        return {**base, "decision": "promoted", "promoted": True, "champion": version,
                "reason": f"version {version} is the first of {name!r} checked by the gate (no champion yet)"}
    if previous == version:
        return {**base, "decision": "unchanged", "promoted": False, "champion": version,
                "reason": f"version {version} already is the champion of {name!r}"}
    comparison = compare_scores(scores, scores_from_tags(champion.tags), promotion)
    return {
        **base,
        "decision": "promoted" if comparison.promote else "rejected",
        "promoted": comparison.promote,
        "champion": version if comparison.promote else previous,
        "reason": f"version {version} vs champion version {previous}: {comparison.reason}",
        "metrics": [asdict(v) for v in comparison.verdicts],
    }


def gate(
    name: str,
    version: str | int,
    promotion: PromotionParams,
    *,
    client: Any | None = None,
    lock_timeout: float = DEFAULT_TIMEOUT_S,
    stale_after: float = DEFAULT_STALE_AFTER_S,
) -> dict[str, Any]:
    """Runs the promotion gate on ``name``/``version`` under the promotion lock.

    Returns a dict with ``decision`` (``promoted``, ``rejected`` or
    ``unchanged``), ``promoted``, ``reason``, ``champion`` (after),
    ``previous_champion`` and per-metric ``metrics``; the same decision,
    reason, time and previous champion are tagged on the version.
    """
    client = _client(client)
    challenger = get_version(client, name, version)
    version = str(challenger.version)
    scores = scores_from_tags(challenger.tags)
    missing = [m for m in promotion.metrics if m not in scores]
    if missing:
        raise RegistryError(
            f"{name!r} version {version} has no score tag for registry.promotion.metrics {missing} "
            f"(scores: {sorted(scores)})"
        )
    with PromotionLock(client, name, timeout=lock_timeout, stale_after=stale_after) as lock:
        result = decide(name, version, scores, current_champion(client, name), promotion)
        if result["promoted"]:
            _set_champion(client, lock, name, version)
        _record(client, name, version, {
            TAG_DECISION: result["decision"], TAG_REASON: result["reason"], TAG_AT: _now(),
            TAG_PREVIOUS: result["previous_champion"] or "none",
        })
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
