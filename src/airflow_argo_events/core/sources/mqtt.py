"""Argo's mqtt event source (aiomqtt). Payload: ``{"topic", "messageId", "body", "metadata"}``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from airflow_argo_events.core.sources.base import Source, SourceEvent, with_metadata
from airflow_argo_events.core.sources.queues import Backoff, body_of


class MQTTSource(Source):
    type = "mqtt"

    async def events(self) -> AsyncIterator[SourceEvent]:
        import aiomqtt

        url = urlsplit(self.spec.url if "://" in self.spec.url else f"tcp://{self.spec.url}")
        user = password = None
        if self.spec.auth is not None:
            user = self.ctx.secrets.maybe(self.spec.auth.username, f"{self.label}.auth.username")
            password = self.ctx.secrets.maybe(self.spec.auth.password, f"{self.label}.auth.password")
        backoff = Backoff()
        while True:
            try:
                async with aiomqtt.Client(url.hostname or "127.0.0.1", port=url.port or 1883,
                                          identifier=self.spec.client_id or None, username=user,
                                          password=password) as client:
                    await client.subscribe(self.spec.topic, qos=1)
                    backoff.reset()
                    async for m in client.messages:
                        payload = {"topic": str(m.topic), "messageId": int(m.mid or 0),
                                   "body": body_of(bytes(m.payload), self.spec.json_body)}
                        yield SourceEvent(with_metadata(payload, self))
            except asyncio.CancelledError:
                raise
            except Exception as err:
                await backoff.wait(self.label, err)


SOURCES = {"mqtt": MQTTSource}
