"""Argo's metrics inside Airflow: the core's ``Metrics`` interface over Airflow's ``Stats``.

The triggers report the same figures as ``--metrics-port`` does outside Airflow, under
Argo's names, through whatever Airflow is configured with (``[metrics] statsd_on`` /
``otel_on``); Airflow adds its prefix (``airflow.argo_events_action_triggered_total``) and
the labels go as tags. Nothing is sent when Airflow's metrics are off.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow_argo_events.core.actions.airflow_dagrun import run_id_for
from airflow_argo_events.core.actions.executor import Outcome
from airflow_argo_events.core.observe.metrics import NAMES
from airflow_argo_events.core.sensor.engine import Firing


def _stats() -> Any:
    # The triggerer initialises this one (``stats.initialize`` in TriggererJobRunner, inherited by
    # its trigger-runner subprocess); the Task SDK's copy is for task processes.
    try:
        from airflow.observability.stats import Stats
    except ImportError:  # older Airflow 3
        from airflow.stats import Stats
    return Stats


class AirflowStatsMetrics:
    """``Metrics`` through Airflow's ``Stats``: counters with ``incr``, durations with ``timing``.

    >>> AirflowStatsMetrics("default").action_triggered("orders", "notify")   # doctest: +SKIP
    """

    def __init__(self, namespace: str = "default") -> None:
        self.namespace = namespace
        self.stats = _stats()

    def _incr(self, key: str, tags: dict[str, str], count: int = 1) -> None:
        self.stats.incr(NAMES[key], count, tags={"namespace": self.namespace, **tags})

    def _timing(self, key: str, ms: float, tags: dict[str, str]) -> None:
        self.stats.timing(NAMES[key], timedelta(milliseconds=ms), tags={"namespace": self.namespace, **tags})

    def init_event(self, eventsource: str, event: str) -> None:
        pass  # StatsD has no zero-valued series to create

    def running(self, eventsource: str, delta: int) -> None:
        self.stats.gauge(NAMES["running"], delta, delta=True,
                         tags={"namespace": self.namespace, "eventsource_name": eventsource})

    def event_sent(self, eventsource: str, event: str) -> None:
        self._incr("sent", {"eventsource_name": eventsource, "event_name": event})

    def event_sent_failed(self, eventsource: str, event: str) -> None:
        self._incr("sent_failed", {"eventsource_name": eventsource, "event_name": event})

    def event_processing_failed(self, eventsource: str, event: str) -> None:
        self._incr("processing_failed", {"eventsource_name": eventsource, "event_name": event})

    def event_processing_duration(self, eventsource: str, event: str, ms: float) -> None:
        self._timing("processing_ms", ms, {"eventsource_name": eventsource, "event_name": event})

    def init_sensor(self, sensor: str, trigger: str) -> None:
        pass

    def action_triggered(self, sensor: str, trigger: str) -> None:
        self._incr("triggered", {"sensor_name": sensor, "trigger_name": trigger})

    def action_failed(self, sensor: str, trigger: str) -> None:
        self._incr("failed", {"sensor_name": sensor, "trigger_name": trigger})

    def action_retries_failed(self, sensor: str, trigger: str) -> None:
        self._incr("retries_failed", {"sensor_name": sensor, "trigger_name": trigger})

    def action_duration(self, sensor: str, trigger: str, ms: float) -> None:
        self._timing("action_ms", ms, {"sensor_name": sensor, "trigger_name": trigger})

    def sensor_events(self, sensor: str, decision: str, count: int = 1) -> None:
        if count:
            self._incr("sensor_events", {"sensor_name": sensor, "decision": decision}, count)


def trigger_owner(trigger: Any) -> dict[str, str]:
    """Who runs a SensorTrigger, for ``sensor list`` and the UI: the deferred task's DAG and task
    (an EventSensor), else an asset watcher; and the DAG whose runs it creates."""
    ti = getattr(trigger, "task_instance", None)
    owner = {"kind": "EventSensor" if ti is not None else "SensorTrigger"}
    if ti is not None:
        owner.update(dag_id=str(ti.dag_id), task_id=str(ti.task_id), run_id=str(getattr(ti, "run_id", "")))
    if getattr(trigger, "dag_id", None):
        owner["creates_runs_of"] = str(trigger.dag_id)
    if getattr(trigger, "trigger_id", None) is not None:
        owner["trigger_id"] = str(trigger.trigger_id)
    return owner


def dag_run_outcome(metrics: AirflowStatsMetrics, firing: Firing, dag_id: str, ok: bool, ms: float,
                    attempts: int = 0) -> Outcome:
    """Count one DAG run creation as Argo counts an action, and say how it ended (for ``sensor status``)."""
    metrics.action_duration(firing.sensor, firing.trigger, ms)
    if ok:
        metrics.action_triggered(firing.sensor, firing.trigger)
    else:
        metrics.action_failed(firing.sensor, firing.trigger)
        metrics.action_retries_failed(firing.sensor, firing.trigger)
    run_id = run_id_for("argo-events__", firing.id)
    detail = f"DAG run {dag_id}/{run_id} created" if ok else f"DAG run of {dag_id} refused by the API"
    return Outcome(firing.id, firing.trigger, ok, attempts, detail, ref=run_id if ok else "")
