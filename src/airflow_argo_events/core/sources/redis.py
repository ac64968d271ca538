"""Argo's redis (pub/sub) and redisStream event sources (redis-py asyncio).

Pub/sub payload: ``{"channel", "pattern", "body", "metadata"}``. Stream payload:
``{"stream", "message_id", "values", "metadata"}``; stream entries are read through a
consumer group and XACKed only after the bus has the event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow_argo_events.core.sources.base import Source, SourceEvent, with_metadata
from airflow_argo_events.core.sources.queues import Backoff, body_of


def _client(source: Source) -> Any:
    import redis.asyncio as aioredis

    host, _, port = source.spec.host_address.partition(":")
    password = source.ctx.secrets.maybe(source.spec.password, f"{source.label}.password")
    return aioredis.Redis(host=host or "127.0.0.1", port=int(port or 6379), db=source.spec.db,
                          username=source.spec.username or None, password=password,
                          ssl=source.spec.tls is not None)


class RedisSource(Source):
    type = "redis"

    async def events(self) -> AsyncIterator[SourceEvent]:
        backoff = Backoff()
        while True:
            client = _client(self)
            try:
                pubsub = client.pubsub()
                channels = [f"{self.spec.namespace}{c}" if self.spec.namespace else c for c in self.spec.channels]
                await pubsub.psubscribe(*channels)
                backoff.reset()
                while True:
                    m = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                    if m is None:
                        continue
                    data = m["data"] if isinstance(m["data"], bytes) else str(m["data"]).encode()
                    channel = m["channel"].decode() if isinstance(m["channel"], bytes) else m["channel"]
                    pattern = m.get("pattern") or b""
                    payload = {"channel": channel,
                               "pattern": pattern.decode() if isinstance(pattern, bytes) else pattern,
                               "body": body_of(data, self.spec.json_body, as_text=True)}
                    yield SourceEvent(with_metadata(payload, self))
            except asyncio.CancelledError:
                raise
            except Exception as err:
                await backoff.wait(self.label, err)
            finally:
                await client.aclose()


class RedisStreamSource(Source):
    type = "redisStream"

    async def events(self) -> AsyncIterator[SourceEvent]:
        from redis.exceptions import ResponseError

        group = self.spec.consumer_group or f"argo-events-{self.cfg.source}-{self.cfg.name}"
        count = self.spec.max_msg_count_per_read or 10
        backoff = Backoff()
        while True:
            client = _client(self)
            try:
                for stream in self.spec.streams:
                    try:
                        await client.xgroup_create(stream, group, id="$", mkstream=True)
                    except ResponseError as err:
                        if "BUSYGROUP" not in str(err):
                            raise
                backoff.reset()
                # first our own pending entries (a crash before XACK), then new ones
                start = "0"
                while True:
                    streams = {s: start for s in self.spec.streams}
                    got = await client.xreadgroup(group, "argo-events", streams, count=count, block=2000)
                    if start == "0" and not any(entries for _, entries in got or []):
                        start = ">"
                        continue
                    for stream, entries in got or []:
                        name = stream.decode() if isinstance(stream, bytes) else stream
                        for msg_id, values in entries:
                            mid = msg_id.decode() if isinstance(msg_id, bytes) else msg_id
                            vals = {(k.decode() if isinstance(k, bytes) else k):
                                    (v.decode() if isinstance(v, bytes) else v) for k, v in values.items()}
                            ev = SourceEvent(with_metadata({"stream": name, "message_id": mid, "values": vals}, self),
                                             id=_stream_event_id(self, name, mid)).expect_ack()
                            yield ev
                            assert ev.published is not None
                            if await ev.published:
                                await client.xack(name, group, mid)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                await backoff.wait(self.label, err)
            finally:
                await client.aclose()


SOURCES = {"redis": RedisSource, "redisStream": RedisStreamSource}


def _stream_event_id(source: Source, stream: str, message_id: str) -> str:
    """Deterministic per entry, so an entry re-read after a crash is de-duplicated on the bus."""
    import hashlib

    return hashlib.sha256(f"{source.cfg.source}/{source.cfg.name}/{stream}/{message_id}".encode()).hexdigest()[:32]
