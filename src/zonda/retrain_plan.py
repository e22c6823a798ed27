"""Which presets the retraining workflow runs, and the data revision each reads.

``.github/workflows/retrain.yml`` runs this file as a script (Python and PyYAML
only, no zonda install) so that its trigger and the presets agree:

- a push that changes a preset (a new ``data.source.rev`` included) retrains that preset;
- a push that changes DVC-tracked data of this repository (a ``*.dvc`` file or
  ``dvc.lock``) retrains the presets whose ``data.source`` is a dvc source in this
  repository (``repo: .``), and only those: a preset reading a URL DVC does not
  track is not retrained by a data lock it does not read;
- a schedule retrains every preset; a manual dispatch the one asked for.

A preset with a dvc source in this repository is run with
``data.source.repo=<this repository's URL> data.source.rev=<the commit pushed>``,
so the run reads exactly the revision that triggered it, from a URL the cluster can clone.

    python3 src/zonda/retrain_plan.py --event push --changed "$(git diff --name-only A B)" \\
        --presets "params/aifs.yaml params/graphcast.yaml" --sha "$GITHUB_SHA" --repo-url URL
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

THIS_REPOSITORY = (".", "./", "")


def reads_this_repository(preset: str | Path) -> bool:
    """Whether the preset's ``data.source`` is a dvc source in the repository it lives in (``repo: .``)."""
    raw = yaml.safe_load(Path(preset).read_text()) or {}
    source = (raw.get("data") or {}).get("source") or {}
    return source.get("kind") == "dvc" and str(source.get("repo", "")).strip() in THIS_REPOSITORY


def is_data_change(path: str) -> bool:
    return path.endswith(".dvc") or Path(path).name == "dvc.lock"


def plan(
    *, event: str, changed: list[str], presets: list[str], requested: str | None, sha: str, repo_url: str
) -> list[dict[str, str]]:
    """``[{"params": preset, "data_overrides": "..."}]`` for the presets this event retrains."""
    if event == "workflow_dispatch":
        chosen = [requested] if requested else []
    elif event == "schedule":
        chosen = list(presets)
    else:
        data_changed = any(is_data_change(path) for path in changed)
        chosen = [p for p in presets if p in changed or (data_changed and reads_this_repository(p))]
    return [
        {
            "params": preset,
            "data_overrides": (f"data.source.repo={repo_url} data.source.rev={sha}" if reads_this_repository(preset) else ""),
        }
        for preset in chosen
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--event", required=True)
    parser.add_argument("--changed", default="", help="changed paths, whitespace-separated")
    parser.add_argument("--presets", default="", help="candidate presets, whitespace-separated")
    parser.add_argument("--requested", default=None, help="workflow_dispatch: the preset asked for")
    parser.add_argument("--sha", required=True)
    parser.add_argument("--repo-url", required=True)
    args = parser.parse_args(argv)
    if args.requested and not Path(args.requested).is_file():
        print(f"no such params file: {args.requested}", file=sys.stderr)
        return 1
    chosen = plan(
        event=args.event, changed=args.changed.split(), presets=args.presets.split(), requested=args.requested,
        sha=args.sha, repo_url=args.repo_url,
    )
    print(json.dumps(chosen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
