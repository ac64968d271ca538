"""The DAG file the Airflow demo copies into its temporary dags folder."""

from __future__ import annotations

import json
import os
from datetime import datetime

from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_argo_events.triggers import SensorTrigger

SENSOR = json.loads(os.environ["ARGO_EVENTS_DEMO_SENSOR"])

firings = Asset("argo-events://demo/process-batch", watchers=[AssetWatcher(name="demo", trigger=SensorTrigger(
    sensor=SENSOR, trigger="process-batch", dag_id="demo_process", airflow_conn_id="airflow_api"))])

with DAG(dag_id="demo_process", schedule=None, start_date=datetime(2024, 1, 1), catchup=False):
    @task
    def process(**context):
        firing = context["dag_run"].conf
        return {d: e["data"].get("body", e["data"]) for d, e in firing["events"].items()}

    process()

with DAG(dag_id="demo_watch", schedule=[firings], start_date=datetime(2024, 1, 1), catchup=False):
    @task
    def seen(**context):
        return sum(len(v) for v in context["triggering_asset_events"].values())

    seen()
