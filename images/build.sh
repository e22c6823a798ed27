#!/usr/bin/env bash
# Builds the zonda images, tagged with the git commit, and pushes them (`make images`, `make push`).
#
#   images/build.sh build   build $REGISTRY/zonda-data:$TAG and $REGISTRY/zonda-train:$TAG
#   images/build.sh push    build what is missing, then push both to $REGISTRY
#   images/build.sh refs    only print the image references
#
# zonda-data  CPU image: snapshot, statistics, graph, evaluate, register, and the MLflow server
# zonda-train CUDA image: training (single pod or every node of a TrainJob/PyTorchJob)
#
# Environment:
#   REGISTRY  registry and namespace, e.g. ghcr.io/my-org (required for push; default: local "zonda")
#   TAG       image tag (default: the 12-character git SHA, with -dirty when tracked files changed)
#   ROLES     images to build (default: "data train")
#   BUILDER   docker or buildah (default: docker when `docker info` answers, else buildah)
#   PLATFORM  target platform (default: linux/amd64)
#
# The last lines printed are the params overrides that select the images, e.g.
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
roles=${ROLES:-data train}
platform=${PLATFORM:-linux/amd64}

if [[ "$action" == push && -z "$registry_given" ]]; then
  die "push needs REGISTRY, e.g. make push REGISTRY=ghcr.io/my-org (images go to \$REGISTRY/zonda-<role>:<tag>)"
fi

# Base images and the torch pin: one place each (images/base-images.env, pyproject.toml).
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

print_refs() {
  for role in $roles; do
    echo "runtime.images.$role=$(ref_of "$role")"
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
  elif command -v buildah > /dev/null 2>&1; then
    builder=buildah
  else
    die "no Docker engine answers (docker info) and buildah is not installed"
  fi
fi
case "$builder" in docker|buildah) ;; *) die "BUILDER must be docker or buildah, not '$builder'" ;; esac

for pinned in "PYTHON_BASE=$python_base" "TORCH_BASE=$torch_base"; do
  [[ "$pinned" == *@sha256:* ]] || echo "images/build.sh: warning: $pinned is pinned by tag only; append its @sha256 digest in images/base-images.env" >&2
done

build_args=(
  --build-arg "PYTHON_BASE=$python_base"
  --build-arg "TORCH_BASE=$torch_base"
  --build-arg "TORCH_CPU_INDEX=$torch_cpu_index"
  --build-arg "TORCH_VERSION=$torch_version"
  --build-arg "GIT_SHA=$git_sha"
  --build-arg "VERSION=$version"
  --build-arg "BUILD_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
)

image_exists() {
  if [[ "$builder" == docker ]]; then
    docker image inspect "$1" > /dev/null 2>&1
  else
    buildah inspect --type image "$1" > /dev/null 2>&1
  fi
}

build_one() {
  local role=$1 ref
  ref=$(ref_of "$role")
  echo "==> building $ref with $builder" >&2
  if [[ "$builder" == docker ]]; then
    # BuildKit reads images/<role>/Dockerfile.dockerignore (the context allowlist).
    if docker buildx version > /dev/null 2>&1; then
      docker buildx build --load --platform "$platform" --file "images/$role/Dockerfile" \
        --tag "$ref" "${build_args[@]}" .
    else
      DOCKER_BUILDKIT=1 docker build --platform "$platform" --file "images/$role/Dockerfile" \
        --tag "$ref" "${build_args[@]}" .
    fi
  else
    buildah build --layers --platform "$platform" --file "images/$role/Dockerfile" \
      --ignorefile "images/$role/Dockerfile.dockerignore" --tag "$ref" "${build_args[@]}" .
  fi
}

push_one() {
  local ref
  ref=$(ref_of "$1")
  echo "==> pushing $ref" >&2
  if [[ "$builder" == docker ]]; then
    docker push "$ref"
  else
    buildah push "$ref" "docker://$ref"
  fi
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
