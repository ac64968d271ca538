"""Durable pull consumers with explicit ack: one per (sensor, trigger, dependency), as Argo."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from airflow_argo_events.core.events import Event, decode
from airflow_argo_events.core.exceptions import EventBusError, EventDecodeError

DeliverFrom = Literal["new", "all"] | datetime


def durable_name(*parts: str) -> str:
    """Argo's durable naming: ``group-<hash>`` of the sensor, trigger and dependency."""
    digest = hashlib.sha256("-".join(parts).encode()).hexdigest()[:20]
    return f"group-{digest}"


@dataclass(slots=True)
class Delivery:
    """One message: the decoded event, or ``error`` if it was not a CloudEvent."""

    msg: Msg
    event: Event | None
    error: str | None = None

    @property
    def stream_seq(self) -> int:
        return self.msg.metadata.sequence.stream

    @property
    def num_delivered(self) -> int:
        return self.msg.metadata.num_delivered

    async def ack(self, wait: bool = True) -> None:
        """Ack; with ``wait`` (default) until the server recorded it, as Argo's AckSync.

        ``wait=False`` sends the ack without waiting: faster, and safe wherever a lost ack
        only causes a redelivery that de-duplication absorbs.
        """
        await _bus(self.msg.ack_sync() if wait else self.msg.ack(), "ack")

    async def nak(self, delay: float | None = None) -> None:
        await _bus(self.msg.nak(delay=delay), "nak")

    async def in_progress(self) -> None:
        await _bus(self.msg.in_progress(), "in-progress")

    async def term(self) -> None:
        await _bus(self.msg.term(), "term")


_NATS_ERRORS = (nats.errors.Error, nats.js.errors.APIError, ConnectionError, asyncio.TimeoutError, TimeoutError)


async def _bus(aw: Awaitable[object], what: str) -> None:
    """Await a NATS call; client errors become EventBusError (translated at the bus seam)."""
    try:
        await aw
    except _NATS_ERRORS as err:
        raise EventBusError(f"{what} failed: {type(err).__name__}: {err}".rstrip(": ")) from err


class Subscription:
    """A durable pull consumer on one subject; iterate it for Deliveries.

    ``deliver`` chooses where a *new* durable starts: ``"new"`` (Argo's DeliverNew),
    ``"all"``, or a datetime (DeliverByStartTime). An existing durable resumes where it
    stopped whatever ``deliver`` says.
    """

    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        subject: str,
        durable: str,
        deliver: DeliverFrom = "new",
        ack_wait: float = 30.0,
        max_ack_pending: int = 1000,
        batch: int = 64,
    ) -> None:
        self._js = js
        self.stream = stream
        self.subject = subject
        self.durable = durable
        self._deliver = deliver
        self._ack_wait = ack_wait
        self._max_ack_pending = max_ack_pending
        self._batch = batch
        self._psub: JetStreamContext.PullSubscription | None = None

    def _config(self) -> api.ConsumerConfig:
        cfg = api.ConsumerConfig(
            durable_name=self.durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self._ack_wait,
            max_ack_pending=self._max_ack_pending,
            filter_subject=self.subject,
        )
        if isinstance(self._deliver, datetime):
            cfg.deliver_policy = api.DeliverPolicy.BY_START_TIME
            cfg.opt_start_time = self._deliver.isoformat().replace("+00:00", "Z")
        elif self._deliver == "all":
            cfg.deliver_policy = api.DeliverPolicy.ALL
        else:
            cfg.deliver_policy = api.DeliverPolicy.NEW
        return cfg

    async def start(self) -> Subscription:
        try:
            self._psub = await self._js.pull_subscribe(
                self.subject, durable=self.durable, stream=self.stream, config=self._config()
            )
        except _NATS_ERRORS as err:
            raise EventBusError(f"consumer {self.durable} on {self.subject}: {type(err).__name__}: {err}") from err
        return self

    async def fetch(self, batch: int | None = None, timeout: float = 5.0) -> list[Delivery]:
        """Up to ``batch`` deliveries; an empty list when none arrived within ``timeout``."""
        assert self._psub is not None, "call start() first"
        want = batch or self._batch
        # nats-py's fetch(n) holds a partial batch until n messages came or the timeout
        # passed, so a trickle of events would wait up to ``timeout`` (past ack_wait, which
        # makes the server redeliver them). Wait for one message, then take at once only what
        # the consumer says is pending behind it.
        try:
            msgs = await self._psub.fetch(1, timeout=timeout)
            meta = msgs[-1].metadata if msgs else None
            pending = meta.num_pending if meta else 0
            if meta is not None and want > 1 and (pending or meta.num_delivered > 1):
                # num_pending leaves out redeliveries: after one, ask briefly for more of them
                more, wait = (min(want - 1, pending), 1.0) if pending else (want - 1, 0.05)
                try:
                    msgs += await self._psub.fetch(more, timeout=wait)
                except (nats.errors.TimeoutError, asyncio.TimeoutError):
                    pass  # another reader took them first, or no more were due
        except (nats.errors.TimeoutError, asyncio.TimeoutError):
            return []
        except (nats.errors.Error, nats.js.errors.APIError, ConnectionError) as err:
            raise EventBusError(f"fetch from {self.subject} ({self.durable}): {type(err).__name__}: {err}") from err
        return [to_delivery(m) for m in msgs]

    async def info(self) -> api.ConsumerInfo:
        """The server's view of this consumer (pending, ack pending, last delivery)."""
        try:
            return await self._js.consumer_info(self.stream, self.durable)
        except _NATS_ERRORS as err:
            raise EventBusError(f"consumer {self.durable}: {type(err).__name__}: {err}") from err

    async def __aiter__(self) -> AsyncIterator[Delivery]:
        while True:
            for d in await self.fetch():
                yield d

    async def unsubscribe(self) -> None:
        """Stop reading; the durable consumer stays on the server and keeps its position."""
        if self._psub is not None:
            psub, self._psub = self._psub, None
            try:
                await psub.unsubscribe()
            except (nats.errors.ConnectionClosedError, nats.errors.BadSubscriptionError):
                pass

    async def delete(self) -> None:
        """Remove the durable consumer from the server."""
        await self.unsubscribe()
        try:
            await self._js.delete_consumer(self.stream, self.durable)
        except nats.js.errors.NotFoundError:
            pass


def to_delivery(msg: Msg) -> Delivery:
    try:
        return Delivery(msg, decode(msg.data, msg.headers))
    except EventDecodeError as err:
        return Delivery(msg, None, str(err))
