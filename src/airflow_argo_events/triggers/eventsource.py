"""EventSourceTrigger: one event of an Argo EventSource running in the triggerer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_argo_events.core.events import Event
from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.runtime.eventsource_runtime import EventSourceRuntime
from airflow_argo_events.core.spec.eventsource import EventSource
from airflow_argo_events.core.spec.loader import parse_manifest
from airflow_argo_events.hooks.nats import NatsHook
from airflow_argo_events.hooks.secrets import airflow_secrets
from airflow_argo_events.triggers._common import manifest_dict
from airflow_argo_events.triggers._metrics import AirflowStatsMetrics


class EventSourceTrigger(BaseEventTrigger):
    """Runs one event of an Argo EventSource (webhook, calendar, file, HDFS, queues) in the
    triggerer, publishes each event to the bus (when ``nats_conn_id`` is set) and yields it.

    In an ``AssetWatcher`` this schedules DAGs on raw events, which show up as asset events
    in the Airflow UI with the CloudEvent as payload.

    :param eventsource: an Argo EventSource manifest: a path, a dict or a model.
    :param event_name: which event of the manifest to run.
    :param nats_conn_id: publish every event to this bus too (``None``: do not publish).

    Secret references in the manifest (``authSecret``, ``webhookSecret``, ``accessKey``, ...)
    resolve from the environment, the secrets folder, then Airflow Variables and Connections
    (see :mod:`airflow_argo_events.hooks.secrets`).

    .. code-block:: python

        Asset("argo-events://webhook/example", watchers=[AssetWatcher(
            name="webhook", trigger=EventSourceTrigger(eventsource="es/webhook.yaml", event_name="example"))])
    """

    def __init__(self, *, eventsource: str | dict[str, Any] | EventSource, event_name: str,
                 nats_conn_id: str | None = "nats_default") -> None:
        super().__init__()
        self.eventsource = manifest_dict(eventsource, "EventSource")
        self.event_name = event_name
        self.nats_conn_id = nats_conn_id
        model = parse_manifest(self.eventsource, None, "EventSource")
        try:
            cfg = model.event(event_name)
        except KeyError as err:
            raise SpecError([("event_name", str(err).strip("'\""))]) from None
        if not cfg.supported:
            raise SpecError([(f"spec.{cfg.type}.{event_name}", f"event source type {cfg.type!r} is not supported")])

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"eventsource": self.eventsource, "event_name": self.event_name, "nats_conn_id": self.nats_conn_id})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        es = parse_manifest(self.eventsource, None, "EventSource")
        # Secret references resolve through Airflow Variables and Connections too (hooks/secrets.py).
        secrets = await airflow_secrets(es.event(self.event_name).spec)
        queue: asyncio.Queue[Event] = asyncio.Queue()

        async def emitted(event: Event) -> None:
            await queue.put(event)

        stop = asyncio.Event()
        if self.nats_conn_id:
            async with NatsHook(self.nats_conn_id).get_async_conn() as bus:
                rt = EventSourceRuntime(es, bus, only=[self.event_name], on_event=emitted, secrets=secrets,
                                        metrics=AirflowStatsMetrics(es.metadata.namespace or "default"))
                async for ev in self._drive(rt, queue, stop):
                    yield ev
        else:
            rt = EventSourceRuntime(es, None, only=[self.event_name], on_event=emitted, secrets=secrets)
            async for ev in self._drive(rt, queue, stop):
                yield ev

    @staticmethod
    async def _drive(rt: Any, queue: asyncio.Queue[Event], stop: asyncio.Event) -> AsyncIterator[TriggerEvent]:
        task = asyncio.create_task(rt.run(stop))
        getter: asyncio.Future[Event] | None = None
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    task.result()
                    return
                yield TriggerEvent(getter.result().to_json())
        finally:
            if getter is not None:
                getter.cancel()
            stop.set()
            await asyncio.gather(task, return_exceptions=True)
