"""Argo manifests as they are -> Airflow DAGs (see airflow_argo_events.manifests).

Every Sensor trigger under ``manifests/`` becomes a DAG whose runs are its firings (one run
per firing), plus a watcher; every EventSource event becomes a watcher that publishes to
the bus. Connections: ``nats_default`` (the bus), ``airflow_api`` (REST API for the runs),
``kubernetes_default`` (k8s / argoWorkflow triggers).
"""

from __future__ import annotations

from pathlib import Path

from airflow_argo_events.manifests import load_dags

globals().update(load_dags(Path(__file__).parent / "manifests", airflow_conn_id="airflow_api",
                           kubernetes_conn_id="kubernetes_default", tags=["manifests"]))
