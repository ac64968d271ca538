# Quick start: `make demo` runs the demo on the embedded NATS, `make test` runs the tests.
# Both create .venv when it is missing. PYTHON picks the interpreter (>= 3.10).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Test workers (pytest-xdist): the e2e tests stay on one worker and share one Airflow.
JOBS   ?= 2

.PHONY: demo demo-airflow test test-fast test-compat test-packaging bench bench-prefect lint clean oracle

# One line per phase with the seconds elapsed, so a cold install never looks stuck.
$(STAMP): pyproject.toml
	@t0=$$(date +%s); phase() { echo "[install $$(( $$(date +%s) - t0 ))s] $$*"; }; set -e; \
	phase "creating $(VENV) with $(PYTHON)"; test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); \
	phase "installing pip and uv into $(VENV)"; $(BIN)/python -m pip install --quiet --upgrade pip uv; \
	phase "installing airflow-argo-events[dev]: Airflow and about 180 packages (20-60 s)"; \
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[dev]'; \
	touch $(STAMP); phase "done"

demo: $(STAMP)
	$(BIN)/argo-events demo

demo-airflow: $(STAMP)
	$(BIN)/argo-events demo --airflow

test: $(STAMP)
	@echo "[test] pytest on $(JOBS) workers: unit, integration, faults, docs, then a real Airflow (e2e); 10-20 minutes by load"
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(JOBS) $(PYTEST_ARGS)

# The ends of the support matrix (docs/airflow/index.md), each in a venv of its own: Python 3.10 with
# Airflow 3.0.1 (the floors), then Python 3.13 with the newest Airflow. Unit and Airflow-layer tests,
# `airflow dags test`, provider discovery; the low leg adds a real Airflow 3.0.1. 10-25 minutes per leg by load.
test-compat: $(STAMP)
	JOBS=$(JOBS) UV=$(BIN)/uv tests/packaging/compat.sh low
	JOBS=$(JOBS) UV=$(BIN)/uv tests/packaging/compat.sh high

# Build sdist + wheel, twine check, install the wheel with only [embedded] into a clean venv,
# then `argo-events demo` and an Airflow DAG import from it. 1-2 minutes with a warm uv cache.
test-packaging: $(STAMP)
	UV=$(BIN)/uv PACKAGING_PYTHON=$(PYTHON) tests/packaging/check.sh

# Every benchmark at quick sizes, 3-5 minutes (benchmarks/README.md); BENCH_ARGS=--full for
# their own sizes (tens of minutes), BENCH_ARGS="--only engine,webhook" for some.
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

# Ours vs a Prefect automation on one throwaway Prefect server (10-30 minutes: 1,000 pairs each side).
bench-prefect: $(STAMP)
	$(BIN)/python benchmarks/prefect.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

# Regenerate tests/golden/ from Go (the Argo sub-language oracle; see tests/oracle/build.sh for
# the library versions and how they are built). Needs root for apt-get when a package is missing;
# CI does not run this: the golden files are committed and compared by tests/unit/test_golden_*.py.
ORACLE_DEBS := golang-go golang-github-knetic-govaluate-dev golang-github-tidwall-gjson-dev \
	golang-github-masterminds-sprig-dev golang-github-yuin-gopher-lua-dev golang-github-itchyny-gojq-dev
# MIRROR=<folder> names where git snapshots of gjson, sjson, sprig and gopher-lua at Argo's pinned
# versions are (<owner>+<name>/repo each); see tests/oracle/build.sh.
oracle: $(STAMP)
	@test -n "$(MIRROR)$(GJSON_GIT)" || { echo "make oracle: set MIRROR=<folder of the pinned library snapshots> (see tests/oracle/build.sh)" >&2; exit 2; }
	@missing=$$(for p in $(ORACLE_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; fi
	TZ=UTC OUT=/tmp/argo-oracle/bin tests/oracle/build.sh
	TZ=UTC $(BIN)/python tests/oracle/generate.py --oracle /tmp/argo-oracle/bin --out tests/golden

clean:
	rm -rf $(VENV) .venv-compat-low .venv-compat-high .pytest_cache build *.egg-info src/*.egg-info
