"""Test-wide settings: a throwaway AIRFLOW_HOME so no test touches a real Airflow install."""

from __future__ import annotations

import os
import tempfile

# The bus fixtures (nats_url, stream, bus, ...): opt-in, as a DAG author's conftest.py does;
# and session-wide servers for the queue-source tests (a Kafka-protocol broker, ...).
pytest_plugins = ["airflow_argo_events.testing", "tests.brokers"]

_home = tempfile.mkdtemp(prefix="argo-events-airflow-home-")
os.environ.setdefault("AIRFLOW_HOME", _home)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
