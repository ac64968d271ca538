"""Metrics with Argo Events' names and labels, so Argo's dashboards and alerts work unchanged.

Argo (``pkg/metrics/metrics.go``, v1.9.11; ``docs/metrics.md``) exposes, each with the
constant label ``namespace``:

=========================================================  ==================================  =========
name                                                       labels                              type
=========================================================  ==================================  =========
argo_events_event_service_running_total                    eventsource_name                    gauge
argo_events_events_sent_total                              eventsource_name, event_name        counter
argo_events_events_sent_failed_total                       eventsource_name, event_name        counter
argo_events_events_processing_failed_total                 eventsource_name, event_name        counter
argo_events_event_processing_duration_milliseconds         eventsource_name, event_name        summary
argo_events_action_triggered_total                         sensor_name, trigger_name           counter
argo_events_action_failed_total                            sensor_name, trigger_name           counter
argo_events_action_retries_failed_total                    sensor_name, trigger_name           counter
argo_events_action_duration_milliseconds                   sensor_name, trigger_name           summary
=========================================================  ==================================  =========

As in Argo, ``action_failed`` and ``action_triggered`` count attempts (each retry is one),
``action_retries_failed`` counts firings whose retries are exhausted (and failed
dead-letter triggers, under the dead-letter trigger's name), and durations are per attempt.
One extension, not in Argo: ``argo_events_sensor_events_total{sensor_name, decision}``
counts what the sensor decided about each event it received (``accepted``, ``rejected``,
``duplicate``, ``malformed``), the figures behind "why did it not fire?".

``Metrics`` is the interface the runtimes call; :class:`NoMetrics` does nothing (the
default), :class:`PrometheusMetrics` serves ``/metrics`` (``--metrics-port``), and the
Airflow layer adapts it to Airflow's ``Stats`` (StatsD / OpenTelemetry).
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

NAMES = {
    "running": "argo_events_event_service_running_total",
    "sent": "argo_events_events_sent_total",
    "sent_failed": "argo_events_events_sent_failed_total",
    "processing_failed": "argo_events_events_processing_failed_total",
    "processing_ms": "argo_events_event_processing_duration_milliseconds",
    "triggered": "argo_events_action_triggered_total",
    "failed": "argo_events_action_failed_total",
    "retries_failed": "argo_events_action_retries_failed_total",
    "action_ms": "argo_events_action_duration_milliseconds",
    "sensor_events": "argo_events_sensor_events_total",
}
DECISIONS = ("accepted", "rejected", "duplicate", "malformed")


class Metrics(Protocol):
    """What the EventSource and Sensor runtimes report (Argo's ``Metrics`` methods)."""

    def init_event(self, eventsource: str, event: str) -> None: ...
    def running(self, eventsource: str, delta: int) -> None: ...
    def event_sent(self, eventsource: str, event: str) -> None: ...
    def event_sent_failed(self, eventsource: str, event: str) -> None: ...
    def event_processing_failed(self, eventsource: str, event: str) -> None: ...
    def event_processing_duration(self, eventsource: str, event: str, ms: float) -> None: ...
    def init_sensor(self, sensor: str, trigger: str) -> None: ...
    def action_triggered(self, sensor: str, trigger: str) -> None: ...
    def action_failed(self, sensor: str, trigger: str) -> None: ...
    def action_retries_failed(self, sensor: str, trigger: str) -> None: ...
    def action_duration(self, sensor: str, trigger: str, ms: float) -> None: ...
    def sensor_events(self, sensor: str, decision: str, count: int = 1) -> None: ...


class NoMetrics:
    """Metrics that go nowhere (the default: nothing to pay when nobody scrapes)."""

    def init_event(self, eventsource: str, event: str) -> None:
        pass

    def running(self, eventsource: str, delta: int) -> None:
        pass

    def event_sent(self, eventsource: str, event: str) -> None:
        pass

    def event_sent_failed(self, eventsource: str, event: str) -> None:
        pass

    def event_processing_failed(self, eventsource: str, event: str) -> None:
        pass

    def event_processing_duration(self, eventsource: str, event: str, ms: float) -> None:
        pass

    def init_sensor(self, sensor: str, trigger: str) -> None:
        pass

    def action_triggered(self, sensor: str, trigger: str) -> None:
        pass

    def action_failed(self, sensor: str, trigger: str) -> None:
        pass

    def action_retries_failed(self, sensor: str, trigger: str) -> None:
        pass

    def action_duration(self, sensor: str, trigger: str, ms: float) -> None:
        pass

    def sensor_events(self, sensor: str, decision: str, count: int = 1) -> None:
        pass


NO_METRICS: Metrics = NoMetrics()


def _base(name: str) -> str:
    return name.removesuffix("_total")


class PrometheusMetrics:
    """Argo's metrics in a ``prometheus_client`` registry of their own; ``serve(port)`` exposes
    ``/metrics`` (Argo serves them on port 7777 of each pod).

    >>> m = PrometheusMetrics(namespace="argo")
    >>> m.action_triggered("orders", "notify")
    >>> b'argo_events_action_triggered_total{namespace="argo",sensor_name="orders",trigger_name="notify"} 1.0' \\
    ...     in m.exposition()
    True
    """

    def __init__(self, namespace: str = "default") -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Summary, disable_created_metrics

        # Go's client has no "_created" series; Argo's dashboards do not expect them.
        disable_created_metrics()
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.namespace = namespace
        # Argo's "namespace" is a constant label; prometheus_client has none, so it is the
        # first label of every metric, always given this value (same exposition).
        es, ev, sn, tn = ["namespace", "eventsource_name"], ["namespace", "eventsource_name", "event_name"], \
            ["namespace", "sensor_name", "trigger_name"], ["namespace", "sensor_name", "decision"]
        # prometheus_client adds "_total" to a counter's name itself.
        self._running = Gauge(NAMES["running"], "How many configured events in the EventSource object are "
                              "actively running.", es, registry=r)
        self._sent = Counter(_base(NAMES["sent"]), "How many events have been sent successfully.", ev, registry=r)
        self._sent_failed = Counter(_base(NAMES["sent_failed"]), "How many events failed to send to EventBus.", ev,
                                    registry=r)
        self._processing_failed = Counter(_base(NAMES["processing_failed"]), "Number of events failed to process, "
                                          "it includes argo_events_events_sent_failed_total.", ev, registry=r)
        self._processing_ms = Summary(NAMES["processing_ms"], "Summary of durations of event processing.", ev,
                                      registry=r)
        self._triggered = Counter(_base(NAMES["triggered"]), "How many actions have been triggered successfully.",
                                  sn, registry=r)
        self._failed = Counter(_base(NAMES["failed"]), "How many actions failed.", sn, registry=r)
        self._retries_failed = Counter(_base(NAMES["retries_failed"]), "How many actions failed after the retries "
                                       "have been exhausted.", sn, registry=r)
        self._action_ms = Summary(NAMES["action_ms"], "Summary of durations of trigging actions.", sn, registry=r)
        self._sensor_events = Counter(_base(NAMES["sensor_events"]), "Events a sensor received, by what it decided "
                                      "(accepted, rejected by a filter, duplicate, malformed). Not in Argo.", tn,
                                      registry=r)
        self._server: Any = None

    # EventSource
    def init_event(self, eventsource: str, event: str) -> None:
        self._running.labels(self.namespace, eventsource).inc(0)
        for c in (self._sent, self._sent_failed, self._processing_failed):
            c.labels(self.namespace, eventsource, event).inc(0)

    def running(self, eventsource: str, delta: int) -> None:
        self._running.labels(self.namespace, eventsource).inc(delta)

    def event_sent(self, eventsource: str, event: str) -> None:
        self._sent.labels(self.namespace, eventsource, event).inc()

    def event_sent_failed(self, eventsource: str, event: str) -> None:
        self._sent_failed.labels(self.namespace, eventsource, event).inc()

    def event_processing_failed(self, eventsource: str, event: str) -> None:
        self._processing_failed.labels(self.namespace, eventsource, event).inc()

    def event_processing_duration(self, eventsource: str, event: str, ms: float) -> None:
        self._processing_ms.labels(self.namespace, eventsource, event).observe(ms)

    # Sensor
    def init_sensor(self, sensor: str, trigger: str) -> None:
        for c in (self._triggered, self._failed, self._retries_failed):
            c.labels(self.namespace, sensor, trigger).inc(0)

    def action_triggered(self, sensor: str, trigger: str) -> None:
        self._triggered.labels(self.namespace, sensor, trigger).inc()

    def action_failed(self, sensor: str, trigger: str) -> None:
        self._failed.labels(self.namespace, sensor, trigger).inc()

    def action_retries_failed(self, sensor: str, trigger: str) -> None:
        self._retries_failed.labels(self.namespace, sensor, trigger).inc()

    def action_duration(self, sensor: str, trigger: str, ms: float) -> None:
        self._action_ms.labels(self.namespace, sensor, trigger).observe(ms)

    def sensor_events(self, sensor: str, decision: str, count: int = 1) -> None:
        if count:
            self._sensor_events.labels(self.namespace, sensor, decision).inc(count)

    # Exposition
    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def serve(self, port: int, addr: str = "0.0.0.0") -> int:
        """Serve ``/metrics`` on ``addr:port`` from a daemon thread (``prometheus_client``'s
        server: scrapes never wait on the event loop). Returns the port (``0`` picks one)."""
        from prometheus_client import start_http_server

        server, thread = start_http_server(port, addr, registry=self.registry)
        self._server = (server, thread)
        return int(server.server_address[1])

    def close(self) -> None:
        if self._server is not None:
            server, thread = self._server
            self._server = None
            threading.Thread(target=server.shutdown, daemon=True).start()
            server.server_close()
