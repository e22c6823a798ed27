"""``python -m zonda.training``: run the training stage from the command line.

    python -m zonda.training --params params/local.yaml --snapshot D --statistics D \\
        --graph D --out D [--mlflow-run-id ID] [--no-track] [--no-progress] [training.lr=3e-4 ...]

The same arguments as ``zonda train``. Lightning's ``ddp`` strategy re-runs
this command in every extra process, so multi-process CPU/GPU training on one
machine works from here too.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m zonda.training", description="Train a zonda Forecaster (stage 4).")
    p.add_argument("--params", required=True, help="params YAML preset")
    p.add_argument("--snapshot", required=True, help="snapshot directory (stage 1)")
    p.add_argument("--statistics", required=True, help="statistics directory (stage 2)")
    p.add_argument("--graph", required=True, help="graph directory (stage 3)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--mlflow-run-id", default=None, help="MLflow run to log into (the pipeline's)")
    p.add_argument("--no-track", action="store_true", help="do not log to MLflow")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. training.lr=3e-4")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from zonda.params import ParamsError, load_params
    from zonda.training.errors import TrainingInputError
    from zonda.training.train import train

    try:
        params = load_params(args.params, args.overrides)
    except ParamsError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        manifest = train(
            params, args.snapshot, args.statistics, args.graph, args.out,
            mlflow_run_id=args.mlflow_run_id, progress=not args.no_progress, track=not args.no_track,
        )
    except (TrainingInputError, FileNotFoundError) as exc:  # bad inputs or checkpoints: the message names them
        print(f"zonda train: {exc}", file=sys.stderr)
        return 2
    if "rank" not in manifest:
        summary = {k: manifest.get(k) for k in ("model_id", "global_step", "epochs", "throughput", "mlflow_run_id")}
        print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
