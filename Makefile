# Quick start: `make demo` runs the demo on the embedded NATS, `make test` runs the tests.
# Both create .venv when it is missing. PYTHON picks the interpreter (>= 3.10).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Test workers (pytest-xdist): the e2e tests stay on one worker and share one Airflow.
JOBS   ?= 2

.PHONY: demo demo-airflow test test-fast bench lint clean oracle

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

bench: $(STAMP)
	$(BIN)/python benchmarks/bus.py
	$(BIN)/python benchmarks/engine.py

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
	rm -rf $(VENV) .pytest_cache build *.egg-info src/*.egg-info
