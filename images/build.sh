#!/usr/bin/env bash
# Builds the zonda images, tagged with the git commit, and pushes them (`make images`, `make push`).
#
#   images/build.sh build   build $REGISTRY/zonda-<role>:$TAG for each of $ROLES
#   images/build.sh push    build what is missing, then push both to $REGISTRY
#   images/build.sh refs    only print the image references
#
# zonda-data      CPU image without torch: snapshot, statistics (and the MLflow run's tasks)
# zonda-train     CUDA image: graph, train (single pod or every node of a TrainJob/PyTorchJob), evaluate, register
# zonda-tracking  the MLflow tracking server of charts/zonda (MLflow with its UI, Postgres, S3, basic auth)
#
# Environment:
#   REGISTRY       registry and namespace, e.g. ghcr.io/my-org (required for push; default: local "zonda")
#   TAG            image tag (default: the 12-character git SHA, with -dirty when tracked files changed)
#   ROLES          images to build (default: "data train tracking")
#   BUILDER        docker, podman or buildah (default: docker when `docker info` answers, else podman,
#                  else buildah)
#   PLATFORM       target platform (default: linux/amd64)
#   PYTHON_BASE, TORCH_BASE, TORCH_CPU_INDEX
#                  override images/base-images.env for this build (e.g. the base from
#                  images/base/bootstrap.sh, a registry mirror, a local wheel index)
#   TRAIN_DEVICE   cuda (default: the train image on TORCH_BASE) or cpu (on a CPU torch base built
#                  from images/base/torch-cpu.Dockerfile on PYTHON_BASE, for CPU runs and CI)
#   CA_BUNDLE      CA bundle pip must trust inside the build (a TLS-intercepting proxy), e.g.
#                  /etc/ssl/certs/ca-certificates.crt: passed as the build secret `ca`, never a layer
#   PIP_CONFIG     pip configuration file for the build (a private index): the build secret `pipconf`
#   BUILD_NETWORK  network mode of the build's RUN steps, e.g. host (to reach a wheel index on 127.0.0.1)
#   BUILD_FLAGS    further flags for the builder, split on spaces (e.g. --no-cache)
#
# Build logs go to stderr; stdout carries only the params overrides that select the pipeline's images, e.g.
#   runtime.images.data=ghcr.io/my-org/zonda-data:0123456789ab
set -euo pipefail

die() { echo "images/build.sh: $*" >&2; exit 1; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)

action=${1:-build}
case "$action" in
  build|push|refs) ;;
  *) die "unknown action '$action' (use build, push or refs)" ;;
esac

# ------------------------------------------------------------------------------ inputs
registry_given=${REGISTRY:+yes}
registry=${REGISTRY:-zonda}
registry=${registry%/}
roles=${ROLES:-data train tracking}
platform=${PLATFORM:-linux/amd64}

if [[ "$action" == push && -z "$registry_given" ]]; then
  die "push needs REGISTRY, e.g. make push REGISTRY=ghcr.io/my-org (images go to \$REGISTRY/zonda-<role>:<tag>)"
fi

# Base images and the torch pin: one place each (images/base-images.env, pyproject.toml); the
# environment may override the base images for one build.
python_base="" torch_base="" torch_cpu_index=""
while IFS= read -r line || [[ -n "$line" ]]; do
  [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
  [[ "$line" =~ ^([A-Z_][A-Z0-9_]*)=([^[:space:]]+)$ ]] || die "images/base-images.env: cannot read line: $line"
  case "${BASH_REMATCH[1]}" in
    PYTHON_BASE) python_base=${BASH_REMATCH[2]} ;;
    TORCH_BASE) torch_base=${BASH_REMATCH[2]} ;;
    TORCH_CPU_INDEX) torch_cpu_index=${BASH_REMATCH[2]} ;;
    *) die "images/base-images.env: unknown key ${BASH_REMATCH[1]}" ;;
  esac
done < "$root/images/base-images.env"
[[ -n "$python_base" && -n "$torch_base" && -n "$torch_cpu_index" ]] \
  || die "images/base-images.env must set PYTHON_BASE, TORCH_BASE and TORCH_CPU_INDEX"
python_base=${PYTHON_BASE:-$python_base}
torch_base=${TORCH_BASE:-$torch_base}
torch_cpu_index=${TORCH_CPU_INDEX:-$torch_cpu_index}
train_device=${TRAIN_DEVICE:-cuda}
case "$train_device" in cuda|cpu) ;; *) die "TRAIN_DEVICE must be cuda or cpu, not '$train_device'" ;; esac
for file_var in CA_BUNDLE PIP_CONFIG; do
  if [[ -n "${!file_var:-}" && ! -r "${!file_var}" ]]; then
    die "$file_var=${!file_var} is not a readable file"
  fi
done

torch_version=$(sed -n 's/^[[:space:]]*"torch==\([^"]*\)".*/\1/p' "$root/pyproject.toml" | head -n 1)
[[ -n "$torch_version" ]] || die "pyproject.toml pins no torch version (expected a \"torch==X.Y.Z\" dependency)"
version=$(sed -n 's/^version[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$root/pyproject.toml" | head -n 1)

if git -C "$root" rev-parse --git-dir > /dev/null 2>&1; then
  git_sha=$(git -C "$root" rev-parse HEAD)
  default_tag=$(git -C "$root" rev-parse --short=12 HEAD)
  if [[ -n "$(git -C "$root" status --porcelain --untracked-files=no)" ]]; then
    default_tag="$default_tag-dirty"
  fi
else
  git_sha=unknown
  default_tag=""
fi
tag=${TAG:-$default_tag}
[[ -n "$tag" ]] || die "not a git checkout: set TAG"
[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "TAG '$tag' is not a valid image tag"

ref_of() { echo "$registry/zonda-$1:$tag"; }

for role in $roles; do
  [[ -f "$root/images/$role/Dockerfile" ]] || die "no images/$role/Dockerfile (ROLES=$roles)"
done

# The pipeline's images are params (stdout); the tracking image is the chart's mlflow.image (stderr).
print_refs() {
  for role in $roles; do
    if [[ "$role" == tracking ]]; then
      echo "charts/zonda values: mlflow.image.repository=$registry/zonda-tracking mlflow.image.tag=$tag" >&2
    else
      echo "runtime.images.$role=$(ref_of "$role")"
    fi
  done
}

if [[ "$action" == refs ]]; then
  print_refs
  exit 0
fi

# ------------------------------------------------------------------------------ builder
builder=${BUILDER:-}
if [[ -z "$builder" ]]; then
  if command -v docker > /dev/null 2>&1 && docker info > /dev/null 2>&1; then
    builder=docker
  elif command -v podman > /dev/null 2>&1; then
    builder=podman
  elif command -v buildah > /dev/null 2>&1; then
    builder=buildah
  else
    die "no Docker engine answers (docker info) and neither podman nor buildah is installed"
  fi
fi
case "$builder" in docker|podman|buildah) ;; *) die "BUILDER must be docker, podman or buildah, not '$builder'" ;; esac

if [[ "$train_device" == cpu ]]; then
  torch_base="$registry/zonda-torch-cpu-base:$torch_version"
fi
pins=("PYTHON_BASE=$python_base")
if [[ " $roles " == *" train "* && "$train_device" == cuda ]]; then
  pins+=("TORCH_BASE=$torch_base")
fi
for pinned in "${pins[@]}"; do
  [[ "$pinned" == *@sha256:* || "$pinned" == *=localhost/* ]] \
    || echo "images/build.sh: warning: $pinned is pinned by tag only; append its @sha256 digest in images/base-images.env" >&2
done

# Flags every build gets: secrets (mounted for single RUN steps, never stored), network, extra flags.
common_flags=(--platform "$platform")
[[ -n "${CA_BUNDLE:-}" ]] && common_flags+=(--secret "id=ca,src=$CA_BUNDLE")
[[ -n "${PIP_CONFIG:-}" ]] && common_flags+=(--secret "id=pipconf,src=$PIP_CONFIG")
[[ -n "${BUILD_NETWORK:-}" ]] && common_flags+=(--network "$BUILD_NETWORK")
if [[ -n "${BUILD_FLAGS:-}" ]]; then
  read -r -a extra_flags <<< "$BUILD_FLAGS"
  common_flags+=("${extra_flags[@]}")
fi

label_args=(
  --build-arg "GIT_SHA=$git_sha"
  --build-arg "VERSION=$version"
  --build-arg "BUILD_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
)

# The build args each Dockerfile declares, and nothing else.
role_args() {
  case "$1" in
    data|tracking) echo "PYTHON_BASE=$python_base" ;;
    train) echo "TORCH_BASE=$torch_base TORCH_VERSION=$torch_version TRAIN_DEVICE=$train_device" ;;
    torch-cpu-base) echo "PYTHON_BASE=$python_base TORCH_CPU_INDEX=$torch_cpu_index TORCH_VERSION=$torch_version" ;;
  esac
}

image_exists() {
  case "$builder" in
    docker) docker image inspect "$1" > /dev/null 2>&1 ;;
    podman) podman image exists "$1" ;;
    buildah) buildah inspect --type image "$1" > /dev/null 2>&1 ;;
  esac
}

# build_image REF DOCKERFILE CONTEXT IGNOREFILE ROLE
build_image() {
  local ref=$1 file=$2 context=$3 ignorefile=$4 role=$5 args=() arg
  for arg in $(role_args "$role"); do args+=(--build-arg "$arg"); done
  [[ "$role" == torch-cpu-base ]] || args+=("${label_args[@]}")
  echo "==> building $ref with $builder" >&2
  case "$builder" in
    docker)
      # BuildKit reads <Dockerfile>.dockerignore (the context allowlist).
      if docker buildx version > /dev/null 2>&1; then
        docker buildx build --load "${common_flags[@]}" --file "$file" --tag "$ref" "${args[@]}" "$context" >&2
      else
        DOCKER_BUILDKIT=1 docker build "${common_flags[@]}" --file "$file" --tag "$ref" "${args[@]}" "$context" >&2
      fi ;;
    podman|buildah)
      local ignore=()
      [[ -n "$ignorefile" ]] && ignore=(--ignorefile "$ignorefile")
      "$builder" build --layers "${common_flags[@]}" --file "$file" "${ignore[@]}" --tag "$ref" "${args[@]}" "$context" >&2 ;;
  esac
}

build_one() {
  local role=$1
  if [[ "$role" == train && "$train_device" == cpu ]]; then
    build_image "$torch_base" images/base/torch-cpu.Dockerfile images/base "" torch-cpu-base
  fi
  build_image "$(ref_of "$role")" "images/$role/Dockerfile" . "images/$role/Dockerfile.dockerignore" "$role"
}

push_one() {
  local ref
  ref=$(ref_of "$1")
  echo "==> pushing $ref" >&2
  case "$builder" in
    docker|podman) "$builder" push "$ref" >&2 ;;
    buildah) buildah push "$ref" "docker://$ref" >&2 ;;
  esac
}

for role in $roles; do
  if [[ "$action" == build ]] || ! image_exists "$(ref_of "$role")"; then
    build_one "$role"
  fi
  if [[ "$action" == push ]]; then
    push_one "$role"
  fi
done

echo "zonda images ($action, tag $tag); params overrides:" >&2
print_refs
