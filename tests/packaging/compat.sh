#!/usr/bin/env bash
# `make test-compat`: the ends of the support matrix, each in a venv of its own.
#   compat.sh low   Python $PYTHON_LOW (requires-python's floor) with apache-airflow==$AIRFLOW_LOW and
#                   common-compat==$COMPAT_LOW (the pinned floors)
#   compat.sh high  Python $PYTHON_HIGH with the newest Airflow the resolver picks
# Each runs the unit tests and the Airflow-layer tests: trigger serialization through Airflow's
# serializer, `airflow dags test` of a DAG with every operator (a deferrable EventSensor run in
# line, a poking one), the example DAGs' import, provider discovery and `airflow connections test`;
# COMPAT_E2E=1: the low leg also runs EventSensors in a real Airflow 3.0.1 with its triggerer.
# `make test` (the dev venv, the newest Airflow) adds the end-to-end tests in a real Airflow.
set -euo pipefail
cd "$(dirname "$0")/../.."
UV=${UV:-.venv/bin/uv}
LEG=${1:-low}
AIRFLOW_LOW=${AIRFLOW_LOW:-3.0.1}
COMPAT_LOW=${COMPAT_LOW:-1.12.0}
PYTHON_LOW=${PYTHON_LOW:-3.10}
PYTHON_HIGH=${PYTHON_HIGH:-3.13}
case "$LEG" in
  low) PYTHON=$PYTHON_LOW; PINS=("apache-airflow==$AIRFLOW_LOW" "apache-airflow-providers-common-compat==$COMPAT_LOW") ;;
  high) PYTHON=$PYTHON_HIGH; PINS=() ;;
  *) echo "usage: $0 [low|high]" >&2; exit 2 ;;
esac
VENV=${COMPAT_VENV:-.venv-compat-$LEG}
JOBS=${JOBS:-2}
t0=$(date +%s); phase() { echo "[compat $(( $(date +%s) - t0 ))s] $*"; }

# pyenv shims answer only for the selected version; pick the newest installed $PYTHON_LOW.x for uv.
if ! "$UV" python find "$PYTHON" >/dev/null 2>&1 && command -v pyenv >/dev/null 2>&1; then
  PYENV_VERSION=$(pyenv versions --bare | grep -E "^${PYTHON//./\.}\.[0-9]+$" | tail -1) && export PYENV_VERSION
fi
phase "venv $VENV on Python $PYTHON"
"$UV" venv --quiet --allow-existing --python "$PYTHON" "$VENV"
phase "installing ${PINS[*]:-the newest Airflow} and airflow-argo-events[dev]"
"$UV" pip install --quiet --python "$VENV/bin/python" "${PINS[@]}" -e '.[dev]'
"$VENV/bin/python" -c "import airflow, sys; print('Airflow', airflow.__version__, 'on Python', sys.version.split()[0])"
phase "unit tests and Airflow-layer tests"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider -n "$JOBS" tests/unit tests/integration/test_provider.py \
  tests/integration/test_sensor_trigger.py ${PYTEST_ARGS:-}
if [ "$LEG" = low ] && [ "${COMPAT_E2E:-0}" = 1 ]; then
  # A deferred EventSensor (and a rescheduled one) in a real Airflow of that release: scheduler,
  # dag-processor, triggerer and api-server; the trigger's lines read back from the task log.
  # Opt-in (COMPAT_E2E=1). A real 3.0.1 needs FastAPI and cadwyn of its time (the newest ones make
  # its execution API refuse task starts with 422). There the deferred sensor passes; the rescheduled
  # one and soft_fail on a trigger timeout fail in 3.0.1 itself (docs/airflow/index.md).
  "$UV" pip install --quiet --python "$VENV/bin/python" "fastapi==0.115.12" "cadwyn==5.3.3"
  phase "a real Airflow $AIRFLOW_LOW: deferred and rescheduled EventSensors"
  "$VENV/bin/python" -m pytest -q -p no:cacheprovider -n 0 tests/e2e/test_airflow_e2e.py -k event_sensor
fi
phase "done"
