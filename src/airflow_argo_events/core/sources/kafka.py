"""Argo's kafka event source (aiokafka): a consumer group, or one partition, of a topic.

Payload (``KafkaEventData``): ``{"topic", "key", "partition", "body", "timestamp", "headers",
"metadata"}``; ``timestamp`` is Go's ``time.Time.String()`` of the record time, ``body`` the
record value as base64 (Go's ``[]byte``) or, with ``jsonBody``, the JSON itself. The event id
is Argo's ``<eventsource>:<event>:<first url>:<topic>:<partition>:<offset>``, so a record read
twice is stored once on the bus (``Nats-Msg-Id``).

Offsets move only after the bus has the event:

1. Records are handed to the runtime without waiting (up to ``MAX_IN_FLIGHT``), each with
   a future the runtime resolves once JetStream acknowledged it.
2. Per partition, the longest prefix of resolved records is committed (the consumer
   group's offset; in ``partition`` mode a small record in the EventSource's KV bucket,
   which Argo does not keep: it starts from the newest record every time).
3. A record the runtime could not store (``False``) rewinds its partition to that record,
   so it is read again; one that can never be stored (too large) is passed over, as Argo's
   "skip it". A crash between publish and commit re-reads records the bus de-duplicates.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.kafka_client import client_kwargs
from airflow_argo_events.core.secrets import SecretNotFound
from airflow_argo_events.core.sources.base import Source, SourceEvent, with_metadata
from airflow_argo_events.core.sources.calendar import go_time_string
from airflow_argo_events.core.sources.queues import Backoff, body_of

log = logging.getLogger("airflow_argo_events.sources")

MAX_IN_FLIGHT = 1000
"""Records handed over but not yet on the bus, per event: then reading waits for the oldest."""
COMMIT_EVERY = 0.5
"""Seconds between offset commits while records flow (and at every pause and on stop)."""
GO_ZERO_TIME = "0001-01-01 00:00:00 +0000 UTC"


def kafka_timestamp(ms: int | None) -> str:
    """sarama's record time as Go prints it (``time.Time{}`` when the record has none)."""
    if ms is None or ms < 0:
        return GO_ZERO_TIME
    return go_time_string(datetime.fromtimestamp(ms / 1000, timezone.utc))


def event_id(es: str, event: str, url: str, topic: str, partition: int, offset: int) -> str:
    """Argo's genUniqueID: ``eventSourceName:eventName:kafka-url:topic:partition:offset``."""
    return f"{es}:{event}:{url.split(',')[0]}:{topic}:{partition}:{offset}"


class _InFlight:
    """Records handed to the runtime, per partition, in offset order."""

    def __init__(self) -> None:
        self.by_tp: dict[Any, deque[tuple[int, asyncio.Future[bool]]]] = {}
        self.count = 0
        self.rewound: set[Any] = set()
        """Partitions rewound or revoked since the current batch was fetched: the rest of that batch is stale."""

    def add(self, tp: Any, offset: int, fut: asyncio.Future[bool]) -> None:
        self.by_tp.setdefault(tp, deque()).append((offset, fut))
        self.count += 1

    def settled(self) -> tuple[dict[Any, int], dict[Any, int]]:
        """(next offset to commit, offset to rewind to) per partition, from the resolved prefix."""
        commit: dict[Any, int] = {}
        rewind: dict[Any, int] = {}
        for tp, q in self.by_tp.items():
            while q and q[0][1].done():
                offset, fut = q[0]
                if not fut.cancelled() and fut.exception() is None and fut.result() is False:
                    rewind[tp] = offset
                    self.rewound.add(tp)
                    self.count -= len(q)
                    q.clear()
                    break
                q.popleft()
                self.count -= 1
                commit[tp] = offset + 1
        return commit, rewind

    def oldest(self) -> list[asyncio.Future[bool]]:
        return [q[0][1] for q in self.by_tp.values() if q]

    def drop(self, tps: Any) -> None:
        for tp in tps:
            self.count -= len(self.by_tp.pop(tp, ()))


class KafkaSource(Source):
    type = "kafka"
    _live: tuple[Any, _InFlight] | None = None

    def _kwargs(self) -> dict[str, Any]:
        s = self.spec
        if s.schema_registry is not None:
            raise SpecError([(f"{self.where}.schemaRegistry", "Avro through a schema registry is not supported here")],
                            source=self.cfg.source)
        if s.aws_msk_iam_auth is not None:
            raise SpecError([(f"{self.where}.awsMskIamAuth", "MSK IAM authentication is not supported here")],
                            source=self.cfg.source)
        try:
            return client_kwargs(s.url, s.tls, s.sasl, self.ctx.secrets, self.where)
        except SecretNotFound as err:  # it names the field: end the run with that one line
            raise SpecError([("", str(err))], source=self.cfg.source) from None

    @property
    def where(self) -> str:
        return f"spec.kafka.{self.cfg.name}"

    def _state_key(self, partition: int) -> str:
        return f"kafka/{self.cfg.name}/{self.spec.topic}/{partition}"

    async def events(self) -> AsyncIterator[SourceEvent]:
        from aiokafka.errors import KafkaError

        kwargs = self._kwargs()
        backoff = Backoff()
        while True:
            try:
                async for ev in self._session(kwargs, backoff):
                    yield ev
            except asyncio.CancelledError:
                raise
            except SpecError:
                raise
            except (KafkaError, OSError, asyncio.TimeoutError) as err:
                await backoff.wait(self.label, err)

    async def _session(self, kwargs: dict[str, Any], backoff: Backoff) -> AsyncIterator[SourceEvent]:
        """One consumer from connect to the first broker error: read, hand over, commit what the bus has."""
        from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

        s = self.spec
        group = s.consumer_group
        inflight = _InFlight()
        consumer = AIOKafkaConsumer(
            group_id=group.group_name if group else None, enable_auto_commit=False,
            auto_offset_reset="earliest" if group and group.oldest else "latest",
            partition_assignment_strategy=_strategies(group.rebalance_strategy if group else ""),
            client_id=f"argo-events-{self.cfg.source}-{self.cfg.name}", **kwargs)
        source = self

        class Revoked(ConsumerRebalanceListener):  # type: ignore[misc]
            """Commit what the bus has before partitions move, and forget the rest (the next owner re-reads)."""

            async def on_partitions_revoked(self, revoked: Any) -> None:
                await source._commit(consumer, inflight, only=set(revoked))
                inflight.drop(revoked)
                inflight.rewound.update(revoked)  # the rest of the batch in hand is no longer ours

            async def on_partitions_assigned(self, assigned: Any) -> None:
                pass

        self._live = (consumer, inflight)
        try:
            await consumer.start()
            if group is not None:
                consumer.subscribe([s.topic], listener=Revoked())
            else:
                await self._assign(consumer, TopicPartition(s.topic, int(s.partition)))
            last_commit = asyncio.get_running_loop().time()
            pause = 1.0 / s.limit_events_per_second if s.limit_events_per_second > 0 else 0.0
            while True:
                batch = await consumer.getmany(timeout_ms=int(COMMIT_EVERY * 1000), max_records=200)
                backoff.reset()
                inflight.rewound.clear()  # seek() dropped what was prefetched: this batch is current
                for tp, records in batch.items():
                    if tp not in consumer.assignment():
                        continue
                    for m in records:
                        if tp in inflight.rewound:  # rewound or revoked since the fetch: the rest is stale
                            break
                        ev = SourceEvent(with_metadata(self._payload(m), self),
                                         id=event_id(self.cfg.source, self.cfg.name, s.url, m.topic, m.partition,
                                                     m.offset)).expect_ack()
                        yield ev
                        assert ev.published is not None
                        inflight.add(tp, m.offset, ev.published)
                        if pause:
                            await asyncio.sleep(pause)
                        while inflight.count >= MAX_IN_FLIGHT:  # back-pressure: the bus is behind
                            await asyncio.wait(inflight.oldest(), return_when=asyncio.FIRST_COMPLETED)
                            await self._commit(consumer, inflight)
                now = asyncio.get_running_loop().time()
                if not batch or now - last_commit >= COMMIT_EVERY:
                    await self._commit(consumer, inflight)
                    last_commit = now
        except Exception:  # a broker error: commit what the bus has, then reconnect (events() backs off)
            await self._stop(wait=0)
            raise
        # Cancelled (the runtime stops): close() commits once the runtime has flushed its queue.

    async def close(self) -> None:
        await self._stop(wait=5)

    async def _stop(self, wait: float) -> None:
        if self._live is None:
            return
        consumer, inflight = self._live
        self._live = None
        try:
            if wait and inflight.oldest():
                await asyncio.wait(inflight.oldest(), timeout=wait)
            await asyncio.wait_for(self._commit(consumer, inflight), timeout=10)
        except Exception as err:  # noqa: BLE001 - uncommitted records are read again and de-duplicated
            log.warning("%s: final offset commit failed: %s", self.label, err)
        await consumer.stop()

    async def _assign(self, consumer: Any, tp: Any) -> None:
        """Partition mode: that partition, from the stored offset (our extension) or the newest (Argo)."""
        await consumer.topics()  # a metadata refresh, so the topic's partitions are known
        partitions = consumer.partitions_for_topic(tp.topic)
        if partitions is None or tp.partition not in partitions:
            raise SpecError([(f"{self.where}.partition", f"partition {tp.partition} is not available in topic "
                                                         f"{tp.topic!r} (it has {sorted(partitions or [])})")],
                            source=self.cfg.source)
        consumer.assign([tp])
        stored = await self.ctx.state_get(self._state_key(tp.partition)) if self.ctx.state_get else None
        if isinstance(stored, int):
            consumer.seek(tp, stored)
        else:
            await consumer.seek_to_end(tp)

    async def _commit(self, consumer: Any, inflight: _InFlight, only: set[Any] | None = None) -> None:
        from aiokafka.errors import CommitFailedError, IllegalStateError

        commit, rewind = inflight.settled()
        for tp, offset in rewind.items():
            log.warning("%s: %s[%d] offset %d was not stored on the bus; reading it again", self.label, tp.topic,
                        tp.partition, offset)
            consumer.seek(tp, offset)
        assigned = consumer.assignment()
        commit = {tp: o for tp, o in commit.items() if tp in assigned and (only is None or tp in only)}
        if not commit:
            return
        if self.spec.consumer_group is None:
            if self.ctx.state_put is not None:
                for tp, offset in commit.items():
                    await self.ctx.state_put(self._state_key(tp.partition), offset)
            return
        try:
            await consumer.commit(commit)
        except (CommitFailedError, IllegalStateError) as err:  # a rebalance: the next owner re-reads, the bus dedups
            log.warning("%s: offset commit refused (%s); those records will be read again", self.label, err)

    def _payload(self, m: Any) -> dict[str, Any]:
        value = m.value
        return {
            "topic": m.topic,
            "key": (m.key or b"").decode("utf-8", "replace"),
            "partition": m.partition,
            "body": None if value is None else body_of(value, self.spec.json_body),
            "timestamp": kafka_timestamp(m.timestamp),
            "headers": {k: (v or b"").decode("utf-8", "replace") for k, v in (m.headers or ())},
        }


def _strategies(name: str) -> tuple[Any, ...]:
    from aiokafka.coordinator.assignors.range import RangePartitionAssignor
    from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from aiokafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor

    return ({"roundrobin": RoundRobinPartitionAssignor, "sticky": StickyPartitionAssignor}
            .get(name, RangePartitionAssignor),)


SOURCES = {"kafka": KafkaSource}
