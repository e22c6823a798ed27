"""`make bench`: run every benchmark, print its numbers (JSON), then a summary of their tables.

    python -m benchmarks                 # all
    python -m benchmarks spine graph     # some (spine, heldsuarez, graph, models, training, pipeline, fingerprint)

Each benchmark runs in a fresh Python process: one benchmark's leftovers
(JAX thread pools, torch settings, a fragmented heap, a high peak RSS that
Linux passes on to child processes) must not colour the next one's numbers.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCHES = ["spine", "heldsuarez", "graph", "models", "training", "pipeline", "fingerprint"]
REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--one"]:  # child process: one benchmark, its result as JSON into a file
        _, name, result_file = argv
        result = importlib.import_module(f"benchmarks.bench_{name}").measure()
        Path(result_file).write_text(json.dumps(result, default=str))
        return 0
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
        result = run_in_fresh_process(name)
        if result is None:
            print(f"bench {name} failed (its traceback is above); going on with the others", flush=True)
            failed += 1
            continue
        results[name] = result
        print(json.dumps(result, indent=2, default=str))
        print(f"({time.perf_counter() - t0:.0f} s)")
    print("\n=== summary ===")
    for name, result in results.items():
        print(f"\n--- {name}")
        print(readable(name, result))
    return 1 if failed else 0


def run_in_fresh_process(name: str) -> dict | None:
    """``benchmarks.bench_<name>.measure()`` run by a new interpreter (its output passes through); None if it failed."""
    with tempfile.TemporaryDirectory(prefix="zonda-bench-") as tmp:
        result_file = Path(tmp) / "result.json"
        code = subprocess.call([sys.executable, "-m", "benchmarks", "--one", name, str(result_file)], cwd=REPO)
        return json.loads(result_file.read_text()) if code == 0 and result_file.exists() else None


def readable(name: str, result: dict) -> str:
    """The benchmark's own table (its module's ``report``) where it has one, else its JSON."""
    report = getattr(importlib.import_module(f"benchmarks.bench_{name}"), "report", None)
    return report(result) if report else json.dumps(result, indent=2, default=str)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
