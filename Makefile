# The two commands of the README:  `make run`  (the main job)  and  `make test`.
# Everything else here is a step of those two.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# kubeflow: so that the test compiling the pipeline for Kubeflow runs (it skips without kfp).
EXTRAS ?= cpu,dev,kubeflow
# Where `make run` gets the data when data/raw is absent and `dvc pull` finds nothing:
# a folder, a zip or a URL. Default: the public GitHub archive of the Kaggle dataset.
BRAINTUMOR_DATA_SOURCE ?=
CONFIG ?= configs/cpu.yaml
PYTEST_ARGS ?=
# Test processes (pytest-xdist): each test file runs whole in one of them, so a file's
# module fixtures (one smoke run shared by its tests) are built once. auto = one per core.
TEST_WORKERS ?= auto

# The venv's commands (braintumor, dvc) first on PATH, also for DVC stage commands.
export PATH := $(abspath $(BIN)):$(PATH)
export ZENML_ANALYTICS_OPT_IN ?= false
export BENTOML_DO_NOT_TRACK ?= true
export TF_CPP_MIN_LOG_LEVEL ?= 2
export KERAS_BACKEND ?= tensorflow

.PHONY: help setup zenml data run test lint format browser dashboard clean-data

help:
	@echo "make run    set up, get the data, run the training pipeline ($(CONFIG))"
	@echo "make test   lint and run the test suite"

# A virtual environment with the project installed (redone when pyproject.toml changes).
setup: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	@touch $@

# data/raw from DVC's remote when it has it, else from BRAINTUMOR_DATA_SOURCE; then the
# DVC stages (CLAHE) and a push to the configured remote.
data: setup
	@if [ -f data/raw/manifest.csv ]; then \
		echo "data/raw is present"; \
	elif $(BIN)/dvc pull --quiet data/raw.dvc 2>/dev/null && [ -f data/raw/manifest.csv ]; then \
		echo "data/raw pulled from the DVC remote"; \
	else \
		$(BIN)/braintumor data ingest $(BRAINTUMOR_DATA_SOURCE); \
	fi
	$(BIN)/dvc add --quiet data/raw
	$(BIN)/dvc repro
	$(BIN)/dvc push --quiet || echo "dvc push failed: the data stays local (check 'dvc remote list')"

# ZenML: this folder is the repository root (.zen); the store is ZenML's local SQLite one
# unless ZENML_STORE_URL / ZENML_CONFIG_PATH point elsewhere (e.g. a ZenML server in CI).
zenml: setup
	$(BIN)/zenml init >/dev/null

# The main job: data, then the training pipeline with $(CONFIG). The run's HTML report goes
# to reports/; a model that passes the gate is promoted and packaged as a Bento.
run: data zenml
	$(BIN)/braintumor train --config $(CONFIG)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Chromium for the web-page test (Debian package); tests skip with a reason without it.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
			|| echo "could not install chromium: browser tests will skip"; \
		else echo "chromium not installed and not root: browser tests will skip"; fi; }

test: setup browser lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The ZenML dashboard on http://127.0.0.1:$(DASHBOARD_PORT): runs, DAGs, artifacts, the run
# report and drift reports. No login on a local server; analytics off; Ctrl+C stops it.
DASHBOARD_PORT ?= 8237
dashboard: zenml
	$(BIN)/python -m braintumor_zenml.dashboard --port $(DASHBOARD_PORT)

clean-data:
	rm -rf data/raw data/clahe data/quarantine data/quarantine.csv data/audit
