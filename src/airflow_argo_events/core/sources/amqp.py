"""Argo's amqp event source (RabbitMQ through aio-pika): declare, bind, consume, ack after the bus has it.

Payload (``AMQPEventData``): contentType, contentEncoding, deliveryMode, priority,
correlationId, replyTo, expiration, messageId, timestamp, type, appId, exchange,
routingKey, body, metadata.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow_argo_events.core.sources.base import Source, SourceEvent, with_metadata
from airflow_argo_events.core.sources.queues import Backoff, body_of


class AMQPSource(Source):
    type = "amqp"

    def _url(self) -> str:
        if self.spec.url_secret is not None:
            return self.ctx.secrets.get(self.spec.url_secret, f"{self.label}.urlSecret")
        url = self.spec.url
        a = self.spec.auth
        if a is not None and a.username and a.password:
            user = self.ctx.secrets.get(a.username, f"{self.label}.auth.username")
            pw = self.ctx.secrets.get(a.password, f"{self.label}.auth.password")
            scheme, rest = url.split("://", 1)
            url = f"{scheme}://{user}:{pw}@{rest.split('@')[-1]}"
        return url

    async def events(self) -> AsyncIterator[SourceEvent]:
        import aio_pika

        backoff = Backoff()
        s = self.spec
        xd = s.exchange_declare or {}
        qd = s.queue_declare or {}
        consume = s.consume or {}
        auto_ack = bool(consume.get("autoAck", False))
        while True:
            try:
                conn = await aio_pika.connect_robust(self._url())
                try:
                    ch = await conn.channel()
                    ex = await ch.declare_exchange(s.exchange_name, s.exchange_type, durable=xd.get("durable", True),
                                                   auto_delete=xd.get("autoDelete", False),
                                                   internal=xd.get("internal", False))
                    q = await ch.declare_queue(qd.get("name", ""), durable=qd.get("durable", False),
                                               auto_delete=qd.get("autoDelete", False),
                                               exclusive=qd.get("exclusive", True), arguments=qd.get("arguments"))
                    await q.bind(ex, routing_key=s.routing_key)
                    backoff.reset()
                    async with q.iterator(no_ack=auto_ack) as it:
                        async for m in it:
                            ev = SourceEvent(with_metadata(self._payload(m), self)).expect_ack()
                            yield ev
                            if not auto_ack:
                                assert ev.published is not None
                                ok = await ev.published
                                await (m.ack() if ok else m.nack(requeue=True))
                finally:
                    await conn.close()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                await backoff.wait(self.label, err)

    def _payload(self, m: Any) -> dict[str, Any]:
        return {
            "contentType": m.content_type or "", "contentEncoding": m.content_encoding or "",
            "deliveryMode": int(m.delivery_mode or 0), "priority": int(m.priority or 0),
            "correlationId": m.correlation_id or "", "replyTo": m.reply_to or "",
            "expiration": str(m.expiration or ""), "messageId": m.message_id or "",
            "timestamp": m.timestamp.isoformat() if m.timestamp else "", "type": m.type or "",
            "appId": m.app_id or "", "exchange": m.exchange or "", "routingKey": m.routing_key or "",
            "body": body_of(m.body, self.spec.json_body),
        }


SOURCES = {"amqp": AMQPSource}
