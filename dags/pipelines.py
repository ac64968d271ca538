"""Everyday patterns: webhook -> DAG run, calendar -> DAG, DAGs talking over NATS, an EventSensor."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_argo_events.operators import PublishEventOperator
from airflow_argo_events.sensors import EventSensor
from airflow_argo_events.triggers import EventSourceTrigger, SensorTrigger

START = datetime(2024, 1, 1)

# [START howto_webhook_dag_run]
# Every push to main that reaches the webhook starts one run of "on_push" (run id = firing id).
pushes = Asset("argo-events://webhook/push", watchers=[AssetWatcher(name="push", trigger=SensorTrigger(
    name="push-to-main", dag_id="on_push", airflow_conn_id="airflow_api",
    dependencies=[{"name": "push", "eventSourceName": "webhook", "eventName": "example",
                   "filters": {"data": [{"path": "body.ref", "type": "string", "value": ["refs/heads/main$"]}]}}]))])

with DAG(dag_id="on_push", schedule=None, start_date=START, catchup=False, tags=["example"]):
    @task
    def build(**context):
        firing = context["dag_run"].conf
        return firing["events"]["push"]["data"]["body"]["after"]

    build()

with DAG(dag_id="on_push_watch", schedule=[pushes], start_date=START, catchup=False, tags=["example"]):
    @task
    def seen(**context):
        return sum(len(v) for v in context["triggering_asset_events"].values())

    seen()
# [END howto_webhook_dag_run]

# [START howto_calendar]
ticks = Asset("argo-events://eventsource/calendar/every-minute", watchers=[AssetWatcher(
    name="every-minute", trigger=EventSourceTrigger(event_name="every-minute", eventsource={
        "apiVersion": "argoproj.io/v1alpha1", "kind": "EventSource", "metadata": {"name": "calendar"},
        "spec": {"calendar": {"every-minute": {"schedule": "* * * * *", "timezone": "Europe/Paris"}}}}))])

with DAG(dag_id="calendar_tick", schedule=[ticks], start_date=START, catchup=False, tags=["example"]):
    @task
    def tick(**context):
        return [e.extra["payload"]["data"]["eventTime"]
                for events in context["triggering_asset_events"].values() for e in events]

    tick()
# [END howto_calendar]

# [START howto_cross_dag]
# "extract" and "load" know nothing of each other: they talk only through NATS.
with DAG(dag_id="extract", schedule=None, start_date=START, catchup=False, tags=["example"]):
    PublishEventOperator(task_id="announce", event_source="warehouse", event="extracted",
                         data={"table": "sales", "rows": 1200, "run": "{{ run_id }}"})

with DAG(dag_id="load", schedule=None, start_date=START, catchup=False, tags=["example"]):
    # Defers when [operators] default_deferrable is True; otherwise pokes every 30 s, and "reschedule"
    # frees the worker slot between pokes (nothing published in between is missed).
    wait = EventSensor(task_id="wait_for_extract", timeout=3600, poke_interval=30, mode="reschedule",
                       dependencies=[{"name": "extracted", "eventSourceName": "warehouse", "eventName": "extracted",
                                      "filters": {"data": [{"path": "rows", "type": "number", "comparator": ">",
                                                            "value": ["0"]}]}}])

    @task
    def load(firing):
        return firing["events"]["extracted"]["data"]["table"]

    load(wait.output)
# [END howto_cross_dag]
