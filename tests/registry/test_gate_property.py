"""Property: whatever the registration history, stored scores and gate settings, a worse model is never promoted.

"Worse" is the paired sense the gate tests: on the init times both are scored on, the challenger is no better
than the re-scored champion at any init (RMSE not lower, ACC not higher) for every gate metric. The gate must
then keep the champion, whatever the champion's stored ``score.*`` tags claim and whatever the rule, test,
confidence, tolerance and minimum number of inits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from mlflow.entities.model_registry import ModelVersion, ModelVersionTag

from zonda.params import PromotionParams
from zonda.registry.promotion import decide, higher_is_better

METRICS = ("rmse.geopotential.500.5d", "rmse.temperature.850.5d", "acc.geopotential.500.5d")
SCORE = st.floats(0.01, 1.0e4, allow_nan=False, allow_infinity=False)
GAP = st.floats(0.0, 1.0e3, allow_nan=False, allow_infinity=False)

promotions = st.builds(
    PromotionParams,
    metrics=st.lists(st.sampled_from(METRICS), min_size=1, max_size=3, unique=True),
    rule=st.sampled_from(["all", "any", "majority"]),
    tolerance=st.floats(0.0, 0.5),
    confidence=st.floats(0.51, 0.999),
    test=st.sampled_from(["bootstrap", "t"]),
    bootstrap_samples=st.integers(100, 400),
    seed=st.integers(0, 2**32 - 1),
    min_inits=st.integers(2, 12),
)


def per_init(values: dict[str, np.ndarray], times: np.ndarray) -> xr.DataArray:
    keys = list(values)
    return xr.DataArray(np.stack([values[k] for k in keys]), dims=["key", "time"], coords={"key": keys, "time": times})


@settings(max_examples=60, deadline=None)
@given(data=st.data(), promotion=promotions, n=st.integers(2, 24), steps=st.integers(2, 5))
def test_a_worse_challenger_is_never_promoted(data, promotion, n, steps):
    times = pd.date_range("2021-01-01", periods=n, freq="12h").values
    series = arrays(np.float64, n, elements=SCORE)
    champion, champion_scores = None, None
    for step in range(1, steps + 1):
        worse = champion is not None and data.draw(st.booleans(), label="worse")
        if worse:  # no better than the champion at any init, by arbitrary (possibly zero) margins
            values = {}
            for key in promotion.metrics:
                gap = data.draw(arrays(np.float64, n, elements=GAP), label=f"gap {key}")
                old = champion_scores.sel(key=key).values
                values[key] = old - gap if higher_is_better(key) else old + gap
        else:
            values = {key: data.draw(series, label=f"scores {key}") for key in promotion.metrics}
        scores = per_init(values, times)
        stored = data.draw(st.dictionaries(st.sampled_from(METRICS), SCORE), label="stored tags")
        tags = [ModelVersionTag(f"score.{k}", repr(v)) for k, v in stored.items()]  # what it claims; the gate re-scores
        version = ModelVersion(name="m", version=str(step), creation_timestamp=0, tags=tags)
        result = decide("m", str(step), scores, champion, champion_scores, promotion)
        if worse:
            assert not result["promoted"], result["reason"]
            assert all(m["outcome"] != "better" for m in result["metrics"])
        if result["promoted"]:
            champion, champion_scores = version, scores
