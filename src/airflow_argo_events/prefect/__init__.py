"""Prefect 3 adapters of airflow-argo-events: the same EventSources, bus and Sensors for Prefect flows.

- ``wait_for_events`` / ``wait_for_events_sync``: a task that waits for Argo-style dependencies
  and conditions over bus events and returns the firing.
- ``publish_event``: a task that publishes a CloudEvent to the bus (retry-safe id).
- ``run_sensor`` (a flow) and ``serve_sensor``: run a Sensor manifest as a long-running flow.
- ``NatsCredentials``: a block holding how to reach the bus.

The ``prefect`` trigger kind (a flow run per firing) and ``prefectEvent`` (a Prefect event
per firing) run in any sensor: ``argo-events sensor run`` or ``serve_sensor``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# Names resolve on first use, so that ``airflow_argo_events.prefect.testing`` (which must run
# before Prefect reads its settings) does not import Prefect.
_EXPORTS = {
    "run_sensor": "serve", "run_sensor_until": "serve", "serve_sensor": "serve",
    "NatsCredentials": "settings", "prefect_api_settings": "settings", "resolve_nats": "settings",
    "firing_result": "tasks", "publish_event": "tasks", "wait_for_events": "tasks", "wait_for_events_sync": "tasks",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
