"""CI check of built zonda images: user, labels, command, no git warnings, and the data image's size budget.

    python .ci/check_images.py --engine podman --budget-mb 2700 --revision <git sha> DATA_IMAGE TRAIN_IMAGE

Prints each image's size, its five largest layers and, since the dependencies are one layer, the
eight largest packages in it (the README's table comes from this output); exits 1 naming each image
and property that is wrong. The size budget applies to the data image.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from zonda.k8s.trainjob import IMAGE_UID

MB = 1_000_000


def engine_json(engine: str, *args: str) -> object:
    return json.loads(subprocess.run([engine, *args], check=True, capture_output=True, text=True).stdout)


def check(engine: str, image: str, *, revision: str, budget_mb: int | None) -> list[str]:
    """What is wrong with ``image`` (empty when nothing); prints its size and largest layers."""
    problems = []
    (info,) = engine_json(engine, "image", "inspect", image)
    config = info.get("Config", {})
    size_mb = info["Size"] / MB
    print(f"{image}: {size_mb:,.0f} MB" + (f" (budget {budget_mb:,} MB)" if budget_mb else ""))
    layers = engine_json(engine, "history", "--format", "json", image)
    for layer in sorted(layers, key=lambda layer: -layer.get("size", 0))[:5]:
        print(f"  {layer.get('size', 0) / MB:8,.0f} MB  {layer.get('CreatedBy', layer.get('createdBy', ''))[:110]}")
    site = subprocess.run(
        [engine, "run", "--rm", image, "sh", "-c",
         'cd "$(python3 -c "import sysconfig; print(sysconfig.get_paths()[\'purelib\'])")" && du -sm -- * | sort -rn | head -n 8'],
        capture_output=True, text=True,
    )
    print("  largest packages: " + ", ".join(f"{name} {mb} MB" for mb, name in (line.split("\t") for line in site.stdout.splitlines())))
    if budget_mb and size_mb > budget_mb:
        problems.append(f"{size_mb:,.0f} MB is over the {budget_mb:,} MB budget")
    if config.get("User", "").split(":")[0] != str(IMAGE_UID):
        problems.append(f"runs as user {config.get('User')!r}, not {IMAGE_UID}")
    labels = config.get("Labels") or {}
    if labels.get("org.opencontainers.image.revision") != revision:
        problems.append(f"label org.opencontainers.image.revision={labels.get('org.opencontainers.image.revision')!r}, not {revision}")
    if config.get("Entrypoint"):
        problems.append(f"has ENTRYPOINT {config['Entrypoint']}: KFP's `sh -c` command would become its arguments")
    # KFP's command runs as given, as the image's user, and MLflow's import prints no GitPython warning.
    run = subprocess.run(
        [engine, "run", "--rm", image, "sh", "-c", "python3 -c 'import mlflow, zonda.params' && zonda --help > /dev/null && id -u"],
        capture_output=True, text=True,
    )
    if run.returncode != 0:
        problems.append(f"`sh -c` in the image failed: {run.stderr.strip()[-300:]}")
    elif run.stdout.strip() != str(IMAGE_UID):
        problems.append(f"commands run as uid {run.stdout.strip()}, not {IMAGE_UID}")
    if "git" in run.stderr.lower():
        problems.append(f"importing mlflow warns about git: {run.stderr.strip()[:300]}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", default="podman")
    parser.add_argument("--budget-mb", type=int, required=True, help="size budget of the data image (the first)")
    parser.add_argument("--revision", required=True, help="the git commit the images must be labelled with")
    parser.add_argument("data_image")
    parser.add_argument("train_image")
    args = parser.parse_args(argv)
    failed = False
    for image, budget in ((args.data_image, args.budget_mb), (args.train_image, None)):
        for problem in check(args.engine, image, revision=args.revision, budget_mb=budget):
            print(f"FAIL {image}: {problem}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
