# zonda: the two commands a fresh machine needs are `make run-pipeline` and `make test`.
# Each installs what it needs into .venv first.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PARAMS ?= params/local.yaml
OVERRIDES ?=
WAIT ?=
SUMMARY ?=
RUNNER ?= subprocess
CONTAINER_USER ?= image
STAMP := $(VENV)/.zonda-installed
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed
export PATH := $(abspath $(VENV))/bin:$(PATH)
export PYTHONUNBUFFERED := 1

.PHONY: install run-pipeline compile test test-slow test-faults test-containers bench skill repro images push promote clean help

help:
	@echo "make run-pipeline [PARAMS=params/local.yaml] [KFP_HOST=...] [WAIT=1]  run the pipeline (KFP local runner without KFP_HOST)"
	@echo "make run-pipeline RUNNER=docker OVERRIDES='runtime.images.data=..'  every task in its image (docker or podman socket)"
	@echo "make test                 fast test suite (what CI runs)"
	@echo "make test-slow            the slow tests too"
	@echo "make test-faults          the slow fault-injection cases (kill -9 trials, MLflow outages; CI runs it)"
	@echo "make test-containers      (root) build the images with podman, run params/ci.yaml in them, compare"
	@echo "make bench                benchmarks (speed goals live here, not in tests)"
	@echo "make skill [SKILL_PARAMS=params/skill.yaml]  the skill preset end to end: scores vs every baseline, time per stage"
	@echo "make compile [PARAMS=..]  compile the KFP pipeline to IR YAML under artifacts/"
	@echo "make repro                dvc repro (stages in dvc.yaml, local DVC remote)"
	@echo "make images | push        build / push the component images (REGISTRY=...)"
	@echo "make promote MODEL=.. VERSION=.. REASON=..  manual promotion to champion"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run-pipeline: install
	$(PY) -m pipelines.run run --params $(PARAMS) --runner $(RUNNER) --container-user $(CONTAINER_USER) \
		$(if $(filter-out 0,$(WAIT)),--wait) $(if $(SUMMARY),--summary $(SUMMARY)) $(OVERRIDES)

compile: install
	$(PY) -m pipelines.run compile --params $(PARAMS) $(OVERRIDES)

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

test-faults: install
	$(PY) -m pytest -q -m faults tests/faults

# As root: builds the images with podman and runs params/ci.yaml in them (see .ci/containers.sh).
test-containers: install
	PY=$(abspath $(PY)) bash .ci/containers.sh

# The peers (ECMWF anemoi-graphs/anemoi-models) live in their own venv: their newest
# releases need torch<2.11, so pip falls back to these pins next to torch 2.13.
$(BENCH_STAMP):
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check torch==2.13.0 anemoi-graphs==0.9.0 \
		anemoi-models==0.13.0 trimesh==4.12.2 netCDF4==1.7.2
	touch $(BENCH_STAMP)

bench: install $(BENCH_STAMP)
	$(PY) -m benchmarks

SKILL_PARAMS ?= params/skill.yaml
skill: install
	$(PY) -m benchmarks.skill --params $(SKILL_PARAMS) --out artifacts/skill-$(basename $(notdir $(SKILL_PARAMS))) $(OVERRIDES)

repro: install
	$(VENV)/bin/dvc repro

images:
	bash images/build.sh build

push:
	bash images/build.sh push

promote: install
	$(VENV)/bin/zonda promote $(MODEL) $(VERSION) --params $(PARAMS) --reason "$(REASON)"

clean:
	rm -rf artifacts .pytest_cache
