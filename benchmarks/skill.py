"""`make skill`: the skill preset end to end, its scores against every baseline, and wall time per stage.

    python -m benchmarks.skill                                  # params/skill.yaml into artifacts/skill
    python -m benchmarks.skill --params params/local.yaml --out artifacts/skill-local
    python -m benchmarks.skill training.max_steps=100           # dotted overrides go to every stage

Runs ``zonda snapshot``, ``statistics``, ``graph``, ``train`` and ``evaluate``
(each a fresh process, as the pipeline runs them; a stage whose output is
already there with the same inputs reuses it), then a second evaluation of
``--stability-days``-day rollouts from ``--stability-inits`` initial times. Prints:

* the headline table: RMSE of the model and every baseline (persistence,
  climatology, ``evaluation.baselines``) and ACC at 1, 3, 5 and 10 days;
* the skill goals of issue 14, each with its measured number: Z500 RMSE at 1 day
  against persistence, the last lead at which the model is below climatology
  (Z500, T850, U250), the last lead with Z500 ACC >= 0.6, the physics baseline at
  1-3 days, the long rollouts' largest RMSE over sqrt(2) x the climatology's, and
  the largest 5-day zonal-spectrum ratio (forecast / truth) and the first
  wavenumber where it exceeds 2;
* wall time per stage.

Writes the same as JSON to ``<out>/skill.json``. Skill goals are measured here,
never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr

from zonda.evaluation import global_region, read_results
from zonda.evaluation.spectra import SPECTRAL_RATIO_LIMIT, WAVENUMBER, max_spectral_ratio, read_spectra, spectral_ratio

REPO = Path(__file__).resolve().parents[1]
STAGES = ("snapshot", "statistics", "graph", "train", "evaluate")
HEADLINE = ("geopotential/500", "temperature/850", "u_component_of_wind/250")
LEADS = (1.0, 3.0, 5.0, 10.0)
ACC_USEFUL = 0.6


def _zonda() -> list[str]:
    return [sys.executable, "-c", "import sys; from zonda.cli import main; sys.exit(main(sys.argv[1:]))"]


def _stage_args(stage: str, params: str, out: Path, overrides: list[str], *, target: Path | None = None) -> list[str]:
    inputs = {
        "snapshot": [],
        "statistics": ["--snapshot", out / "snapshot"],
        "graph": ["--snapshot", out / "snapshot"],
        "train": ["--snapshot", out / "snapshot", "--statistics", out / "statistics", "--graph", out / "graph"],
        "evaluate": ["--snapshot", out / "snapshot", "--statistics", out / "statistics", "--graph", out / "graph",
                     "--model", out / "model"],
    }[stage]
    folder = {"train": "model", "evaluate": "evaluation"}.get(stage, stage)
    return [stage, "-q", "--no-mlflow", "--params", params, *map(str, inputs), "--out", str(target or out / folder), *overrides]


def run_stage(args: list[str], log: Path) -> float:
    """Runs ``zonda <args>`` with its output appended to ``log``; returns the wall time (s)."""
    t0 = time.perf_counter()
    with log.open("a") as f:
        f.write(f"\n$ zonda {' '.join(args)}\n")
        f.flush()
        code = subprocess.call([*_zonda(), *args], cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    if code:
        raise SystemExit(f"zonda {args[0]} failed (exit {code}); its output is in {log}")
    return time.perf_counter() - t0


def _series(results: xr.Dataset, model: str, spec: str, metric: str) -> xr.DataArray:
    name, _, level = spec.partition("/")
    da = results[name].sel(model=model, metric=metric)
    return da.sel(level=int(level)) if level else da


def _at(series: xr.DataArray, days: float) -> float:
    lead = np.timedelta64(int(round(days * 24)), "h").astype("timedelta64[ns]")
    return float(series.sel(lead_time=lead)) if lead in series["lead_time"].values else math.nan


def _days(series: xr.DataArray) -> np.ndarray:
    return series["lead_time"].values.astype("timedelta64[h]").astype(float) / 24.0


def last_lead_where(ok: np.ndarray, days: np.ndarray) -> float:
    """The last lead (days) up to which ``ok`` holds at every lead from the first (0 if not even the first)."""
    bad = np.flatnonzero(~ok)
    return float(days[bad[0] - 1]) if bad.size and bad[0] > 0 else (0.0 if bad.size else float(days[-1]))


def headline_table(results: xr.Dataset) -> list[str]:
    models = [str(m) for m in results["model"].values]
    lines = ["| score | " + " | ".join(f"{d:g} d" for d in LEADS) + " |", "|---|" + "---:|" * len(LEADS)]
    for spec in HEADLINE:
        label = " / ".join(models)
        rows = [" / ".join(f"{_at(_series(results, m, spec, 'rmse'), d):.4g}" for m in models) for d in LEADS]
        lines.append(f"| {spec} RMSE {label} | " + " | ".join(rows) + " |")
    for spec in HEADLINE:
        acc_models = [m for m in models if m != "climatology"]
        rows = [" / ".join(f"{_at(_series(results, m, spec, 'acc'), d):.2f}" for m in acc_models) for d in LEADS]
        lines.append(f"| {spec} ACC {' / '.join(acc_models)} | " + " | ".join(rows) + " |")
    return lines


def goals(results: xr.Dataset, stability: xr.Dataset | None, spectra_ratio_5d: dict | None) -> dict[str, dict]:
    """Each skill goal of issue 14 with its measured value and whether it is met."""
    out: dict[str, dict] = {}
    z = _series(results, "model", "geopotential/500", "rmse")
    ratio = _at(z, 1.0) / _at(_series(results, "persistence", "geopotential/500", "rmse"), 1.0)
    out["z500_rmse_1d_over_persistence"] = {"value": round(ratio, 3), "goal": "<= 0.25", "met": ratio <= 0.25}
    for spec in HEADLINE:
        m, c = _series(results, "model", spec, "rmse"), _series(results, "climatology", spec, "rmse")
        last = last_lead_where(m.values < c.values, _days(m))
        out[f"{spec}_below_climatology_through_days"] = {"value": last, "goal": ">= 5", "met": last >= 5.0}
    acc = _series(results, "model", "geopotential/500", "acc")
    last = last_lead_where(acc.values >= ACC_USEFUL, _days(acc))
    out["z500_acc_above_0.6_through_days"] = {"value": last, "goal": ">= 5", "met": last >= 5.0}
    physics = [str(m) for m in results["model"].values if str(m) not in ("model", "persistence", "climatology")]
    for name in physics:
        worse = [d for d in (1.0, 2.0, 3.0) if _at(z, d) >= _at(_series(results, name, "geopotential/500", "rmse"), d)]
        out[f"z500_below_{name}_1_to_3d"] = {"value": f"loses at {worse} d" if worse else "below at 1, 2, 3 d",
                                             "goal": "below at 1-3 d", "met": not worse}
    if stability is not None:
        worst = 0.0
        for spec in HEADLINE:
            m, c = _series(stability, "model", spec, "rmse").values, _series(stability, "climatology", spec, "rmse").values
            worst = max(worst, float(np.nanmax(np.where(np.isfinite(m), m / (math.sqrt(2) * c), np.inf))))
        days = float(_days(_series(stability, "model", HEADLINE[0], "rmse"))[-1])
        out["long_rollout_max_rmse_over_sqrt2_climatology"] = {"value": round(worst, 3), "goal": "<= 1", "met": worst <= 1.0,
                                                               "days": days}
    if spectra_ratio_5d is not None:
        top = spectra_ratio_5d["max"]
        out["spectrum_ratio_5d_max"] = {"value": float(f"{top:.4g}"), "goal": "<= 2", "met": top <= 2.0,
                                        "first wavenumber above 2": spectra_ratio_5d["first_above_2"]}
    return out


def spectrum_ratio(evaluation: Path, days: float = 5.0) -> dict[str, float] | None:
    """At ``days``, over the headline variables: the largest forecast / truth zonal power ratio over wavenumbers
    >= 1 (``max``) and the first wavenumber where any variable's ratio exceeds 2 (``first_above_2``: the scales
    down to the one before it are free of grid-scale noise). None when the evaluation has no spectra at that lead."""
    path = evaluation / "spectra.nc"
    if not path.is_file():
        return None
    spectra = read_spectra(path)
    lead = np.timedelta64(int(round(days * 24)), "h").astype("timedelta64[ns]")
    if lead not in spectra["lead_time"].values:
        return None
    peak = max_spectral_ratio(spectra, model="model").sel(lead_time=lead)
    ratio = spectral_ratio(spectra, model="model").sel(lead_time=lead)  # per variable (zonal_wavenumber,)
    k = ratio[WAVENUMBER].values
    above = [k[(k >= 1) & ~(ratio[name].values <= SPECTRAL_RATIO_LIMIT)] for name in ratio.data_vars]
    first = min((int(a.min()) for a in above if a.size), default=None)
    return {"max": max(float(peak[name]) for name in peak.data_vars), "first_above_2": first}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params/skill.yaml")
    parser.add_argument("--out", default="artifacts/skill")
    parser.add_argument("--stability-days", type=float, default=30.0)
    parser.add_argument("--stability-inits", type=int, default=8)
    parser.add_argument("--report-only", action="store_true", help="only print the report of an earlier run in --out")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    out = (REPO / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "skill.log"
    overrides = [f"runtime.output_root={out / 'root'}", *args.overrides]
    print(f"skill run of {args.params} into {out} (stage output in {log})", flush=True)

    stability_dir = out / "stability"
    if args.report_only:
        times = json.loads((out / "times.json").read_text()) if (out / "times.json").is_file() else {}
    else:
        times = {}
        for stage in STAGES:
            times[stage] = run_stage(_stage_args(stage, args.params, out, overrides), log)
            print(f"  {stage:<10} {times[stage]:7.1f} s", flush=True)
        long = [f"evaluation.lead_days={args.stability_days:g}", f"evaluation.max_inits={args.stability_inits}",
                f"evaluation.headline_lead_days=[{args.stability_days:g}]", f"evaluation.map_lead_days=[{args.stability_days:g}]",
                "evaluation.spectra_lead_days=null", "evaluation.baselines=[]"]
        times["stability"] = run_stage(_stage_args("evaluate", args.params, out, overrides + long, target=stability_dir), log)
        print(f"  {'stability':<10} {times['stability']:7.1f} s", flush=True)
        (out / "times.json").write_text(json.dumps(times))

    results = global_region(read_results(out / "evaluation" / "results.nc"))
    stability = global_region(read_results(stability_dir / "results.nc"))
    measured = goals(results, stability, spectrum_ratio(out / "evaluation"))
    print(f"\n## {args.params}: scores on {results.attrs.get('n_init_times', '?')} initial times\n")
    print("\n".join(headline_table(results)))
    print("\n## Skill goals\n")
    for name, entry in measured.items():
        extra = {k: v for k, v in entry.items() if k not in ("value", "goal", "met")}
        more = f" [{', '.join(f'{k}: {v}' for k, v in extra.items())}]" if extra else ""
        print(f"- {name}: {entry['value']} (goal {entry['goal']}): {'met' if entry['met'] else 'NOT met'}{more}")
    print("\n## Wall time per stage (s)\n")
    for stage, seconds in times.items():
        print(f"- {stage}: {seconds:.0f}")
    print(f"- total (stages): {sum(v for k, v in times.items() if k != 'stability'):.0f}; with the stability run: {sum(times.values()):.0f}")
    (out / "skill.json").write_text(json.dumps({"params": args.params, "times_s": times, "goals": measured,
                                                "table": headline_table(results)}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
