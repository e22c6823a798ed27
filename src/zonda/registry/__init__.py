"""Stage 6, the model registry: pyfunc packaging, registration, the promotion gate, forecasts.

Public API::

    register_model(params, model_dir, statistics_dir, graph_dir, evaluation_dir, *,
                   snapshot_dir, mlflow_run_id=None) -> dict      # zonda.registry.register
    gate(name, version, promotion, *, challenger_scores, rescore, client=None) -> dict  # zonda.registry.promotion
    promote(name, version, reason, *, client=None, user=None) -> dict
    compare_paired(challenger, champion, promotion) -> Comparison   # per-init scores, paired test
    paired_test(improvement, *, confidence, method) -> PairedTest   # zonda.registry.significance
    rescore_champion(model_uri, snapshot_dir, reference, params)    # zonda.registry.rescore
    PromotionLock(client, model_name)                              # zonda.registry.lock
    forecast(model_uri, init_path, lead, out_path) -> Path         # zonda.registry.forecast
    parse_lead("10d") -> 40                                        # zonda.registry.inputs
    ZondaForecastModel                                             # zonda.registry.pyfunc_model
    pipeline_report(params, run_name) -> str | None               # zonda.registry.report
    RegistryError, InitialStateError, LeadError, PromotionLockTimeout, ChampionIncomparable

Names are loaded on first use, so importing the package pulls in neither
MLflow nor torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "register_model": "zonda.registry.register",
    "gate": "zonda.registry.promotion",
    "promote": "zonda.registry.promotion",
    "compare_paired": "zonda.registry.promotion",
    "paired_test": "zonda.registry.significance",
    "rescore_champion": "zonda.registry.rescore",
    "PromotionLock": "zonda.registry.lock",
    "forecast": "zonda.registry.forecast",
    "parse_lead": "zonda.registry.inputs",
    "ZondaForecastModel": "zonda.registry.pyfunc_model",
    "pipeline_report": "zonda.registry.report",
    "RegistryError": "zonda.registry.errors",
    "InitialStateError": "zonda.registry.errors",
    "LeadError": "zonda.registry.errors",
    "PromotionLockTimeout": "zonda.registry.errors",
    "ChampionIncomparable": "zonda.registry.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'zonda.registry' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
