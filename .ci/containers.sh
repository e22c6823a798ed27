#!/usr/bin/env bash
# CI: the pipeline with every task in its image (`make test-containers`; not in .ci/run yet: README "Images and container runs").
#
#   1. installs podman, runc and debootstrap from Debian's registry (when missing)
#   2. bootstraps the Python base from the Debian mirror (images/base/bootstrap.sh; kept between runs)
#   3. builds zonda-data, a CPU zonda-train and zonda-tracking with podman (layer cache kept between
#      runs), checks their user, labels, command and the data image's size budget, and that the
#      tracking image's MLflow server answers
#   4. runs params/ci.yaml in this venv and with KFP's DockerRunner on podman's socket, and asserts the
#      same snapshot ID, statistics hash and graph hash, and a registered model version
#   5. checks that an output root the image's user cannot write stops the run with a clear error
#
# Runs as root (debootstrap, rootful podman). Works behind a TLS-intercepting proxy (the host's CA
# bundle is a build secret) and without Docker Hub. Prints the time each part takes.
#
# Environment:
#   TORCH_CPU_INDEX   wheel index with the CPU torch wheel (default: images/base-images.env's when it
#                     answers, else a PEP 503 index on 127.0.0.1 serving the wheel pip finds here)
#   CA_BUNDLE         CA bundle for the builds (default: /etc/ssl/certs/ca-certificates.crt if present)
#   DATA_IMAGE_BUDGET_MB  size budget of zonda-data in MB (default 1600, the goal of issue 18; see README)
#   TORCH_INDEX_PORT  port of the local wheel index on 127.0.0.1 (default 8765)
#   WORK              scratch directory (default: /var/tmp/zonda-ci-containers; emptied each run)
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
PY=${PY:-$root/.venv/bin/python}
work=${WORK:-/var/tmp/zonda-ci-containers}
budget_mb=${DATA_IMAGE_BUDGET_MB:-1600}
tag=ci
export PYTHONUNBUFFERED=1

die() { echo ".ci/containers.sh: $*" >&2; exit 1; }
started=$SECONDS
timings=()
part() { part_name=$1; part_start=$SECONDS; echo "==> $1" >&2; }
done_part() { timings+=("$(printf '%-44s %4d s' "$part_name" $((SECONDS - part_start)))"); }
index_pid=""
finish() {
  [[ -n "$index_pid" ]] && kill "$index_pid" 2> /dev/null
  images/podman.sh stop
  echo "---- .ci/containers.sh timings" >&2
  printf '%s\n' "${timings[@]}" >&2
  printf '%-44s %4d s\n' total $((SECONDS - started)) >&2
}
trap finish EXIT

[[ $(id -u) -eq 0 ]] || die "runs as root (debootstrap, rootful podman), as CI does"

part "install podman, runc, debootstrap"
missing=()
for pkg in podman runc debootstrap; do
  dpkg-query -W -f='${Status}' "$pkg" 2> /dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    uidmap netavark aardvark-dns containernetworking-plugins fuse-overlayfs > /dev/null
fi
eval "$(images/podman.sh env)"
done_part

part "bootstrap the Python base (cached)"
python_base=$(images/base/bootstrap.sh)
done_part

part "build zonda-data, CPU zonda-train, zonda-tracking"
torch_version=$(sed -n 's/^[[:space:]]*"torch==\([^"]*\)".*/\1/p' pyproject.toml | head -n 1)
default_index=$(sed -n 's/^TORCH_CPU_INDEX=//p' images/base-images.env)
index=${TORCH_CPU_INDEX:-}
build_network=""
if [[ -z "$index" ]] && curl --silent --fail --max-time 10 "$default_index/torch/" > /dev/null 2>&1; then
  index=$default_index
fi
if [[ -z "$index" ]]; then
  # A PEP 503 index with the one wheel pip finds on this machine (its find-links or cache).
  wheels="$work-torch-index/torch"
  mkdir -p "$wheels"
  ls "$wheels"/torch-"$torch_version"+cpu-*.whl > /dev/null 2>&1 \
    || "$PY" -m pip download --quiet --no-deps --dest "$wheels" "torch==$torch_version+cpu" \
    || die "no CPU torch $torch_version wheel: set TORCH_CPU_INDEX"
  # A fixed port: the index URL is a build arg of the torch step, so a new port each run would
  # rebuild that layer and all that follow it (a cold build) instead of using the layer cache.
  port=${TORCH_INDEX_PORT:-8765}
  "$PY" -m http.server "$port" --bind 127.0.0.1 --directory "$work-torch-index" > "$work-torch-index.log" 2>&1 &
  index_pid=$!
  for _ in $(seq 50); do
    curl --silent --fail --max-time 2 "http://127.0.0.1:$port/torch/" > /dev/null 2>&1 && break
    kill -0 "$index_pid" 2> /dev/null || die "the local wheel index did not start on port $port (set TORCH_INDEX_PORT; log: $work-torch-index.log)"
    sleep 0.2
  done
  index="http://127.0.0.1:$port"
  build_network=host  # the builds reach 127.0.0.1 on the host's network
fi
ca=${CA_BUNDLE:-}
[[ -z "$ca" && -r /etc/ssl/certs/ca-certificates.crt ]] && ca=/etc/ssl/certs/ca-certificates.crt
refs=$(BUILDER=podman ROLES="data train tracking" TAG=$tag PYTHON_BASE="$python_base" TORCH_CPU_INDEX="$index" TRAIN_DEVICE=cpu \
  CA_BUNDLE="$ca" BUILD_NETWORK="$build_network" nice -n 5 bash images/build.sh build)
data_image=$(sed -n 's/^runtime\.images\.data=//p' <<< "$refs")
train_image=$(sed -n 's/^runtime\.images\.train=//p' <<< "$refs")
tracking_image=zonda/zonda-tracking:$tag  # the chart's image: build.sh names it on stderr, not as a param
done_part

part "check the images (user, labels, command, size; the MLflow server answers)"
"$PY" .ci/check_images.py --engine podman --budget-mb "$budget_mb" --revision "$(git rev-parse HEAD)" \
  "$data_image" "$train_image" --tracking-image "$tracking_image"
done_part

rm -rf "$work"
mkdir -p "$work/venv" "$work/containers" "$work/unwritable" "$work/containers-remote"

part "params/ci.yaml in the venv"
nice -n 5 "$PY" -m pipelines.run run --params params/ci.yaml "runtime.output_root=$work/venv" \
  "runtime.dvc_remote=$work/venv-remote" > "$work/venv.log" 2>&1 \
  || { tail -n 40 "$work/venv.log"; die "the venv run failed (log: $work/venv.log)"; }
done_part

part "params/ci.yaml in containers (DockerRunner, podman)"
eval "$(images/podman.sh service)"
# the tasks run as the images' user, as on the cluster: it owns the output root and the DVC remote
chown 10001:10001 "$work/containers" "$work/containers-remote"
nice -n 5 "$PY" -m pipelines.run run --runner docker --params params/ci.yaml "runtime.output_root=$work/containers" \
  "runtime.dvc_remote=$work/containers-remote" \
  "runtime.images.data=$data_image" "runtime.images.train=$train_image" > "$work/containers.log" 2>&1 \
  || { tail -n 60 "$work/containers.log"; die "the container run failed (log: $work/containers.log)"; }
done_part

part "compare the runs; the unwritable output root"
"$PY" .ci/check_container_run.py --venv "$work/venv" --containers "$work/containers" \
  --containers-remote "$work/containers-remote"
set +e
"$PY" -m pipelines.run run --runner docker --params params/ci.yaml "runtime.output_root=$work/unwritable" \
  "runtime.dvc_remote=$work/containers-remote" \
  "runtime.images.data=$data_image" "runtime.images.train=$train_image" > "$work/unwritable.log" 2>&1
status=$?
set -e
if [[ $status -ne 2 ]] || ! grep -q "which cannot write $work/unwritable" "$work/unwritable.log"; then
  cat "$work/unwritable.log"
  die "an output root uid 10001 cannot write did not stop the run (exit $status)"
fi
[[ -z "$(ls -A "$work/unwritable")" ]] || die "the refused run left files in $work/unwritable"
echo "an unwritable output root: $(grep -o 'the tasks of .*cannot write [^:]*' "$work/unwritable.log")" >&2
done_part
