"""Argo Events' event-driven model for Apache Airflow 3.

``airflow_argo_events.core`` holds everything that does not need Airflow (manifests,
CloudEvents, the NATS JetStream bus, the sensor engine); the packages beside it
(``hooks``, ``triggers``, ``sensors``, ``operators``, ``queues``) adapt it to Airflow.
"""

from __future__ import annotations

__version__ = "0.1.0"
