"""Argo's nats event source: a core NATS subject (optionally a queue group).

Payload: ``{"subject": ..., "body": ..., "header": {name: [values]}, "metadata": {...}}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow_argo_events.core.bus.connection import shared_connection
from airflow_argo_events.core.bus.settings import NatsSettings
from airflow_argo_events.core.redact import redact_url
from airflow_argo_events.core.sources.base import Source, SourceEvent, with_metadata
from airflow_argo_events.core.sources.queues import Backoff, body_of


class NatsSource(Source):
    type = "nats"

    def settings(self) -> NatsSettings:
        auth: dict[str, Any] = {}
        a = self.spec.auth
        where = self.label
        if a is not None:
            if a.token:
                auth["token"] = self.ctx.secrets.get(a.token, f"{where}.auth.token")
            if a.basic:
                auth["user"] = self.ctx.secrets.get(a.basic.username, f"{where}.auth.basic.username")
                auth["password"] = self.ctx.secrets.get(a.basic.password, f"{where}.auth.basic.password")
            if a.nkey:
                auth["nkey_seed"] = self.ctx.secrets.get(a.nkey, f"{where}.auth.nkey")
        return NatsSettings.from_url(self.spec.url, **auth).with_label(f"{where} {redact_url(self.spec.url)}")

    async def events(self) -> AsyncIterator[SourceEvent]:
        backoff = Backoff()
        while True:
            try:
                async with shared_connection(self.settings()) as nc:
                    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1000)
                    sub = await nc.subscribe(self.spec.subject, queue=self.spec.queue or "", cb=queue.put)
                    backoff.reset()
                    try:
                        while True:
                            msg = await queue.get()
                            payload: dict[str, Any] = {"subject": msg.subject,
                                                       "body": body_of(msg.data, self.spec.json_body)}
                            if msg.headers:
                                payload["header"] = {k: [v] for k, v in msg.headers.items()}
                            yield SourceEvent(with_metadata(payload, self))
                    finally:
                        await sub.unsubscribe()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # connection errors of any kind: keep trying
                await backoff.wait(self.label, err)


SOURCES = {"nats": NatsSource}
