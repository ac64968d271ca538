"""Argo's retryStrategy (wait.Backoff) and rateLimit, with an injectable clock."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from airflow_argo_events.core.spec.sensor import Backoff, RateLimit

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


@dataclass(frozen=True)
class RetryPlan:
    """How many attempts, and the pause before each retry.

    No retryStrategy: one attempt. With one, Argo's defaults fill the gaps: steps 5,
    duration 1s, factor 1.0, jitter 1 (a pause grows by ``factor`` and gains up to
    ``jitter`` x itself at random).
    """

    steps: int = 1
    duration: float = 1.0
    factor: float = 1.0
    jitter: float = 0.0

    @classmethod
    def of(cls, backoff: Backoff | None) -> RetryPlan:
        if backoff is None:
            return cls()
        return cls(
            steps=max(1, backoff.steps if backoff.steps is not None else 5),
            duration=backoff.seconds() if backoff.duration is not None else 1.0,
            factor=float(backoff.factor) if backoff.factor not in (None, "") else 1.0,
            jitter=float(backoff.jitter) if backoff.jitter not in (None, "") else 1.0,
        )

    def delays(self, rng: random.Random | None = None) -> list[float]:
        """Pauses between attempts (``steps - 1`` of them)."""
        rng = rng or random.Random()
        out, d = [], self.duration
        for _ in range(self.steps - 1):
            out.append(d + (rng.random() * self.jitter * d if self.jitter > 0 else 0.0))
            d *= self.factor
        return out


class RateLimiter:
    """At most ``requestsPerUnit`` starts per unit, spread like Argo's limiter (a token bucket)."""

    UNITS = {"": 1.0, "Second": 1.0, "Minute": 60.0, "Hour": 3600.0}

    def __init__(self, limit: RateLimit | None, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        self.rate = 0.0
        if limit is not None and limit.requests_per_unit > 0:
            self.rate = limit.requests_per_unit / self.UNITS[limit.unit]
        self.capacity = max(1.0, float(limit.requests_per_unit)) if limit else 1.0
        self.tokens = self.capacity
        self._clock, self._sleep = clock, sleep
        self._last = clock()
        self._lock = asyncio.Lock()

    async def wait(self) -> float:
        """Wait for a token; returns how long we waited."""
        if self.rate <= 0:
            return 0.0
        async with self._lock:
            now = self._clock()
            self.tokens = min(self.capacity, self.tokens + (now - self._last) * self.rate)
            self._last = now
            waited = 0.0
            if self.tokens < 1.0:
                waited = (1.0 - self.tokens) / self.rate
                await self._sleep(waited)
                self.tokens = 1.0
                self._last = self._clock()
            self.tokens -= 1.0
            return waited
