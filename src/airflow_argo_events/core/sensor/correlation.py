"""Correlation keys, windows and thresholds (an extension; see docs/concepts.md).

A correlated trigger keeps one partial match per key value instead of Argo's single set
of saved events. What the engine needs of it lives here: the key of an event, the matches
in eviction order, and the expiry schedule of the window.

- **Key**: the dependency's GJSON path read on the (transformed) event data; its text is
  gjson's ``String()`` (so ``42`` and ``"42"`` are the same key). A missing path, null,
  an object or an array rejects the event for that dependency, as a filter would.
- **Window**: an event counts while ``its time + window`` is after the trigger's
  watermark, the latest event time seen (never ahead of the clock). Time is event time,
  so a backlog read after a restart pairs as it would have live. With two dependencies a
  partial match thus expires ``window`` after its first event.
- **Threshold**: ``{dep: N}``: the dependency counts once N of its events are kept (the
  latest N, within the window); the firing carries the latest event and the ids of all N.
- **maxPending**: past it, the oldest partial match (by creation) is evicted.

>>> from airflow_argo_events.core.spec.sensor import Correlation as Spec
>>> from airflow_argo_events.core.events import new_event
>>> c = Correlation(Spec.model_validate({"keys": {"a": "body.id"}}), ["a"])
>>> c.key_of("a", new_event(source="s", subject="a", type="webhook", data={"body": {"id": 42}}))
('42', '')
>>> c.key_of("a", new_event(source="s", subject="a", type="webhook", data={"body": {}}))
(None, 'correlation key body.id: missing from the event')
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from airflow_argo_events.core.events import Event
from airflow_argo_events.core.sensor.conditions import canonical
from airflow_argo_events.core.sensor.paths import MISSING, compile_path, gjson_string
from airflow_argo_events.core.spec.sensor import DEFAULT_MAX_PENDING
from airflow_argo_events.core.spec.sensor import Correlation as CorrelationSpec

NO_KEY = "_"
"""The one key of a trigger without ``keys`` (a window or threshold over the whole condition)."""
MAX_KEY_CHARS = 1024
"""A longer key value is refused: keys live in memory and in the state entry of every partial match."""


def aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)


@dataclass
class Match:
    """One key's partial match: the latest event per dependency; for threshold dependencies,
    the (id, time) of every event counted, oldest first, the latest included."""

    events: dict[str, Event] = field(default_factory=dict)
    counted: dict[str, deque[tuple[str, datetime]]] = field(default_factory=dict)

    def copy(self) -> Match:
        return Match(dict(self.events), {d: deque(q) for d, q in self.counted.items()})


class Correlation:
    """The correlation state of one trigger: matches by key (oldest first) and the window's schedule."""

    def __init__(self, spec: CorrelationSpec, deps: list[str]) -> None:
        real = {canonical(d): d for d in deps}
        self.paths: dict[str, str] | None = None
        self.keys = None
        if spec.keys is not None:
            self.paths = {real[canonical(d)]: p for d, p in spec.keys.items() if canonical(d) in real}
            self.keys = {d: compile_path(p) for d, p in self.paths.items()}
        seconds = spec.window_seconds()
        self.window: timedelta | None = timedelta(seconds=seconds) if seconds else None
        self.window_text = spec.window
        self.thresholds = {real[canonical(d)]: n for d, n in (spec.threshold or {}).items()
                           if canonical(d) in real and n > 1}
        self.max_pending = (spec.max_pending or DEFAULT_MAX_PENDING) if self.keys is not None else 1
        self.matches: dict[str, Match] = {}
        self.watermark: datetime | None = None
        self.evicted = 0
        self._expiry: list[tuple[datetime, int, str]] = []
        self._tick = 0

    # ------------------------------------------------------------ keys

    def key_of(self, dep: str, event: Event) -> tuple[str | None, str]:
        """The key value of ``event`` for ``dep``, or None and why it has none."""
        if self.keys is None:
            return NO_KEY, ""
        assert self.paths is not None
        path = self.paths[dep]
        data = event.data
        value = MISSING if isinstance(data, (bytes, bytearray, str)) or data is None else self.keys[dep](data)
        if value is MISSING:
            return None, f"correlation key {path}: missing from the event"
        if value is None or isinstance(value, (dict, list)):
            kind = "null" if value is None else type(value).__name__.replace("dict", "an object").replace(
                "list", "an array")
            return None, f"correlation key {path}: is {kind}, not a string, number or bool"
        text = gjson_string(value)
        if len(text) > MAX_KEY_CHARS:
            return None, f"correlation key {path}: longer than {MAX_KEY_CHARS} characters"
        return text, ""

    # ------------------------------------------------------------ counting

    def satisfied(self, m: Match, dep: str) -> bool:
        n = self.thresholds.get(dep)
        if n is None:
            return dep in m.events
        q = m.counted.get(dep)
        return q is not None and len(q) >= n

    def counted_ids(self, m: Match) -> dict[str, list[str]] | None:
        return {d: [i for i, _ in q] for d, q in m.counted.items() if d in m.events} or None

    def add(self, m: Match, dep: str, event: Event) -> None:
        m.events[dep] = event
        n = self.thresholds.get(dep)
        if n is not None:
            q = m.counted.setdefault(dep, deque())
            q.append((event.id, aware(event.time)))
            while len(q) > n:
                q.popleft()

    # ------------------------------------------------------------ window

    def too_old(self, event: Event) -> bool:
        return self.window is not None and self.watermark is not None and \
            aware(event.time) + self.window <= self.watermark

    def schedule(self, key: str, m: Match) -> None:
        """Remember when the events of a (new or restored) match expire."""
        for dep, ev in m.events.items():
            q = m.counted.get(dep)
            for t in ([t for _, t in q] if q else [aware(ev.time)]):
                self.schedule_at(key, t)

    def schedule_at(self, key: str, t: datetime) -> None:
        """Remember that an event of ``key`` from time ``t`` expires ``window`` later."""
        if self.window is None:
            return
        self._tick += 1
        heapq.heappush(self._expiry, (t + self.window, self._tick, key))
        if len(self._expiry) > 8 * len(self.matches) + 4096:  # entries of fired matches pile up: rebuild
            self._expiry = []
            for k, mm in self.matches.items():
                for ev in mm.events.values():
                    self._tick += 1
                    self._expiry.append((aware(ev.time) + self.window, self._tick, k))
            heapq.heapify(self._expiry)

    def due(self) -> list[str]:
        """Keys holding an event that the watermark has passed by ``window``."""
        out: list[str] = []
        if self.window is None or self.watermark is None:
            return out
        while self._expiry and self._expiry[0][0] <= self.watermark:
            _, _, key = heapq.heappop(self._expiry)
            if key in self.matches and key not in out:
                out.append(key)
        return out

    def expire(self, m: Match) -> list[str]:
        """Drop the events of ``m`` the window no longer counts; returns the dependencies emptied."""
        if self.window is None or self.watermark is None:
            return []
        horizon = self.watermark - self.window
        gone = [d for d, e in m.events.items() if aware(e.time) <= horizon]
        for d in gone:
            del m.events[d]
            m.counted.pop(d, None)
        for d, q in list(m.counted.items()):
            if any(t <= horizon for _, t in q):
                m.counted[d] = deque(x for x in q if x[1] > horizon)
        return gone

    def stale(self, m: Match) -> bool:
        """True when ``expire`` would change ``m``."""
        if self.window is None or self.watermark is None:
            return False
        horizon = self.watermark - self.window
        return any(aware(e.time) <= horizon for e in m.events.values()) or \
            any(t <= horizon for q in m.counted.values() for _, t in q)

    def clear(self) -> None:
        self.matches.clear()
        self._expiry.clear()
