"""``python -m zonda.k8s``: render the multi-node training manifest for a params preset, or validate YAML.

    python -m zonda.k8s render --params params/aifs.yaml --job-name aifs-train-1 \\
        [--set training.num_nodes=4 ...] [--env KEY=VALUE ...] -- zonda train --params /data/params.yaml
    python -m zonda.k8s validate rendered.yaml       # same as python -m zonda.k8s.validate
"""

from __future__ import annotations

import argparse
import sys

import yaml

from zonda.k8s import validate as _validate
from zonda.k8s.trainjob import distributed_job_manifest
from zonda.params import ParamsError, load_params


def _render(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m zonda.k8s render")
    parser.add_argument("--params", required=True, help="params YAML preset")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted params override (repeatable)")
    parser.add_argument("--job-name", required=True)
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="environment variable for the training container (repeatable)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the training command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--env {item!r}: expected KEY=VALUE")
        env[key] = value
    try:
        params = load_params(args.params, args.overrides)
        manifest = distributed_job_manifest(params, job_name=args.job_name, command=command, env=env)
    except (ParamsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(yaml.safe_dump(manifest, sort_keys=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("render", "validate"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "render":
        return _render(argv[1:])
    return _validate.main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
