"""CI check of built zonda images: user, labels, command, no git warnings, and the data image's size budget.

    python .ci/check_images.py --engine podman --budget-mb 2700 --revision <git sha> DATA_IMAGE TRAIN_IMAGE \
        [--tracking-image TRACKING_IMAGE]

Prints each image's size, its five largest layers and, since the dependencies are one layer, the
eight largest packages in it (the README's table comes from this output); exits 1 naming each image
and property that is wrong. The size budget applies to the data image. The tracking image (the chart's
MLflow server) is started with its own command on a sqlite store and must answer MLflow's /health and
serve its UI.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
import urllib.request

from zonda.k8s.trainjob import IMAGE_UID

MB = 1_000_000


def engine_json(engine: str, *args: str) -> object:
    return json.loads(subprocess.run([engine, *args], check=True, capture_output=True, text=True).stdout)


def describe(engine: str, image: str, *, revision: str, budget_mb: int | None) -> tuple[dict, list[str]]:
    """Prints ``image``'s size, largest layers and packages; returns its config and what is wrong with its
    size, user, labels and entrypoint."""
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
    return config, problems


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def check_tracking(engine: str, image: str, *, revision: str, wait_s: float = 120.0) -> list[str]:
    """What is wrong with the tracking image: as :func:`describe`, then its own command (``mlflow server``)
    on a sqlite store must answer /health and serve the MLflow UI within ``wait_s``."""
    _, problems = describe(engine, image, revision=revision, budget_mb=None)
    port = _free_port()
    started = subprocess.run(
        [engine, "run", "--detach", "--rm", "--network", "host", image, "mlflow", "server", "--host", "127.0.0.1",
         "--port", str(port), "--backend-store-uri", "sqlite:////tmp/mlflow.db", "--default-artifact-root", "/tmp/artifacts"],
        capture_output=True, text=True,
    )
    if started.returncode != 0:
        return [*problems, f"`mlflow server` did not start: {started.stderr.strip()[-300:]}"]
    container = started.stdout.strip()
    try:
        deadline, health, last = time.monotonic() + wait_s, None, ""
        while time.monotonic() < deadline and health is None:
            try:
                health = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).read().decode().strip()
            except OSError as exc:
                last = str(exc)
                time.sleep(1)
        if health is None:
            logs = subprocess.run([engine, "logs", container], capture_output=True, text=True)
            return [*problems, f"`mlflow server` did not answer /health in {wait_s:.0f} s ({last}): {logs.stderr.strip()[-300:]}"]
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read().decode()
        print(f"  mlflow server in {image}: /health {health!r}, UI page {len(page):,} bytes")
        if health != "OK":
            problems.append(f"/health answered {health!r}, not 'OK'")
        if "<title>" not in page or "mlflow" not in page.lower():
            problems.append("the server's / is not the MLflow UI")
    finally:
        subprocess.run([engine, "stop", "--time", "2", container], capture_output=True)
    return problems


def check(engine: str, image: str, *, revision: str, budget_mb: int | None) -> list[str]:
    """What is wrong with a pipeline image ``image`` (empty when nothing): :func:`describe`, then KFP's command."""
    _, problems = describe(engine, image, revision=revision, budget_mb=budget_mb)
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
    parser.add_argument("--tracking-image", default=None, help="the chart's MLflow server image (zonda-tracking)")
    args = parser.parse_args(argv)
    found = {}
    for image, budget in ((args.data_image, args.budget_mb), (args.train_image, None)):
        found[image] = check(args.engine, image, revision=args.revision, budget_mb=budget)
    if args.tracking_image:
        found[args.tracking_image] = check_tracking(args.engine, args.tracking_image, revision=args.revision)
    for image, problems in found.items():
        for problem in problems:
            print(f"FAIL {image}: {problem}", file=sys.stderr)
    return 1 if any(found.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
