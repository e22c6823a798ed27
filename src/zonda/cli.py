"""The ``zonda`` command line: one subcommand per stage plus helpers.

Every subcommand takes ``--params FILE`` (default ``params/local.yaml``) and
dotted overrides after the options, e.g.::

    zonda snapshot --params params/local.yaml --out artifacts/snapshot data.levels=[500,850]
    zonda params show --params params/aifs.yaml training.lr=3e-4
    zonda snapshot fetch sha256:<64 hex> --out artifacts/snapshot [--remote s3://bucket/dvc]

Bad params, bad input data (including a corrupt chunk or an artifact that
differs from its recorded digests) or an unreachable source end with a
one-paragraph message naming the file, field or variable, and exit status 2;
a full disk with one naming the artifact being written, and exit status 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
from pathlib import Path
from typing import Callable

from zonda.console import VERBOSE_ENV
from zonda.params import RuntimeParams

DEFAULT_PARAMS = "local"  # a preset name: params/local.yaml of this checkout, from any directory
FETCH_COMMAND = "snapshot-fetch"
EXIT_BAD_INPUT = 2
EXIT_FAULT = 1


class _Parser(argparse.ArgumentParser):
    """A parser whose leaf commands take options and dotted overrides in any order.

    ``zonda snapshot --out DIR data.levels=[500]`` as well as ``zonda snapshot data.levels=[500] --out DIR``:
    a command without subcommands parses intermixed (``parse_known_intermixed_args``), which plain
    ``parse_args`` does not do for a ``nargs="*"`` positional after options.
    """

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if self._subparsers is not None or self._intermixing:
            return super().parse_known_args(args, namespace)
        self._intermixing = True  # parse_known_intermixed_args calls parse_known_args itself
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def _common(p: argparse.ArgumentParser, *, tracked: bool = True) -> None:
    p.add_argument("--params", default=DEFAULT_PARAMS, help=f"params YAML or preset name, e.g. aifs (default {DEFAULT_PARAMS})")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. training.lr=3e-4")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    if tracked:
        p.add_argument("--mlflow-run-id", default=None, help="log into this MLflow run (the pipeline's)")
        p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")


def _load(args: argparse.Namespace):
    from zonda.params import load_params

    return load_params(args.params, args.overrides)


def _track(args: argparse.Namespace) -> dict:
    return {"mlflow_run_id": args.mlflow_run_id, "track": not args.no_mlflow, "progress": not args.quiet}


def cmd_params_show(args: argparse.Namespace) -> None:
    print(_load(args).to_yaml(), end="")


def cmd_params_check(args: argparse.Namespace) -> None:
    params = _load(args)
    print(f"{args.params}: valid ({params.name})")


def cmd_snapshot(args: argparse.Namespace) -> None:
    from zonda.stages import snapshot_stage

    from zonda.provenance import read_manifest

    before = read_manifest(args.out) if Path(args.out).is_dir() else None
    manifest = snapshot_stage(_load(args), args.out, **_track(args))
    if before is not None and before.get("stage_key") == manifest.get("stage_key"):
        print(f"snapshot {manifest['snapshot_id']} already at {args.out}: nothing written")
    else:
        print(f"snapshot {manifest['snapshot_id']} written to {args.out}")


def cmd_snapshot_fetch(args: argparse.Namespace) -> None:
    from zonda.snapshot_store import fetch_snapshot, resolve_remote

    remote = resolve_remote(args.remote)
    manifest = fetch_snapshot(args.snapshot_id, args.out, remote)
    print(f"snapshot {manifest['snapshot_id']} fetched from {remote} to {args.out} (DVC md5 {manifest['dvc']['md5']})")


def cmd_statistics(args: argparse.Namespace) -> None:
    from zonda.stages import statistics_stage

    manifest = statistics_stage(_load(args), args.snapshot, args.out, **_track(args))
    print(f"statistics {manifest['statistics_hash']} at {args.out}")


def cmd_graph(args: argparse.Namespace) -> None:
    from zonda.stages import graph_stage

    manifest = graph_stage(_load(args), args.snapshot, args.out, **_track(args))
    counts = manifest["counts"]
    print(f"graph {manifest['graph_hash']} at {args.out}: {counts['nodes']} nodes, {counts['edges']} edges")


def cmd_train(args: argparse.Namespace) -> None:
    from zonda.stages import train_stage

    manifest = train_stage(_load(args), args.snapshot, args.statistics, args.graph, args.out, **_track(args))
    if "model_id" in manifest:  # global rank 0 only
        print(f"model {manifest['model_id']} at {args.out} ({manifest['global_step']} steps, {manifest['seconds']:.0f} s)")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from zonda.evaluation.run import read_summary
    from zonda.stages import evaluate_stage

    evaluate_stage(_load(args), args.snapshot, args.statistics, args.graph, args.model, args.out, **_track(args))
    print(read_summary(args.out))


def cmd_register(args: argparse.Namespace) -> None:
    from zonda.stages import register_stage

    manifest = register_stage(
        _load(args), args.model, args.statistics, args.graph, args.evaluation, args.out,
        snapshot_dir=args.snapshot, mlflow_run_id=args.mlflow_run_id, progress=not args.quiet,
    )
    print(f"{manifest['name']} version {manifest['version']}: {manifest['decision']} ({manifest['reason']})")


def cmd_promote(args: argparse.Namespace) -> None:
    from zonda import tracking
    from zonda.registry.promotion import promote

    params = _load(args)
    tracking.check_reachable(params)
    tracking.configure(params)
    result = promote(args.name, args.version, args.reason, user=args.user)
    print(f"{result['name']} version {result['version']} is now champion (was {result['previous_champion'] or 'none'})")


def cmd_forecast(args: argparse.Namespace) -> None:
    from zonda import tracking
    from zonda.registry.forecast import forecast

    params = _load(args)
    model = args.model or f"models:/{params.registry.model_name}@champion"
    if model.startswith(("models:", "runs:")):
        tracking.check_reachable(params)
    tracking.configure(params)
    path = forecast(model, args.init, args.lead, args.out)
    print(f"forecast of {model} from {args.init} written to {path}")


def cmd_model_summary(args: argparse.Namespace) -> None:
    from zonda.models.summary import params_summary

    print(params_summary(_load(args)))


def cmd_data_heldsuarez(args: argparse.Namespace) -> None:
    from zonda.data.heldsuarez import main_heldsuarez

    if args.out is None and args.write_restart is None:
        raise SystemExit("zonda data heldsuarez: give --out FILE (.nc or .zarr) and/or --write-restart FILE.npz")
    main_heldsuarez(_load(args), args.out, args.spinup_days, args.write_restart, progress=not args.quiet)


def build_parser() -> argparse.ArgumentParser:
    from zonda import __version__

    parser = _Parser(prog="zonda", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"zonda {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, all of it on the console (else in <out>.log beside a stage's output)")
    sub = parser.add_subparsers(dest="command", required=True)

    params = sub.add_parser("params", help="show or check resolved params").add_subparsers(dest="action", required=True)
    p = params.add_parser("show", help="print the fully resolved params as YAML")
    _common(p, tracked=False)
    p.set_defaults(func=cmd_params_show)
    p = params.add_parser("check", help="validate params and exit")
    _common(p, tracked=False)
    p.set_defaults(func=cmd_params_check)

    data = sub.add_parser("data", help="embedded data generators").add_subparsers(dest="generator", required=True)
    p = data.add_parser("heldsuarez", help="run the Held-Suarez generator (dinosaur) or regenerate its restart state")
    _common(p, tracked=False)
    p.add_argument("--out", type=Path, default=None, help="write the generated record here (.nc or .zarr)")
    p.add_argument(
        "--spinup-days", type=float, default=None, help="days to spin up from rest with --write-restart (default 300); with only --out it overrides data.heldsuarez.spinup_days",
    )
    p.add_argument("--write-restart", type=Path, default=None, help="spin up from rest and write a restart .npz")
    p.set_defaults(func=cmd_data_heldsuarez)

    model = sub.add_parser("model", help="model helpers").add_subparsers(dest="action", required=True)
    p = model.add_parser("summary", help="parameter counts per component (embedders, encoder, processor, decoder)")
    _common(p, tracked=False)
    p.set_defaults(func=cmd_model_summary)

    p = sub.add_parser("snapshot", help="stage 1: validated, content-hashed zarr v3 snapshot")
    _common(p)
    p.add_argument("--out", type=Path, required=True, help="snapshot directory")
    p.set_defaults(func=cmd_snapshot)

    p = sub.add_parser(FETCH_COMMAND, help="`zonda snapshot fetch ID --out DIR`: a pushed snapshot back from its DVC remote")
    p.add_argument("snapshot_id", help="the snapshot ID (sha256:...), as in its manifest, MLflow or registry tags")
    p.add_argument("--out", type=Path, required=True, help="directory to restore it into (replaced if present)")
    p.add_argument(
        "--remote", default=RuntimeParams.model_fields["dvc_remote"].default,
        help="DVC remote URL or the name of a remote of the DVC project here (default: %(default)s)",
    )
    p.set_defaults(func=cmd_snapshot_fetch)

    p = sub.add_parser("statistics", help="stage 2: normalisation statistics")
    _common(p)
    p.add_argument("--snapshot", type=Path, required=True, help="snapshot directory")
    p.add_argument("--out", type=Path, required=True, help="statistics directory")
    p.set_defaults(func=cmd_statistics)

    p = sub.add_parser("graph", help="stage 3: icosahedral multi-mesh and grid<->mesh graph")
    _common(p)
    p.add_argument("--snapshot", type=Path, required=True, help="snapshot directory (its grid is used)")
    p.add_argument("--out", type=Path, required=True, help="graph directory")
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser("train", help="stage 4: train the forecaster (Lightning; DDP from params)")
    _common(p)
    _inputs(p, "snapshot", "statistics", "graph")
    p.add_argument("--out", type=Path, required=True, help="training output directory")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="stage 5: 10-day forecasts scored against persistence and climatology")
    _common(p)
    _inputs(p, "snapshot", "statistics", "graph", "model")
    p.add_argument("--out", type=Path, required=True, help="evaluation directory")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("register", help="stage 6: register the model in MLflow and run the promotion gate")
    _common(p, tracked=False)  # registering writes to MLflow: no --no-mlflow here
    p.add_argument("--mlflow-run-id", default=None, help="log into this MLflow run (the pipeline's)")
    _inputs(p, "snapshot", "statistics", "graph", "model", "evaluation")
    p.add_argument("--out", type=Path, required=True, help="registration directory (manifest.json)")
    p.set_defaults(func=cmd_register)

    p = sub.add_parser("promote", help="make a registered model version the champion by hand")
    p.add_argument("name", help="registered model name, e.g. zonda")
    p.add_argument("version", help="model version number")
    _common(p, tracked=False)
    p.add_argument("--reason", required=True, help="why (recorded on the version with who and when)")
    p.add_argument("--user", default=None, help="who promotes (default: the OS user)")
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser("forecast", help="forecast from an initial-state file with a registered model")
    _common(p, tracked=False)
    p.add_argument("--model", default=None, help="model URI (default: models:/<registry.model_name>@champion)")
    p.add_argument("--init", type=Path, required=True, help="initial state: zarr store or netCDF file")
    p.add_argument("--lead", default=None, help="10d, 36h, 6h ... (default: evaluation.lead_days)")
    p.add_argument("--out", type=Path, required=True, help="forecast output: zarr store (or .nc)")
    p.set_defaults(func=cmd_forecast)
    return parser


def _inputs(p: argparse.ArgumentParser, *names: str) -> None:
    for name in names:
        p.add_argument(f"--{name}", type=Path, required=True, help=f"{name} directory (an earlier stage's output)")


def _bad_input_errors() -> tuple[type[BaseException], ...]:
    from zonda.data.reading import ChunkReadError
    from zonda.data.sources import SourceError
    from zonda.data.validation import SnapshotValidationError
    from zonda.integrity import IntegrityError
    from zonda.params import ParamsError
    from zonda.registry.errors import RegistryError
    from zonda.snapshot_reader import SnapshotReadError
    from zonda.snapshot_store import SnapshotStoreError
    from zonda.tracking import TrackingServerError
    from zonda.training.errors import TrainingInputError

    errors: tuple[type[BaseException], ...] = (
        ParamsError, SnapshotValidationError, SourceError, FileNotFoundError, RegistryError, TrainingInputError,
        SnapshotStoreError, TrackingServerError, IntegrityError, ChunkReadError, SnapshotReadError,
    )
    # The graph and saved models are torch code: where torch is not installed (the zonda-data image)
    # nothing can raise their errors.
    if importlib.util.find_spec("torch") is not None:
        from zonda.graph import GraphCoverageError
        from zonda.models.saved import SavedModelError

        errors += (GraphCoverageError, SavedModelError)
    return errors


def _fetch_alias(argv: list[str]) -> list[str]:
    """``snapshot fetch ...`` -> ``snapshot-fetch ...`` (``zonda snapshot`` itself takes free overrides)."""
    words = [i for i, word in enumerate(argv) if not word.startswith("-")]
    if len(words) >= 2 and argv[words[0]] == "snapshot" and argv[words[0] + 1] == "fetch":
        return argv[: words[0]] + [FETCH_COMMAND] + argv[words[0] + 2 :]
    return argv


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_fetch_alias(list(sys.argv[1:] if argv is None else argv)))
    if args.verbose:
        os.environ[VERBOSE_ENV] = "1"  # every message on the console, in child processes too (zonda.console)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    func: Callable[[argparse.Namespace], None] = args.func
    from zonda.files import DiskFullError
    from zonda.tracking import TrackingServerLost

    try:
        func(args)
    except _bad_input_errors() as exc:
        print(f"zonda {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except DiskFullError as exc:  # not bad input, but a fault with one clear cause: no traceback
        print(f"zonda {args.command}: error: {exc.strerror}", file=sys.stderr)
        return EXIT_FAULT
    except TrackingServerLost as exc:  # a fault with one clear cause (what is kept locally is in the message)
        print(f"zonda {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAULT
    return 0


if __name__ == "__main__":
    sys.exit(main())
