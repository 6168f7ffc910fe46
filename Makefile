# Two commands for a newcomer: `make run` (the main job) and `make test` (the whole suite).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Airflow starts `airflow` subprocesses: the virtual environment's bin/ must be on PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run test test-fast airflow bench scale-demo faults lock clean

$(STAMP): pyproject.toml requirements.lock scripts/install-test-tools.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e ".[test]"
	@sh scripts/install-test-tools.sh  # headless Chromium (browser tests) and wrk (exchange benchmark) via apt-get, root only
	@touch $(STAMP)

## make run: generate the simulated province, run the Airflow DAGs end to end, print counts
run: $(STAMP)
	$(BIN)/hub run

## make test: the whole suite (unit, DAG integrity, real databases, end to end, property tests)
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --durations=15 $(PYTEST_ARGS)

## make test-fast: skip the slow tiers
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m "not slow" $(PYTEST_ARGS)

## make airflow: Airflow UI (http://localhost:8080) with the hub's DAGs
airflow: $(STAMP)
	$(BIN)/hub airflow standalone

## make bench: benchmarks (figures, not pass/fail)
bench: $(STAMP)
	$(BIN)/hub bench

## make scale-demo: the DAGs on Airflow with PostgreSQL + CeleryExecutor (Redis broker, 2 workers), one full run, torn down
scale-demo: $(STAMP)
	sh scripts/scale_demo.sh

## make faults: crash campaign (24 kills), source faults, bad inputs, leak scans, pip-audit → docs/reliability.md
faults: $(STAMP)
	rm -rf data/reliability
	export HUB_RELIABILITY_DIR=$(CURDIR)/data/reliability; status=0; \
	$(BIN)/hub faults run --trials 24 || status=$$?; \
	$(BIN)/python -m pytest -rs --junitxml=data/reliability/tests.xml tests/test_faults_crash.py \
	    tests/test_source_faults.py tests/test_bad_input.py tests/test_leaks.py tests/test_hardening.py $(PYTEST_ARGS) || status=$$?; \
	$(BIN)/hub faults report && exit $$status

## make lock: refresh requirements.lock from the current environment
lock:
	$(BIN)/python -m pip freeze --exclude-editable > requirements.lock

clean:
	rm -rf data
