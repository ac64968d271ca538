"""Shared helpers for the benchmarks: a NATS to run against, and timing summaries."""

from __future__ import annotations

import contextlib
import os
import statistics
from collections.abc import Iterator

from airflow_argo_events.core.bus.embedded import EmbeddedNats, usable_local_jetstream


@contextlib.contextmanager
def bench_nats() -> Iterator[str]:
    """$ARGO_EVENTS_NATS_URL, else the local JetStream on 4222, else an embedded server."""
    url = os.environ.get("ARGO_EVENTS_NATS_URL")
    if url:
        yield url
    elif usable_local_jetstream():
        yield "nats://127.0.0.1:4222"
    else:
        with EmbeddedNats.start() as server:
            yield server.url


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def summary_ms(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1e3:.3f} ms, p99 {pct(values, 0.99) * 1e3:.3f} ms"


def ratio(ours: float, base: float) -> str:
    return f"{ours / base:.2f}x" if base else "n/a"
