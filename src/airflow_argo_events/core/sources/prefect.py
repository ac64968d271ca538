"""The ``prefect`` event source (an extension): a Prefect server's events onto the bus.

Prefect's event stream is a WebSocket (``/api/events/out``, subprotocol ``prefect``: an
``auth`` message, then a ``filter`` message, then ``event`` messages); the server first
subscribes the socket to live events, then backfills stored events since the filter's
``occurred.since`` (at most 15 minutes back), then streams. Spoken here with aiohttp, so
the core does not import ``prefect``.

Resuming without loss: the position (the ``occurred`` time of the last published event)
is kept in the bus's KV. On (re)start, stored events since ``position - resumeOverlap``
are read page by page from ``POST /api/events/filter`` (any age), then the socket takes
over from the last one read. Events read twice are dropped by their id, here and by the
bus (``Nats-Msg-Id`` = the Prefect event id). The overlap covers events whose
``occurred`` time is earlier than that of an event stored before them (clients set it).

Prefect streams an event to subscribers as soon as it receives it, but stores it later (its
event persister writes a batch every 20 events or every 5 s): an event received before the
socket subscribed and not yet stored is in neither the REST read nor the socket's backfill.
So the stored events are read once more ``storageDelay`` (default 15 s) after each
subscription, while the socket streams.

Payload (``data``): the Prefect event as Prefect serialises it: ``{"id", "event",
"occurred", "resource": {labels}, "related": [...], "payload": {...}}``, plus ``metadata``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp

from airflow_argo_events.core.actions.prefect import PrefectApiSettings
from airflow_argo_events.core.limits import RecentIds
from airflow_argo_events.core.redact import redact_text, redact_url
from airflow_argo_events.core.sources.base import Source, SourceEvent, with_metadata
from airflow_argo_events.core.sources.queues import Backoff
from airflow_argo_events.core.spec.durations import parse_duration

log = logging.getLogger("airflow_argo_events.sources.prefect")

DEFAULT_OVERLAP = 60.0
DEFAULT_STORAGE_DELAY = 15.0
"""Three times Prefect's default event persister flush interval (5 s): see the module docstring."""
SEEN_IDS = 50_000
"""Ids remembered to drop events read twice (backfill + live, a reconnection): bounded."""
PAGE = 50  # the API's largest page for /events/filter


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _names(patterns: list[str] | None) -> tuple[list[str], list[str]]:
    """(exact names, prefixes) from ``a.b`` / ``a.*`` patterns."""
    exact, prefixes = [], []
    for p in patterns or []:
        (prefixes if p.endswith("*") else exact).append(p.rstrip("*"))
    return exact, prefixes


class PrefectSource(Source):
    """Forward the events of a Prefect server, resuming after a restart from the saved position."""

    type = "prefect"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._seen = RecentIds(SEEN_IDS)
        self.overlap = parse_duration(self.spec.resume_overlap) if self.spec.resume_overlap else DEFAULT_OVERLAP
        self.storage_delay = parse_duration(self.spec.storage_delay) if self.spec.storage_delay \
            else DEFAULT_STORAGE_DELAY

    def api(self) -> PrefectApiSettings:
        base = PrefectApiSettings.from_env()
        key = self.ctx.secrets.get(self.spec.api_key_secret, f"{self.label}.apiKeySecret") \
            if self.spec.api_key_secret else base.api_key
        return PrefectApiSettings((self.spec.api_url or base.url).rstrip("/"), key, base.auth_string)

    def event_filter(self, since: datetime) -> dict[str, Any]:
        """Prefect's ``EventFilter`` (as JSON) for this source, from ``since`` on, oldest first."""
        doc: dict[str, Any] = {"occurred": {"since": since.isoformat(),
                                            "until": (datetime.now(timezone.utc) + timedelta(days=3650)).isoformat()},
                               "order": "ASC"}
        names, prefixes = _names(self.spec.events)
        if names or prefixes:
            doc["event"] = {k: v for k, v in (("name", names), ("prefix", prefixes)) if v}
        ids, id_prefixes = _names(self.spec.resources)
        resource: dict[str, Any] = {k: v for k, v in (("id", ids), ("id_prefix", id_prefixes)) if v}
        if self.spec.resource_labels:
            resource["labels"] = dict(self.spec.resource_labels)
        if resource:
            doc["resource"] = resource
        return doc

    def _state_key(self) -> str:
        return f"prefect.{self.cfg.name}"

    def to_source_event(self, ev: dict[str, Any]) -> SourceEvent:
        occurred = parse_time(ev["occurred"])
        data = {k: ev.get(k) for k in ("id", "event", "occurred", "resource", "related", "payload")}
        return SourceEvent(with_metadata(data, self), time=occurred, id=str(ev["id"])).expect_ack()

    async def events(self) -> AsyncIterator[SourceEvent]:
        saved = await self.ctx.state_get(self._state_key()) if self.ctx.state_get is not None else None
        # A first start forwards new events only (as Argo sources do); a restart resumes.
        position = parse_time(saved) if saved else datetime.now(timezone.utc)
        backoff = Backoff()
        session = aiohttp.ClientSession()
        try:
            while True:
                try:
                    async for ev in self._stream(session, position - timedelta(seconds=self.overlap)):
                        backoff.reset()
                        if not self._seen.first(str(ev["id"])):
                            continue
                        raw = self.to_source_event(ev)
                        yield raw
                        assert raw.published is not None
                        if await raw.published and raw.time is not None and raw.time > position:
                            position = raw.time
                            if self.ctx.state_put is not None:
                                await self.ctx.state_put(self._state_key(), position.isoformat())
                except asyncio.CancelledError:
                    raise
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ConnectionError, ValueError) as err:
                    await backoff.wait(self.label, RuntimeError(redact_text(str(err)) or type(err).__name__))
        finally:
            await session.close()

    async def _stream(self, session: aiohttp.ClientSession, since: datetime) -> AsyncIterator[dict[str, Any]]:
        """Stored events since ``since`` (REST, any age), then the live socket from the last one."""
        api = self.api()
        last = since
        async for ev in self._stored(session, api, since):
            last = max(last, parse_time(ev["occurred"]))
            yield ev
        async for ev in self._live(session, api, last - timedelta(seconds=self.overlap)):
            yield ev

    async def _stored(self, session: aiohttp.ClientSession, api: PrefectApiSettings,
                      since: datetime) -> AsyncIterator[dict[str, Any]]:
        url: str | None = f"{api.url}/events/filter"
        body: dict[str, Any] | None = {"filter": self.event_filter(since), "limit": PAGE}
        while url:
            method = "POST" if body is not None else "GET"
            async with session.request(method, url, json=body, headers=api.headers(),
                                       timeout=aiohttp.ClientTimeout(total=30)) as resp:
                if resp.status != 200:
                    raise ConnectionError(f"{method} {redact_url(url)}: {resp.status} {(await resp.text())[:200]}")
                page = await resp.json()
            for ev in page.get("events") or []:
                yield ev
            url, body = page.get("next_page"), None

    async def _live(self, session: aiohttp.ClientSession, api: PrefectApiSettings,
                    since: datetime) -> AsyncIterator[dict[str, Any]]:
        ws_url = api.url.replace("https://", "wss://", 1).replace("http://", "ws://", 1) + "/events/out"
        async with session.ws_connect(ws_url, protocols=("prefect",), heartbeat=20,
                                      headers=api.headers() if api.api_key and not api.auth_string else None) as ws:
            await ws.send_json({"type": "auth", "token": api.auth_string or api.api_key})
            reply = await ws.receive_json(timeout=30)
            if reply.get("type") != "auth_success":
                raise ConnectionError(f"Prefect refused the event stream at {redact_url(ws_url)}: "
                                      f"{reply.get('reason', reply.get('type'))}")
            await ws.send_json({"type": "filter", "filter": self.event_filter(since), "backfill": True})
            log.info("%s: subscribed to %s from %s", self.label, redact_url(ws_url), since.isoformat())
            loop = asyncio.get_running_loop()
            # Events Prefect received before this subscription but had not stored yet: read
            # them once stored (see the module docstring); the socket keeps streaming meanwhile.
            reread_at: float | None = loop.time() + self.storage_delay
            while True:
                msg = None
                try:
                    msg = await ws.receive(timeout=max(reread_at - loop.time(), 0.001)
                                            if reread_at is not None else None)
                except asyncio.TimeoutError:
                    pass  # only the re-read's timer: an unread message stays in aiohttp's buffer
                if msg is not None:
                    if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                        break
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        doc = msg.json()
                        if doc.get("type") == "event" and isinstance(doc.get("event"), dict):
                            yield doc["event"]
                if reread_at is not None and loop.time() >= reread_at:
                    reread_at = None
                    async for ev in self._stored(session, api, since):
                        yield ev
            raise ConnectionError(f"the event stream at {redact_url(ws_url)} closed "
                                  f"({ws.close_code}{': ' + str(ws.exception()) if ws.exception() else ''})")


SOURCES = {"prefect": PrefectSource}
