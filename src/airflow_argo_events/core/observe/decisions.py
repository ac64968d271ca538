"""One INFO line per event a live sensor receives, in the words of ``sensor test --explain``.

The engine words its decisions once (``Engine.explain``: "dependency dep01: rejected:
data filter ...", "both: saved a; waits for b", "t: event e1 already seen, skipped");
``sensor test --explain`` prints those notes as they are, and a live sensor joins them
into one line per event::

    sensor orders: event 3f2a (webhook/order): dependency order: rejected: data filter body.amount: ...

Busy dependencies would flood the log, so lines are rate-limited per dependency (a token
bucket: ``burst`` lines at once, then ``rate`` a second); the next line that gets
through says how many were left out, and :meth:`DecisionLog.flush` reports the rest when
the sensor stops. At DEBUG every event gets its line, with the event's time and type;
with ``limited`` off (``SensorTrigger(explain=True)``, an EventSensor's task log) every
event gets its line at INFO.
Asking the engine for its notes costs string formatting, so the runtime asks only for the
events whose line will be written (:meth:`DecisionLog.wants`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

BURST = 5
RATE = 1.0
"""Decision lines per second per dependency, after a burst of ``BURST``."""


class _Bucket:
    __slots__ = ("tokens", "last", "suppressed")

    def __init__(self, tokens: float, last: float) -> None:
        self.tokens = tokens
        self.last = last
        self.suppressed = 0


class DecisionLog:
    """Rate-limited decision lines for one sensor.

    >>> d = DecisionLog("orders", logging.getLogger("doctest"), burst=1, rate=0.0, clock=lambda: 0.0)
    >>> d.info = True
    >>> d.wants(("es", "a")), d.wants(("es", "a"))
    (True, False)
    """

    def __init__(self, sensor: str, log: logging.Logger, *, burst: int = BURST, rate: float = RATE,
                 clock: Callable[[], float] = time.monotonic, limited: bool = True) -> None:
        self.sensor = sensor
        self.limited = limited
        """False: every event gets its line (no rate limit), as ``sensor test --explain`` prints them."""
        self.log = log
        self.burst = max(1, burst)
        self.rate = rate
        self._clock = clock
        self._buckets: dict[Any, _Bucket] = {}
        self.info = log.isEnabledFor(logging.INFO)
        self.debug = log.isEnabledFor(logging.DEBUG)
        self._now = clock()

    def refresh(self) -> None:
        """Once per batch: re-read the logger's level and the clock (neither is free per event;
        a batch takes milliseconds, well below the rate limit's resolution)."""
        self.info = self.log.isEnabledFor(logging.INFO)
        self.debug = self.log.isEnabledFor(logging.DEBUG)
        self._now = self._clock()

    def wants(self, key: Any) -> bool:
        """True when the next event of ``key`` (its dependency) gets a line; counts it otherwise."""
        if self.debug:
            return True
        if not self.info:
            return False
        if not self.limited:
            return True
        now = self._now
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) > 10_000:  # bounded: wildcard subjects could make many keys
                self._buckets.clear()
            b = self._buckets[key] = _Bucket(float(self.burst), now)
        else:
            b.tokens = min(float(self.burst), b.tokens + (now - b.last) * self.rate)
            b.last = now
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return True
        b.suppressed += 1
        return False

    def write(self, key: Any, head: str, notes: list[str], level: int = logging.INFO) -> None:
        """Log one decision: ``head`` (the event) and the engine's notes, joined."""
        text = "; ".join(n.strip() for n in notes if n.strip()) or "no decision recorded"
        b = self._buckets.get(key)
        tail = ""
        if b is not None and b.suppressed:
            tail = f" ({b.suppressed} more event(s) of this dependency not logged, rate limit)"
            b.suppressed = 0
        self.log.log(level, "sensor %s: %s: %s%s", self.sensor, head, text, tail)

    def flush(self) -> None:
        """Say how many lines the rate limit left out since the last line of each dependency."""
        left = sum(b.suppressed for b in self._buckets.values())
        if left:
            self.log.info("sensor %s: %d decision line(s) not logged (rate limit: %d at once, then %g/s per "
                          "dependency)", self.sensor, left, self.burst, self.rate)
        for b in self._buckets.values():
            b.suppressed = 0


def event_head(event: Any) -> str:
    """How a decision line names an event: id and where it came from."""
    return f"event {event.id} ({event.source}/{event.subject})"
