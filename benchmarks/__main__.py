"""`make bench`: run every benchmark, print its numbers (JSON), then a summary of their tables.

    python -m benchmarks                 # all
    python -m benchmarks spine graph     # some (spine, heldsuarez, graph, models, training, pipeline)
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback

BENCHES = ["spine", "heldsuarez", "graph", "models", "training", "pipeline"]


def main(argv: list[str]) -> int:
    names = argv or BENCHES
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {BENCHES}", file=sys.stderr)
        return 2
    failed = 0
    results = {}
    for name in names:
        print(f"\n=== bench {name} ===", flush=True)
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(f"benchmarks.bench_{name}")
            results[name] = module.measure()
        except Exception:  # noqa: BLE001 - report and go on with the others
            traceback.print_exc()
            failed += 1
            continue
        print(json.dumps(results[name], indent=2, default=str))
        print(f"({time.perf_counter() - t0:.0f} s)")
    print("\n=== summary ===")
    for name, result in results.items():
        print(f"\n--- {name}")
        print(readable(name, result))
    return 1 if failed else 0


def readable(name: str, result: dict) -> str:
    """The benchmark's own table (its module's ``report``) where it has one, else its JSON."""
    report = getattr(importlib.import_module(f"benchmarks.bench_{name}"), "report", None)
    return report(result) if report else json.dumps(result, indent=2, default=str)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
