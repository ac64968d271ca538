"""Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``).

``package-name`` must equal the distribution name and ``name``/``description`` must be
present, or Airflow's CLI fails for every command.
"""

from __future__ import annotations

import json
from typing import Any

from airflow_argo_events import __version__

INTEGRATION = "Argo Events"


def _field(label: str, description: str, **schema: Any) -> dict[str, Any]:
    return {"label": label, "description": description, "schema": {"type": "string", **schema}}


CONN_FIELDS: dict[str, dict[str, Any]] = {
    "servers": _field("Servers", "Comma-separated NATS URLs of a cluster; replaces Host and Port.",
                      example="nats://n1:4222,nats://n2:4222"),
    "stream": _field("Stream", "The JetStream stream (and subject prefix) of the EventBus.", default="default"),
    "token": _field("Token", "NATS token authentication (or put the token in Password and leave Login empty).",
                    format="password"),
    "creds_file": _field("Credentials file", "Path of a NATS .creds file (JWT + NKey) on the workers and triggerer."),
    "nkey_seed_file": _field("NKey seed file", "Path of an NKey seed file."),
    "nkey_seed": _field("NKey seed", "An NKey seed (SU...), instead of a file.", format="password"),
    "tls_ca": _field("TLS CA file", "CA bundle to verify the server; setting it switches to tls://."),
    "tls_cert": _field("TLS client certificate", "Client certificate file for mutual TLS."),
    "tls_key": _field("TLS client key", "Client key file for mutual TLS."),
    "tls_insecure": {"label": "TLS: skip verification", "description": "Do not verify the server's certificate.",
                     "schema": {"type": "boolean", "default": False}},
    "name": _field("Client name", "The name this client shows in the server's monitoring."),
}
"""The ``nats`` connection's extra fields (``conn-fields`` in get_provider_info, Airflow 3.2+)."""

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema"],
    "relabeling": {"login": "User", "host": "Host (or leave empty and set Servers)"},
    "placeholders": {"host": "127.0.0.1", "port": "4222", "login": "user (optional)",
                     "password": "password, or a token when User is empty",
                     "extra": json.dumps({"servers": "nats://n1:4222,nats://n2:4222", "stream": "default"})},
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-argo-events",
        "name": "Argo Events",
        "description": "Argo Events' EventSources, NATS JetStream EventBus, Sensors and actions for Airflow.",
        "state": "ready",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "external-doc-url": "https://argoproj.github.io/argo-events/",
                # The provider's own pages (docs/ in the repository), as official providers list theirs.
                "how-to-guide": ["/docs/airflow/operators.md", "/docs/airflow/sensors.md",
                                 "/docs/airflow/triggers.md", "/docs/airflow/connections.md"],
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
             "hook-name": "NATS JetStream", "conn-fields": CONN_FIELDS, "ui-field-behaviour": UI_FIELD_BEHAVIOUR}
        ],
    }
