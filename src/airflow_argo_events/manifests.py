"""Argo manifests to DAGs: one file in the dags folder turns a folder of Sensor/EventSource YAML into DAGs.

.. code-block:: python

    # dags/argo_manifests.py
    from airflow_argo_events.manifests import load_dags

    globals().update(load_dags("/opt/airflow/manifests", airflow_conn_id="airflow_api"))

For each trigger of each Sensor:

- ``argo_events__<sensor>__<trigger>``: the DAG whose runs are the firings (one run per
  firing, created through the REST API with the firing id in the run id); its task runs
  the trigger's action (k8s, argoWorkflow, http, nats, slack, log) with the firing's
  parameters, the firing itself in ``dag_run.conf``;
- an asset ``argo-events://<sensor>/<trigger>`` watched by a SensorTrigger in the
  triggerer, and a small ``..._watch`` DAG scheduled on it (it keeps the watcher active
  and logs every firing in the Airflow UI).

For each event of each EventSource: an asset ``argo-events://eventsource/<name>/<event>``
watched by an EventSourceTrigger (it publishes to the bus) and a ``..._watch`` DAG.
A manifest that does not validate raises one import error listing ``file: field: message``.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.spec.loader import load_file
from airflow_argo_events.operators.action import ActionOperator
from airflow_argo_events.triggers.eventsource import EventSourceTrigger
from airflow_argo_events.triggers.sensor import SensorTrigger


def dag_id_for(*parts: str) -> str:
    return "argo_events__" + "__".join(re.sub(r"[^A-Za-z0-9_.-]", "_", p) for p in parts)


def _watch_dag(dag_id: str, asset: Asset, tags: list[str]) -> DAG:
    with DAG(dag_id=dag_id, schedule=[asset], start_date=datetime(2024, 1, 1), catchup=False, tags=tags,
             doc_md="Keeps the watcher active and logs what it saw (asset runs may merge close events; "
                    "see the firing DAG for one run per firing).") as dag:
        @task
        def record(**context: Any) -> int:
            seen = 0
            for events in context["triggering_asset_events"].values():
                for ev in events:
                    payload = (ev.extra or {}).get("payload", {})
                    print(f"firing {payload.get('firing_id') or payload.get('id')}: {payload}")
                    seen += 1
            return seen

        record()
    return dag


def sensor_dags(sensor: Any, *, nats_conn_id: str, airflow_conn_id: str, kubernetes_conn_id: str | None,
                tags: list[str]) -> dict[str, DAG]:
    dags: dict[str, DAG] = {}
    doc = sensor.dump()
    name = sensor.metadata.name
    for trig in doc["spec"]["triggers"]:
        tname = trig["template"]["name"]
        target = dag_id_for(name, tname)
        with DAG(dag_id=target, schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
                 tags=[*tags, "argo-events", name],
                 doc_md=f"Runs of this DAG are the firings of trigger `{tname}` of Sensor `{name}`.") as dag:
            ActionOperator(task_id="act", trigger=doc, trigger_name=tname, kubernetes_conn_id=kubernetes_conn_id)
        dags[target] = dag
        asset = Asset(f"argo-events://{name}/{tname}", watchers=[AssetWatcher(
            name=f"{name}-{tname}", trigger=SensorTrigger(sensor=doc, trigger=tname, nats_conn_id=nats_conn_id,
                                                          dag_id=target, airflow_conn_id=airflow_conn_id,
                                                          state_prefix="manifest"))])
        watch = target + "__watch"
        dags[watch] = _watch_dag(watch, asset, [*tags, "argo-events", name])
    return dags


def eventsource_dags(es: Any, *, nats_conn_id: str, tags: list[str]) -> dict[str, DAG]:
    dags: dict[str, DAG] = {}
    doc = es.dump()
    for cfg in es.events():
        if not cfg.supported:
            continue
        asset = Asset(f"argo-events://eventsource/{es.metadata.name}/{cfg.name}", watchers=[AssetWatcher(
            name=f"{es.metadata.name}-{cfg.name}",
            trigger=EventSourceTrigger(eventsource=doc, event_name=cfg.name, nats_conn_id=nats_conn_id))])
        dag_id = dag_id_for("eventsource", es.metadata.name, cfg.name)
        dags[dag_id] = _watch_dag(dag_id, asset, [*tags, "argo-events", es.metadata.name])
    return dags


def load_dags(folder: str | Path, *, nats_conn_id: str = "nats_default", airflow_conn_id: str = "airflow_api",
              kubernetes_conn_id: str | None = None, tags: list[str] | None = None) -> dict[str, DAG]:
    """DAGs for every Sensor and EventSource manifest (``*.yaml``/``*.yml``) under ``folder``."""
    errors: list[tuple[str, str]] = []
    dags: dict[str, DAG] = {}
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix in (".yaml", ".yml"))
    for path in files:
        try:
            manifests = load_file(path)
        except SpecError as err:
            errors.extend((f"{path}: {p}" if p else str(path), m) for p, m in err.errors)
            continue
        for m in manifests:
            if m.kind == "Sensor":
                dags.update(sensor_dags(m, nats_conn_id=nats_conn_id, airflow_conn_id=airflow_conn_id,
                                        kubernetes_conn_id=kubernetes_conn_id, tags=tags or []))
            elif m.kind == "EventSource":
                dags.update(eventsource_dags(m, nats_conn_id=nats_conn_id, tags=tags or []))
    if errors:
        raise SpecError(errors)
    return dags
