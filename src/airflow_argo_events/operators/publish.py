"""PublishEventOperator: a task emits a CloudEvent onto the bus (how DAGs talk over NATS)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from airflow_argo_events.core.events import new_event
from airflow_argo_events.triggers._common import short_hash
from airflow_argo_events.version_compat import BaseOperator


class PublishEventOperator(BaseOperator):
    """Publishes one CloudEvent to ``<stream>.<event_source>.<event>``, as an Argo EventSource would.

    The event id is derived from the task instance (DAG, run, task, map index), so a retried
    task republishes the same id and the bus drops the duplicate.

    :param event_source: the EventSource name (CloudEvent source).
    :param event: the event name (CloudEvent subject).
    :param data: the JSON payload.
    :param type: the CloudEvent type, default ``airflow``.
    :param nats_conn_id: the ``nats`` connection.

    ``data``, ``event_source``, ``event``, ``type`` and ``nats_conn_id`` are templated.

    .. code-block:: python

        PublishEventOperator(task_id="emit", event_source="shop", event="order", data={"id": 1})
    """

    template_fields: Sequence[str] = ("data", "event_source", "event", "type", "nats_conn_id")
    ui_color = "#a3d3f7"

    def __init__(self, *, event_source: str, event: str, data: Any = None, type: str = "airflow",
                 nats_conn_id: str = "nats_default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.event_source = event_source
        self.event = event
        self.data = data
        self.type = type
        self.nats_conn_id = nats_conn_id

    def execute(self, context: Any) -> str:
        ti = context["ti"]
        event_id = short_hash(ti.dag_id, ti.run_id, ti.task_id, str(getattr(ti, "map_index", -1))) * 2
        event = new_event(source=self.event_source, subject=self.event, type=self.type, data=self.data, id=event_id)

        async def publish() -> Any:
            from airflow_argo_events.hooks.nats import NatsHook

            async with NatsHook(self.nats_conn_id).get_async_conn() as bus:
                return await bus.publish(event)

        result = asyncio.run(publish())
        self.log.info("published event %s to %s.%s (seq %s%s)", event.id, self.event_source, self.event, result.seq,
                      ", duplicate of an earlier attempt" if result.duplicate else "")
        return event.id
