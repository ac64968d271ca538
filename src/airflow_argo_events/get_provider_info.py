"""Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``).

``package-name`` must equal the distribution name and ``name``/``description`` must be
present, or Airflow's CLI fails for every command.
"""

from __future__ import annotations

from typing import Any

from airflow_argo_events import __version__

INTEGRATION = "Argo Events"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-argo-events",
        "name": "Argo Events",
        "description": "Argo Events' EventSources, NATS JetStream EventBus, Sensors and actions for Airflow.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "external-doc-url": "https://argoproj.github.io/argo-events/",
                "tags": ["software"],
            }
        ],
        "hooks": [{"integration-name": INTEGRATION, "python-modules": [
            "airflow_argo_events.hooks.nats", "airflow_argo_events.hooks.kubernetes"]}],
        "triggers": [{"integration-name": INTEGRATION, "python-modules": [
            "airflow_argo_events.triggers.sensor", "airflow_argo_events.triggers.eventsource"]}],
        "sensors": [{"integration-name": INTEGRATION, "python-modules": ["airflow_argo_events.sensors.event"]}],
        "operators": [{"integration-name": INTEGRATION, "python-modules": [
            "airflow_argo_events.operators.publish", "airflow_argo_events.operators.action"]}],
        "queues": ["airflow_argo_events.queues.nats.NatsMessageQueueProvider"],
        "connection-types": [
            {"connection-type": "nats", "hook-class-name": "airflow_argo_events.hooks.nats.NatsHook",
             "hook-name": "NATS JetStream"}
        ],
    }
