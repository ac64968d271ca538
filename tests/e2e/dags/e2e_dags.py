"""DAGs the end-to-end tests run in a real Airflow (scheduler, dag-processor, triggerer, api-server)."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_argo_events.operators import PublishEventOperator
from airflow_argo_events.sensors import EventSensor
from airflow_argo_events.triggers import SensorTrigger

START = datetime(2024, 1, 1)

# 1. Two producers publish; "consumer" runs once per completed a && b pair.
for name in ("a", "b"):
    with DAG(dag_id=f"producer_{name}", schedule=None, start_date=START, catchup=False):
        PublishEventOperator(task_id="emit", event_source="e2e", event=name,
                             data={"n": "{{ dag_run.conf.get('n', 0) }}", "from": name})

pair = Asset("argo-events://e2e/pair", watchers=[AssetWatcher(name="pair", trigger=SensorTrigger(
    name="pair", conditions="a && b", dag_id="consumer", airflow_conn_id="airflow_api",
    dependencies=[{"name": "a", "eventSourceName": "e2e", "eventName": "a"},
                  {"name": "b", "eventSourceName": "e2e", "eventName": "b"}]))])

with DAG(dag_id="consumer", schedule=None, start_date=START, catchup=False):
    @task
    def consume(**context):
        firing = context["dag_run"].conf
        print("firing", firing["firing_id"], {d: e["data"] for d, e in firing["events"].items()})
        return sorted(firing["events"])

    consume()

with DAG(dag_id="pair_watch", schedule=[pair], start_date=START, catchup=False):
    @task
    def note(**context):
        return sum(len(v) for v in context["triggering_asset_events"].values())

    note()

# 2. Bursts: one DAG run per firing, none merged.
burst = Asset("argo-events://e2e/burst", watchers=[AssetWatcher(name="burst", trigger=SensorTrigger(
    name="burst", dag_id="burst_target", airflow_conn_id="airflow_api",
    dependencies=[{"name": "x", "eventSourceName": "e2e", "eventName": "burst"}]))])

with DAG(dag_id="burst_target", schedule=None, start_date=START, catchup=False, max_active_runs=64):
    @task
    def got(**context):
        return context["dag_run"].conf["events"]["x"]["id"]

    got()

with DAG(dag_id="burst_watch", schedule=[burst], start_date=START, catchup=False):
    @task
    def seen(**context):
        return sum(len(v) for v in context["triggering_asset_events"].values())

    seen()

# 3. The plain AssetWatcher path, for comparison (asset-triggered runs may merge events).
plain = Asset("argo-events://e2e/plain", watchers=[AssetWatcher(name="plain", trigger=SensorTrigger(
    name="plain", dependencies=[{"name": "p", "eventSourceName": "e2e", "eventName": "plain"}]))])

with DAG(dag_id="plain_consumer", schedule=[plain], start_date=START, catchup=False):
    @task
    def events(**context):
        return [e.extra["payload"]["firing_id"] for v in context["triggering_asset_events"].values() for e in v]

    events()

# 4. EventSensors inside a DAG: a deferred one waits and succeeds, a rescheduled (poking) one sees the
# same event, one times out cleanly.
GO = [{"name": "go", "eventSourceName": "e2e", "eventName": "go",
       "filters": {"data": [{"path": "ok", "type": "bool", "value": ["true"]}]}}]
with DAG(dag_id="waiter", schedule=None, start_date=START, catchup=False):
    # poke_interval well above a worker's exit time: with a shorter one, Airflow's scheduler may get the
    # previous poke's late "success" while the next poke runs and mark the task failed (seen at 2 s under load).
    rescheduled = EventSensor(task_id="rescheduled", timeout=300, dependencies=GO, deferrable=False,
                              mode="reschedule", poke_interval=15)
    wait = EventSensor(task_id="wait", timeout=120, conditions="go", deferrable=True, dependencies=GO)
    never = EventSensor(task_id="never", timeout=5, soft_fail=True, deferrable=True,
                        dependencies=[{"name": "n", "eventSourceName": "e2e", "eventName": "never"}])

    @task
    def after(firing):
        return firing["events"]["go"]["data"]

    after(wait.output)
