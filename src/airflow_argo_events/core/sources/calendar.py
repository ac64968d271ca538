"""Argo's calendar event source: a cron ``schedule`` or an ``interval``, with exclusions and catch-up.

Payload: ``{"eventTime": "<Go time.String()>", "metadata": {...}}``. Each tick's event id
is derived from the EventSource, the event and the tick time, so a tick emitted twice
(restart, catch-up) is de-duplicated by the bus. With ``persistence.catchup.enabled`` the
last tick is kept in the runtime's KV and missed ticks are emitted after a restart, at
most ``catchup.maxDuration`` back.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter

from airflow_argo_events.core.sources.base import Source, SourceEvent, with_metadata
from airflow_argo_events.core.spec.durations import parse_duration


def go_time_string(t: datetime) -> str:
    """Go's ``time.Time.String()``: ``2006-01-02 15:04:05.999999999 -0700 MST``."""
    frac = f".{t.microsecond:06d}".rstrip("0") if t.microsecond else ""
    offset = t.strftime("%z") or "+0000"
    zone = t.tzname() or "UTC"
    return f"{t.strftime('%Y-%m-%d %H:%M:%S')}{frac} {offset} {zone}"


class CalendarSource(Source):
    type = "calendar"

    def __init__(self, *args: Any, now: Any = None, sleep: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tz = ZoneInfo(self.spec.timezone) if self.spec.timezone else timezone.utc
        self._now = now or (lambda: datetime.now(timezone.utc))
        self._sleep = sleep or asyncio.sleep
        self.exclusions = {self._day(d) for d in self.spec.exclusion_dates or []}

    @staticmethod
    def _day(text: str) -> tuple[int, int, int]:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return t.year, t.month, t.day

    def next_tick(self, after: datetime) -> datetime:
        if self.spec.schedule:
            return croniter(self.spec.schedule, after.astimezone(self.tz)).get_next(datetime)
        return after + timedelta(seconds=parse_duration(self.spec.interval))

    def excluded(self, t: datetime) -> bool:
        local = t.astimezone(self.tz)
        return (local.year, local.month, local.day) in self.exclusions

    def event_for(self, tick: datetime) -> SourceEvent:
        local = tick.astimezone(self.tz)
        eid = hashlib.sha256(f"{self.cfg.source}/{self.cfg.name}/{tick.isoformat()}".encode()).hexdigest()[:32]
        return SourceEvent(with_metadata({"eventTime": go_time_string(local)}, self), time=tick, id=eid)

    def _state_key(self) -> str:
        return f"calendar.{self.cfg.name}"

    async def events(self) -> AsyncIterator[SourceEvent]:
        persist = self.spec.persistence and self.spec.persistence.catchup and self.spec.persistence.catchup.enabled
        last = self._now()
        if persist and self.ctx.state_get is not None:
            saved = await self.ctx.state_get(self._state_key())
            if saved:
                last = datetime.fromisoformat(saved)
                limit = self.spec.persistence.catchup.max_duration
                if limit:
                    last = max(last, self._now() - timedelta(seconds=parse_duration(limit)))
        while True:
            tick = self.next_tick(last)
            delay = (tick - self._now()).total_seconds()
            if delay > 0:
                await self._sleep(delay)
            last = tick
            if self.excluded(tick):
                continue
            ev = self.event_for(tick).expect_ack()
            yield ev
            if persist and self.ctx.state_put is not None and ev.published is not None and await ev.published:
                await self.ctx.state_put(self._state_key(), tick.isoformat())


SOURCES = {"calendar": CalendarSource}
