"""An EventSource in the real triggerer whose secret is an Airflow Variable stored in the metadata database."""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_argo_events.triggers import EventSourceTrigger

# 6. A webhook whose bearer token is the Airflow Variable "e2e_webhook" ({"token": ...}), set
# before Airflow starts (tests/e2e/conftest.py); the port comes from there too.
hook = Asset("argo-events://e2e/webhook", watchers=[AssetWatcher(name="webhook", trigger=EventSourceTrigger(
    eventsource={"apiVersion": "argoproj.io/v1alpha1", "kind": "EventSource", "metadata": {"name": "e2e-webhook"},
                 "spec": {"webhook": {"hook": {"port": os.environ.get("E2E_WEBHOOK_PORT", "12000"),
                                               "endpoint": "/hook", "method": "POST",
                                               "authSecret": {"name": "e2e_webhook", "key": "token"}}}}},
    event_name="hook", nats_conn_id=None))])

with DAG(dag_id="webhook_consumer", schedule=[hook], start_date=datetime(2024, 1, 1), catchup=False):
    @task
    def bodies(**context):
        return [e.extra["payload"]["data"]["body"] for v in context["triggering_asset_events"].values() for e in v]

    bodies()
