"""DAGs of the e2e fault tests (test_airflow_faults.py, test_airflow_lost_replies.py): one DAG run per
firing through API outages, NATS faults and lost replies."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_argo_events.triggers import SensorTrigger

START = datetime(2024, 1, 1)


def _watch(asset: Asset, dag_id: str) -> None:
    """Airflow runs an asset's watchers only when a DAG is scheduled on it."""
    with DAG(dag_id=dag_id, schedule=[asset], start_date=START, catchup=False):
        @task
        def seen(**context):
            return sum(len(v) for v in context["triggering_asset_events"].values())

        seen()


def _target(dag_id: str) -> None:
    with DAG(dag_id=dag_id, schedule=None, start_date=START, catchup=False, max_active_runs=64):
        @task
        def got(**context):
            return context["dag_run"].conf["events"]["x"]["id"]

        got()


# a. The REST API away for a minute while firings arrive (shared NATS).
api_down = Asset("argo-events://e2e/api-down", watchers=[AssetWatcher(name="api_down", trigger=SensorTrigger(
    name="api-down", dag_id="api_down_target", airflow_conn_id="airflow_api",
    dependencies=[{"name": "x", "eventSourceName": "e2e", "eventName": "apidown"}]))])
_watch(api_down, "api_down_watch")
_target("api_down_target")

# b. NATS stalled and killed: the bus is a private nats-server the test may SIGSTOP and SIGKILL.
stall = Asset("argo-events://e2e/stall", watchers=[AssetWatcher(name="stall", trigger=SensorTrigger(
    name="stall", dag_id="stall_target", airflow_conn_id="airflow_api", nats_conn_id="nats_private",
    dependencies=[{"name": "x", "eventSourceName": "e2e", "eventName": "stall"}]))])
_watch(stall, "stall_watch")
_target("stall_target")

# c. Replies lost: the same private server through a proxy (the nats_lossy connection) that drops
# the replies of KV writes the server executed (tests/nats_proxy.py).
lossy = Asset("argo-events://e2e/lossy", watchers=[AssetWatcher(name="lossy", trigger=SensorTrigger(
    name="lossy", dag_id="lossy_target", airflow_conn_id="airflow_api", nats_conn_id="nats_lossy",
    dependencies=[{"name": "x", "eventSourceName": "e2e", "eventName": "lossy"}]))])
_watch(lossy, "lossy_watch")
_target("lossy_target")
