# The two commands of the README: `make demo` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME := $(CURDIR)

.PHONY: install system-deps demo test lint format ui ui-readonly mlflow-ui stack-up stack-down stack-status bench bench-transients bench-subtraction bench-heldout bench-latency bench-inference bench-typing bench-lightcurves bench-variables lake-integrity clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required"'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

## Debian's chromium, which the acceptance test drives (headless). Needs root or sudo.
system-deps:
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium || \
	  { $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium; }; }

## Simulate the demo network and run frames_job on the embedded default (SQLite, data/).
demo: install
	$(BIN)/telescope-demo

## The whole test suite (lint included), as CI runs it.
test: install lint system-deps
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Dagster UI (webserver + daemon) on http://127.0.0.1:3000 over the demo's state, with a
## standing dask cluster (2 workers on 127.0.0.1) that its runs share.
ui: install
	$(BIN)/telescope-ui --port 3000

## The same UI for viewers: browse everything, launch nothing (mutations are refused).
ui-readonly: install
	$(BIN)/dagster-webserver --host 127.0.0.1 --port 3001 --workspace workspace.yaml --read-only

## MLflow UI (runs, registered models, champion aliases) on http://127.0.0.1:5000.
mlflow-ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///models/mlflow.db --host 127.0.0.1 --port 5000

## The production profile on this machine: S3 (moto), MLflow server on PostgreSQL with S3
## artifacts, dask scheduler + workers, Dagster daemon + webserver, all on 127.0.0.1.
stack-up: install
	$(BIN)/telescope-stack up

stack-down: install
	$(BIN)/telescope-stack down

stack-status: install
	$(BIN)/telescope-stack status

## Speed against a plain ccdproc loop (not a test; prints ratios).
bench: install
	$(BIN)/python bench/calibration.py
	$(BIN)/python bench/catalogs.py

## After `make demo`: transients against truth and by injection; frame-to-alert latency.
## FAMILY=NAME: a site of that camera family (simulate/optics.py), five new nights; before
## and after the site learns its own real/bogus from the first two.
bench-transients: install
	$(BIN)/python bench/transient_accuracy.py $(if $(FAMILY),--family $(FAMILY))

## Transient types on the demo's lake against the simulator's truth (seconds).
bench-typing: install
	$(BIN)/python bench/transient_typing.py

## Subtraction on star fields of every camera family: false detections, fakes found.
bench-subtraction: install
	$(BIN)/python bench/subtraction_families.py

bench-latency: install
	$(BIN)/python bench/latency.py

## After `make demo`: real/bogus triplets/s and frame-quality frames/s (a minute).
bench-inference: install
	$(BIN)/python bench/inference.py

## The models on camera families held out from training (about 25 minutes on 2 cores).
bench-heldout: install
	$(BIN)/python bench/heldout_families.py frame_quality
	$(BIN)/python bench/heldout_families.py real_bogus

## After `make demo`: the report's new variables against truth (constant stars called
## variable, galaxies, alias flags).
bench-variables: install
	$(BIN)/python bench/variables.py

## Light-curve update time and memory as nights accumulate, beside a full rebuild.
bench-lightcurves: install
	$(BIN)/python bench/lightcurves.py

## After `make demo`: the reliability suite's bad inputs and faults on a copy of the demo's
## lake; checks that nothing of it is lost or altered (bench/lake_integrity.py).
lake-integrity: install
	$(BIN)/python bench/lake_integrity.py

clean:
	rm -rf data/lake data/incoming data/simulated data/truth data/dagster data/dask models/mlflow.db models/artifacts
