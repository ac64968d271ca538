"""Replay a stream's history through one or more Sensors with fresh, private state.

The live sensors are not touched: history is read by an ephemeral consumer that acks
nothing and disappears when the reader does, and every engine here starts empty. Events
are fed in stream order, each at the time the bus stored it (the clock a live sensor
would have had), so time filters and ``conditionsReset`` behave as they did live.

Firing ids depend only on the sensor, the trigger and the events' ids, so a firing found
here has the id the live sensor gave (or would have given) it: executing it again is a
no-op for every action that honours the id (an Airflow DAG run id, an HTTP
``Idempotency-Key``, a Kubernetes object name).

>>> async with EventBus(settings, StreamSettings("default")) as bus:        # doctest: +SKIP
...     window = await history_window(bus)
...     async for step in replay(bus, [Engine(sensor)], start=window.first):
...         print(step.firings)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import nats.errors
from nats.js import api

from airflow_argo_events.core.bus import EventBus
from airflow_argo_events.core.bus.kv import translated
from airflow_argo_events.core.events import Event, decode, format_time
from airflow_argo_events.core.exceptions import EventBusError, EventDecodeError
from airflow_argo_events.core.sensor.engine import Engine, Firing

BATCH = 256
INACTIVE = 60.0
"""Seconds after which the server deletes the replay's consumer if the reader died."""


@dataclass(frozen=True)
class HistoryWindow:
    """What the stream still holds: its first and last message (none when empty)."""

    stream: str
    first_seq: int
    last_seq: int
    first: datetime | None
    last: datetime | None
    messages: int
    max_age_seconds: float

    def describe(self) -> str:
        if not self.messages or self.first is None or self.last is None:
            return f"stream {self.stream!r} is empty"
        kept = f"; it keeps messages for {_age(self.max_age_seconds)}" if self.max_age_seconds else ""
        return (f"stream {self.stream!r} holds {self.messages} message(s) from {format_time(self.first)} "
                f"to {format_time(self.last)} (seq {self.first_seq}..{self.last_seq}){kept}")


@dataclass
class Step:
    """One message of the history and what each engine made of it (``firings[i]`` for engine i)."""

    seq: int
    stored: datetime
    event: Event | None
    error: str = ""
    firings: list[list[Firing]] = field(default_factory=list)


class ReplayRangeError(ValueError):
    """``--from``/``--to`` outside what the stream holds: the message says what it holds."""


def _age(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:g} h" if hours >= 1 else f"{seconds:g} s"


def _ts(value: str | None) -> datetime | None:
    if not value or value.startswith("0001-"):
        return None
    # Go prints nanoseconds; Python keeps microseconds.
    head, _, rest = value.rstrip("Z").partition(".")
    frac = (rest[:6] if rest else "").ljust(6, "0")
    return datetime.fromisoformat(f"{head}.{frac}+00:00")


async def history_window(bus: EventBus) -> HistoryWindow:
    """The stream's first/last message with their times (``first_ts`` is in the server's
    reply but not in nats-py's StreamState, hence the raw API request)."""
    name = bus.stream.name
    reply = await translated(bus.nc.request(f"$JS.API.STREAM.INFO.{name}", b"", timeout=5.0), f"stream {name} info")
    doc = json.loads(reply.data)
    if "error" in doc:
        raise EventBusError(f"stream {name!r}: {doc['error'].get('description', doc['error'])}")
    state = doc.get("state") or {}
    cfg = doc.get("config") or {}
    return HistoryWindow(
        stream=name, first_seq=int(state.get("first_seq") or 0), last_seq=int(state.get("last_seq") or 0),
        first=_ts(state.get("first_ts")), last=_ts(state.get("last_ts")), messages=int(state.get("messages") or 0),
        max_age_seconds=int(cfg.get("max_age") or 0) / 1e9,
    )


def check_range(window: HistoryWindow, start: datetime, end: datetime | None) -> None:
    """Refuse a start before what the stream still holds, once retention (or a purge) has
    discarded messages: the events before its first message are gone, so a replay from
    there would silently miss them. A stream that never discarded anything (first sequence
    1) holds its whole history, and any start is fine."""
    if end is not None and end <= start:
        raise ReplayRangeError(f"--to {format_time(end)} is not after --from {format_time(start)}")
    lost = window.first_seq > 1
    if lost and window.first is not None and start < window.first.replace(microsecond=0):
        raise ReplayRangeError(
            f"--from {format_time(start)} is older than the stream's history: {window.describe()}; "
            f"the {window.first_seq - 1} message(s) before {format_time(window.first)} are gone")


async def replay(bus: EventBus, engines: Sequence[Engine], start: datetime,
                 end: datetime | None = None) -> AsyncIterator[Step]:
    """Each message stored from ``start`` (to ``end``, or to the last message stored when
    the replay began) that some engine listens to, in stream order, after every engine saw it.

    Messages that are not CloudEvents come as a Step with ``error`` set and no firings;
    an error inside one engine for one event (a hostile transform, a parameter that cannot
    be built) is the ``error`` of that Step too, and the other engines still see the event.
    """
    window = await history_window(bus)
    if not window.messages:
        return
    stop_seq = window.last_seq
    subjects = {bus.stream.subject(s, e) for eng in engines for s, e in eng.listens_to()}
    cfg = api.ConsumerConfig(
        ack_policy=api.AckPolicy.NONE,
        deliver_policy=api.DeliverPolicy.BY_START_TIME,
        opt_start_time=start.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"),
        filter_subject=bus.stream.subjects,
        inactive_threshold=INACTIVE,
        mem_storage=True,
    )
    psub = await translated(bus.js.pull_subscribe(bus.stream.subjects, stream=bus.stream.name, config=cfg),
                            f"replay consumer on stream {bus.stream.name}")
    try:
        while True:
            try:
                msgs = await psub.fetch(BATCH, timeout=1.0)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                msgs = []
            if not msgs:
                # Nothing came: either nothing is left before stop_seq (deleted messages) or
                # the server is slow; the consumer's pending count tells which.
                info = await translated(psub.consumer_info(), "replay consumer info")
                if not info.num_pending:
                    return
                continue
            for msg in msgs:
                meta = msg.metadata
                seq = meta.sequence.stream
                if seq > stop_seq or (end is not None and meta.timestamp > end):
                    return
                if msg.subject in subjects:
                    yield _step(msg, seq, meta.timestamp, engines)
                if seq >= stop_seq or not meta.num_pending:
                    return
    finally:
        try:
            await psub.unsubscribe()
            await bus.js.delete_consumer(bus.stream.name, psub._consumer)  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - the server deletes it after INACTIVE anyway
            pass


def _step(msg: object, seq: int, stored: datetime, engines: Sequence[Engine]) -> Step:
    try:
        event = decode(msg.data, msg.headers)  # type: ignore[attr-defined]
    except EventDecodeError as err:
        return Step(seq, stored, None, f"not a CloudEvent: {err}", [[] for _ in engines])
    step = Step(seq, stored, event)
    errors = []
    for eng in engines:
        try:
            step.firings.append(eng.process(event, stored))
        except Exception as err:  # noqa: BLE001 - one error boundary per event, as live
            step.firings.append([])
            errors.append(f"{eng.name}: {type(err).__name__}: {err}")
    step.error = "; ".join(errors)
    return step


def firing_key(f: Firing) -> tuple[str, tuple[tuple[str, str], ...]]:
    """What makes two firings the same across two versions of a sensor: the trigger and the
    events it used (not the id, which includes the sensor's name)."""
    return f.trigger, tuple(sorted((d, e.id) for d, e in f.events.items()))
