"""The ``nats`` scheme for common-messaging's ``MessageQueueTrigger``.

.. code-block:: python

    MessageQueueTrigger(scheme="nats", dependencies=[{"name": "o", "eventSourceName": "shop",
                                                      "eventName": "order"}], nats_conn_id="nats_default")
"""

from __future__ import annotations

from typing import Any

from airflow.providers.common.messaging.providers.base_provider import BaseMessageQueueProvider

from airflow_argo_events.triggers.sensor import SensorTrigger


class NatsMessageQueueProvider(BaseMessageQueueProvider):
    """``MessageQueueTrigger(scheme="nats", **kwargs)`` builds a SensorTrigger from the kwargs."""

    scheme = "nats"

    def trigger_class(self) -> type[SensorTrigger]:
        return SensorTrigger

    def queue_matches(self, queue: str) -> bool:
        return queue.startswith("nats://")

    def trigger_kwargs(self, queue: str, **kwargs: Any) -> dict[str, Any]:
        """Deprecated URI form ``nats://<eventSourceName>/<eventName>``: one dependency on that event."""
        rest = queue[len("nats://"):]
        source, _, event = rest.partition("/")
        if not source or not event:
            raise ValueError(f"queue {queue!r}: expected nats://<eventSourceName>/<eventName>")
        return {"dependencies": [{"name": "message", "eventSourceName": source, "eventName": event}]}
