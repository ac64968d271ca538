# Quick start: `make demo` runs the demo on the embedded NATS, `make test` runs the tests.
# Both create .venv when it is missing. PYTHON picks the interpreter (>= 3.10).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Test workers (pytest-xdist): the e2e tests stay on one worker and share one Airflow.
JOBS   ?= 2

.PHONY: demo demo-airflow test test-fast bench lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/argo-events demo

demo-airflow: $(STAMP)
	$(BIN)/argo-events demo --airflow

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(JOBS) $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/bus.py
	$(BIN)/python benchmarks/engine.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info src/*.egg-info
