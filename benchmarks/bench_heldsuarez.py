"""Benchmark of the Held-Suarez generator at the local preset's settings.

Prints the JIT compile time of the integrator and of the output diagnostics
and the wall-clock seconds per simulated day (median over one-day chunks after
compilation).  Run from the repository root::

    .venv/bin/python benchmarks/bench_heldsuarez.py [DAYS]

or call :func:`measure` from another script.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

REPO = Path(__file__).resolve().parents[1]
PRESET = REPO / "params" / "local.yaml"


def _block(tree):
    return jax.block_until_ready(tree)


def measure(days: float = 5) -> dict:
    """Times the Held-Suarez model at the settings of ``params/local.yaml``.

    Caches are cleared first, so the compile times are those of a fresh process.

    Args:
      days: simulated days to time after compilation (whole days; at least 1).

    Returns:
      dict with ``truncation``, ``layers``, ``dt_minutes``, ``compile_seconds``
      (first 6-hour chunk minus a warm chunk), ``diagnostics_compile_seconds``,
      ``seconds_per_simulated_day`` (median over ``days`` one-day chunks),
      ``seconds_per_day_min``/``_max`` and ``days_measured``.
    """
    from zonda.data import heldsuarez, hs_dycore
    from zonda.params import load_params

    hs = load_params(PRESET).data.heldsuarez
    n_days = max(1, int(round(days)))
    hs_dycore.get_dycore.cache_clear()
    hs_dycore.get_diagnostics.cache_clear()
    jax.clear_caches()

    dycore, state, _ = heldsuarez.initial_model_state(hs)
    chunk = dycore.steps_per_chunk

    start = time.perf_counter()
    state = _block(dycore.advance(state, chunk))
    first_chunk = time.perf_counter() - start
    start = time.perf_counter()
    state = _block(dycore.advance(state, chunk))
    warm_chunk = time.perf_counter() - start

    per_day = []
    for _ in range(n_days):
        start = time.perf_counter()
        for _ in range(heldsuarez.CHUNKS_PER_DAY):
            state = dycore.advance(state, chunk)
        _block(state)
        per_day.append(time.perf_counter() - start)

    diagnose = hs_dycore.get_diagnostics(dycore, tuple(load_params(PRESET).data.levels))
    start = time.perf_counter()
    fields = _block(diagnose(state))
    diagnostics_compile = time.perf_counter() - start
    if not all(np.all(np.isfinite(np.asarray(v))) for v in fields.values()):
        raise FloatingPointError("Held-Suarez benchmark state is not finite")

    return {
        "truncation": hs.truncation,
        "layers": hs.layers,
        "dt_minutes": hs.dt_minutes,
        "compile_seconds": round(first_chunk - warm_chunk, 2),
        "diagnostics_compile_seconds": round(diagnostics_compile, 2),
        "seconds_per_simulated_day": round(statistics.median(per_day), 3),
        "seconds_per_day_min": round(min(per_day), 3),
        "seconds_per_day_max": round(max(per_day), 3),
        "days_measured": n_days,
    }


def main(argv: list[str]) -> None:
    days = float(argv[1]) if len(argv) > 1 else 5.0
    result = measure(days)
    print(
        f"Held-Suarez T{result['truncation']} L{result['layers']} dt {result['dt_minutes']:g} min: "
        f"JIT compile {result['compile_seconds']:.1f} s (+{result['diagnostics_compile_seconds']:.1f} s diagnostics), "
        f"{result['seconds_per_simulated_day']:.3f} s per simulated day "
        f"(median of {result['days_measured']}, range {result['seconds_per_day_min']:.3f}-{result['seconds_per_day_max']:.3f})"
    )


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    main(sys.argv)
