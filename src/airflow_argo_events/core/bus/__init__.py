"""The EventBus: NATS JetStream carrying CloudEvents exactly as Argo's JetStream bus does.

>>> async def main():                                          # doctest: +SKIP
...     async with EventBus(NatsSettings.from_url("nats://127.0.0.1:4222")) as bus:
...         await bus.publish(new_event(source="shop", subject="order", type="webhook", data={}))
"""

from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass
from types import TracebackType

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import APIError

from airflow_argo_events.core.bus.connection import shared_connection
from airflow_argo_events.core.bus.consumer import HEARTBEAT, DeliverFrom, Delivery, Subscription, durable_name
from airflow_argo_events.core.bus.kv import StateConflict, StateStore, StateTooLarge, translated
from airflow_argo_events.core.bus.pipeline import Pipeline
from airflow_argo_events.core.bus.settings import NatsSettings
from airflow_argo_events.core.bus.stream import StreamSettings, ensure_stream
from airflow_argo_events.core.events import Event, encode
from airflow_argo_events.core.exceptions import EventBusError

_TTL_REFUSED: weakref.WeakSet[Client] = weakref.WeakSet()
"""Connections whose server refused to turn on per-message TTLs for a bucket (asked once)."""

__all__ = [
    "Delivery", "EventBus", "NatsSettings", "Pipeline", "PublishResult", "StateConflict", "StateStore",
    "StateTooLarge", "StreamSettings", "Subscription", "durable_name",
]


@dataclass(frozen=True, slots=True)
class PublishResult:
    seq: int
    duplicate: bool


class EventBus:
    """One user of the shared NATS connection: publish, subscribe, sensor state.

    Enter it with ``async with``; leaving releases the shared connection (closed when the
    last user in the process leaves). ``ensure_stream`` runs once on enter.
    """

    def __init__(
        self,
        settings: NatsSettings,
        stream: StreamSettings | None = None,
        *,
        ensure: bool = True,
    ) -> None:
        self.settings = settings
        self.stream = stream or StreamSettings()
        self._ensure = ensure
        self._cm: contextlib.AbstractAsyncContextManager[Client] | None = None
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._subs: list[Subscription] = []
        self._pipeline: Pipeline | None = None

    async def __aenter__(self) -> EventBus:
        self._cm = shared_connection(self.settings)
        self._nc = await self._cm.__aenter__()
        self._js = self._nc.jetstream()
        if self._ensure:
            try:
                await ensure_stream(self._js, self.stream)
            except BaseException:
                await self.close()
                raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
        if self._pipeline is not None:
            pipeline, self._pipeline = self._pipeline, None
            await pipeline.close()
        if self._cm is not None:
            cm, self._cm = self._cm, None
            self._nc = self._js = None
            await cm.__aexit__(None, None, None)

    @property
    def nc(self) -> Client:
        if self._nc is None:
            raise EventBusError("EventBus used outside 'async with'")
        return self._nc

    @property
    def reconnects(self) -> int:
        """How often the connection was re-established: a change means messages in flight
        to this process when it dropped may have been lost (they come back after ack_wait)."""
        return int(self._nc.stats.get("reconnects", 0)) if self._nc is not None else 0

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise EventBusError("EventBus used outside 'async with'")
        return self._js

    async def publish(self, event: Event, timeout: float = 5.0) -> PublishResult:
        """Publish to ``<stream>.<source>.<subject>`` with ``Nats-Msg-Id`` = event id.

        A republished id inside the stream's duplicate window is dropped by the server
        (``duplicate=True``), so retries after a lost ack never make a second event.
        """
        subject = self.stream.subject(event.source, event.subject)
        try:
            ack = await self.js.publish(
                subject, encode(event), timeout=timeout, stream=self.stream.name,
                headers={"Nats-Msg-Id": event.id},
            )
        except (nats.errors.Error, APIError, TimeoutError) as err:
            raise EventBusError(f"publish of event {event.id} to {subject} failed: {err or type(err).__name__}") from err
        return PublishResult(ack.seq, bool(ack.duplicate))

    async def publish_raw(self, subject: str, data: bytes, headers: dict[str, str] | None = None,
                          timeout: float = 5.0) -> PublishResult:
        """Publish bytes as they are (the dead-letter path); errors become EventBusError."""
        ack = await translated(self.js.publish(subject, data, timeout=timeout, stream=self.stream.name,
                                               headers=headers), f"publish to {subject}")
        return PublishResult(ack.seq, bool(ack.duplicate))

    async def subscribe(
        self,
        durable: str,
        event_source: str = "*",
        event_name: str = "*",
        deliver: DeliverFrom = "new",
        **kwargs: object,
    ) -> Subscription:
        """A started durable pull consumer for one EventSource/event pair (``*`` = any).

        Its long pull requests ask for idle heartbeats (``heartbeat``, default ``HEARTBEAT``
        s; None: none), so one a dead node took with it is noticed in seconds.
        """
        kwargs.setdefault("heartbeat", HEARTBEAT)
        sub = Subscription(
            self.js, self.stream.name, self.stream.subject(event_source, event_name), durable,
            deliver=deliver, nc=self.nc, **kwargs,  # type: ignore[arg-type]
        )
        await sub.start()
        self._subs.append(sub)
        return sub

    def pipeline(self) -> Pipeline:
        """Confirmed requests sent and awaited in batches (state writes, acks): see ``pipeline.py``."""
        if self._pipeline is None:
            self._pipeline = Pipeline(self.nc)
        return self._pipeline

    async def state(self, bucket: str) -> StateStore:
        """The KV bucket holding one sensor's state (created if absent)."""
        ttl = self.msg_ttl and self.nc not in _TTL_REFUSED
        store = await StateStore.open(self.js, bucket, replicas=self.stream.replicas, pipeline=self.pipeline(),
                                      msg_ttl=ttl)
        if ttl and not store.expiring_markers:
            # refused (no permission to update streams, a node older than 2.11): each open would
            # wait for the same answer, 5 s when the request is denied in silence
            _TTL_REFUSED.add(self.nc)
        return store

    @property
    def msg_ttl(self) -> bool:
        """The server expires messages given a ``Nats-TTL`` (NATS 2.11 and later)."""
        try:
            version = self.nc.connected_server_version
            return (version.major, version.minor) >= (2, 11)
        except Exception:  # not connected, or a version string nats-py cannot read
            return False
