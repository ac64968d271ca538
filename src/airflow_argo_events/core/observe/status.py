"""A live sensor's status, read from its state without disturbing it.

``read_sensor_status`` reads a sensor's KV bucket (``meta``, the ``s.*`` entries, the
``j.*`` journal, the runtime's ``obs`` notes) and the server's view of its durable
consumers, and returns a :class:`SensorStatus`: per trigger, its condition with each
dependency satisfied or waiting, the last firing and the firings pending in the journal;
per dependency, the consumer's lag and the last event seen. ``list_sensors`` lists every
sensor state on a NATS server. ``argo-events sensor status`` / ``sensor list`` and the
Airflow UI page call these two functions (one code path).

Reading never writes: the bucket is opened, never created; consumers are asked for their
info, never created or bound (a pull request of ours would steal the sensor's messages);
KV keys are read through an ordered ephemeral watch on the bucket's own stream.

>>> async def main():                                                   # doctest: +SKIP
...     async with EventBus(NatsSettings.from_url(url), ensure=False) as bus:
...         status = await read_sensor_status(bus.js, "orders")
...         print(status.triggers[0].waiting_for, status.to_dict())
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, NotFoundError

from airflow_argo_events.core.bus.kv import NATS_ERRORS, StateStore, translated
from airflow_argo_events.core.events import format_time
from airflow_argo_events.core.exceptions import ArgoEventsError, EventBusError
from airflow_argo_events.core.limits import loads_strict
from airflow_argo_events.core.observe.record import OBS_KEY
from airflow_argo_events.core.runtime.state import count_journal, entry_key, journal_firings, key_token

KV_STREAM = "KV_"
RUNNING_WITHIN = 15.0
"""A sensor whose notes were written this recently (or with a reader waiting on a consumer) is running."""


class SensorNotFound(ArgoEventsError):
    """No sensor state matches the name (or the manifest's derived state name)."""


def format_age(seconds: float | None) -> str:
    """How ``sensor status`` and the UI page say an age: ``"9.2s ago"``, ``"5m ago"``, ``"3.1h ago"``.

    >>> format_age(9.24), format_age(300), format_age(11160), format_age(None)
    ('9.2s ago', '5m ago', '3.1h ago', '')
    """
    if seconds is None:
        return ""
    s = float(seconds)
    if s < 120:
        return f"{s:.1f}s ago"
    if s < 7200:
        return f"{s / 60:.0f}m ago"
    return f"{s / 3600:.1f}h ago"


# ------------------------------------------------------------------ the data shape


@dataclass
class DependencyState:
    """One dependency of a trigger's condition: satisfied (an event is saved for it) or waiting."""

    name: str
    satisfied: bool
    event_id: str | None = None
    event_time: str | None = None
    age_seconds: float | None = None
    """Seconds from the saved event's time to when the status was read."""


@dataclass
class LastFiring:
    """How the trigger's most recent finished firing ended (from the runtime's notes)."""

    id: str
    at: str
    ok: bool
    detail: str = ""
    attempts: int = 0
    status: int | None = None
    """HTTP status of the last attempt (http action, Airflow REST API), when there is one."""
    ref: str = ""
    """What the action created: the DAG run id for Airflow, else empty."""


@dataclass
class PendingFiring:
    """A firing in the journal: its action has not finished (waiting for a slot, running, retrying)."""

    id: str
    trigger: str
    created: str
    events: dict[str, str]
    """dependency -> event id."""
    running: bool = False
    attempts: int = 0
    last_error: str = ""


@dataclass
class TriggerStatus:
    name: str
    condition: str
    """The condition as written, or the ``&&`` of every dependency when the trigger has none."""
    stateful: bool
    """True when the condition has ``&&``: events are saved until it holds. Otherwise every
    accepted event fires at once and nothing waits."""
    waiting_for: str
    """In the words of ``sensor test --explain``: "waits for b", "condition already true", ..."""
    dependencies: list[DependencyState] = field(default_factory=list)
    last_firing: LastFiring | None = None
    pending: list[PendingFiring] = field(default_factory=list)
    correlation_keys: int = 0
    """State entries of this trigger (one per correlation key; 1 without correlation keys)."""


@dataclass
class ConsumerLag:
    """The server's view of one durable consumer (``nats consumer info``)."""

    name: str
    subject: str = ""
    pending: int = 0
    """Messages in the stream not yet delivered to the sensor."""
    ack_pending: int = 0
    """Delivered, not yet acked (being processed, or left by a process that died)."""
    redelivered: int = 0
    waiting: int = 0
    """Pull requests waiting: >0 while a sensor process is reading."""
    last_delivered: str | None = None
    error: str | None = None

    @property
    def lag(self) -> int:
        return self.pending + self.ack_pending


@dataclass
class SeenEvent:
    """The last event a dependency saw, and what the sensor decided about it."""

    id: str
    time: str | None
    at: str
    verdict: str
    """``passed``, ``duplicate`` or the rejection in the words of ``--explain``."""
    age_seconds: float | None = None
    """Seconds from when the sensor saw it to when the status was read."""


@dataclass
class DependencyStatus:
    name: str
    event_source: str
    event_name: str
    consumer: ConsumerLag | None = None
    last_event: SeenEvent | None = None


@dataclass
class SensorStatus:
    """Everything ``argo-events sensor status`` prints; ``to_dict()`` is its ``--json``."""

    sensor: str
    state: str
    """The state name: KV bucket and durable-consumer prefix."""
    stream: str
    started: str | None
    running: bool
    """A process is reading (a consumer has a pull waiting, or the notes are fresh)."""
    read_at: str
    owner: dict[str, str] = field(default_factory=dict)
    """Who runs it: ``{"kind": "SensorTrigger", "dag_id": ..., "task_id": ...}``; empty for the CLI."""
    definition: str | None = None
    notes_written: str | None = None
    counters: dict[str, int] = field(default_factory=dict)
    triggers: list[TriggerStatus] = field(default_factory=list)
    dependencies: list[DependencyStatus] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def lag(self) -> int:
        return sum(d.consumer.lag for d in self.dependencies if d.consumer is not None)


@dataclass
class SensorSummary:
    """One line of ``argo-events sensor list``."""

    sensor: str
    state: str
    stream: str | None
    started: str | None
    owner: dict[str, str]
    triggers: list[str]
    pending: int | None
    keys: int
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------ what the runtime stores in meta


def spec_summary(engine: Any, consumers: dict[tuple[str, str], str]) -> dict[str, Any]:
    """What ``meta`` records of the definition so that status needs no manifest: dependencies
    (with their durable consumer) and each trigger's condition. No filters, no parameters."""
    deps = [{"name": d.spec.name, "eventSourceName": d.spec.event_source_name, "eventName": d.spec.event_name,
             "consumer": consumers.get((d.spec.event_source_name, d.spec.event_name))}
            for d in engine.dependencies.values()]
    triggers = [{"name": t.name, "conditions": t.spec.template.conditions if t.spec.template else None,
                 "deps": list(t.deps), "stateful": t.condition.requires_and} for t in engine.triggers]
    return {"deps": deps, "triggers": triggers}


def _engine_for(sensor_name: str, summary: dict[str, Any]) -> Any:
    """A sensor engine with the summary's dependencies and conditions (log actions, no filters):
    enough to word what a condition waits for exactly as ``sensor test --explain`` does."""
    from airflow_argo_events.core.sensor.engine import Engine
    from airflow_argo_events.core.spec.sensor import Sensor

    doc = {"metadata": {"name": sensor_name or "sensor"}, "spec": {
        "dependencies": [{"name": d["name"], "eventSourceName": d["eventSourceName"], "eventName": d["eventName"]}
                         for d in summary.get("deps") or []],
        "triggers": [{"template": {"name": t["name"], "log": {},
                                   **({"conditions": t["conditions"]} if t.get("conditions") else {})}}
                     for t in summary.get("triggers") or []]}}
    return Engine(Sensor.model_validate(doc))


# ------------------------------------------------------------------ reading


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _age(text: Any, now: datetime) -> float | None:
    t = _parse_time(text)
    return None if t is None else round(max(0.0, (now - t).total_seconds()), 3)


async def _open(js: JetStreamContext, bucket: str) -> StateStore:
    try:
        kv = await translated(js.key_value(bucket), f"KV bucket {bucket}")
    except EventBusError as err:
        if isinstance(err.__cause__, (BucketNotFoundError, NotFoundError)):
            raise SensorNotFound(f"no sensor state named {bucket!r} (see 'argo-events sensor list')") from None
        raise
    return StateStore(kv, bucket, js)


async def _doc(store: StateStore, key: str) -> dict[str, Any] | None:
    data, _ = await store.get_raw(key)
    if data is None:
        return None
    try:
        doc = loads_strict(data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


async def _consumer(js: JetStreamContext, stream: str, name: str) -> ConsumerLag:
    try:
        info = await translated(js.consumer_info(stream, name), f"consumer {name}")
    except EventBusError as err:
        missing = isinstance(err.__cause__, NotFoundError)
        return ConsumerLag(name, error="not found on the server" if missing else str(err))
    last = info.delivered.last_active if info.delivered else None
    return ConsumerLag(name, info.config.filter_subject or "", info.num_pending or 0, info.num_ack_pending or 0,
                       info.num_redelivered or 0, info.num_waiting or 0,
                       format_time(last) if isinstance(last, datetime) else None)


async def resolve_state(js: JetStreamContext, name: str) -> str:
    """The state name for ``name``: itself when a bucket has that name, else the most
    recently started state whose ``meta`` names the sensor ``name``."""
    try:
        await js.stream_info(KV_STREAM + name)
        return name
    except NotFoundError:
        pass
    except NATS_ERRORS as err:
        raise EventBusError(f"stream info {KV_STREAM}{name}: {type(err).__name__}: {err}") from err
    found = [s for s in await list_sensors(js, count_pending=False) if s.sensor == name]
    if not found:
        raise SensorNotFound(f"no sensor state for {name!r}: not a state name, and no state's meta names a "
                             "sensor so (see 'argo-events sensor list')")
    return max(found, key=lambda s: s.started or "").state


async def read_sensor_status(js: JetStreamContext, name: str, *, sensor: Any = None,
                             now: datetime | None = None) -> SensorStatus:
    """The status of the sensor state ``name`` (a state name, or a sensor name: see
    :func:`resolve_state`). ``sensor`` (the manifest's model) supplies the conditions when
    the state's ``meta`` predates the spec summary."""
    now = now or datetime.now(timezone.utc)
    bucket = await resolve_state(js, name)
    store = await _open(js, bucket)
    meta = await _doc(store, "meta") or {}
    obs = await _doc(store, OBS_KEY) or {}
    warnings: list[str] = []
    sensor_name = str(meta.get("sensor") or (sensor.metadata.name if sensor is not None else ""))
    stream = str(meta.get("stream") or "")
    if not meta:
        warnings.append("this state has no 'meta' key (written by an older version, or never started)")
    summary = meta.get("spec")
    if sensor is not None:
        from airflow_argo_events.core.sensor.engine import Engine

        engine: Any = Engine(sensor)
    elif isinstance(summary, dict):
        engine = _engine_for(sensor_name, summary)
    else:
        engine = None
        warnings.append("the state does not record the conditions (started by an older version): "
                        "pass -f SENSOR.yaml to see them")

    # Only the entry without a correlation key is read; the others are counted from their
    # keys (a correlated sensor may hold 100,000 of them).
    entry_counts: dict[str, int] = {}
    async for e in store.scan("s.>", values=False):
        if not e.deleted:
            token = e.key.split(".")[1] if e.key.count(".") >= 2 else ""
            entry_counts[token] = entry_counts.get(token, 0) + 1
    journal, unreadable = await journal_firings(store)
    warnings += [f"journal entry {key} is not valid JSON" for key in unreadable]

    running_notes = obs.get("running") or {}
    firings_notes = obs.get("firings") or {}
    trigger_names = [t.name for t in engine.triggers] if engine is not None else list(meta.get("triggers") or [])
    triggers = []
    for tname in trigger_names:
        shown = await _doc(store, entry_key(tname))
        saved = (shown or {}).get("deps") or {}
        if not isinstance(saved, dict):
            saved = {}
        if engine is not None:
            t = engine._trigger(tname)
            # The events' contents are not needed to word the condition: placeholders will do.
            engine.restore(tname, dict.fromkeys(saved, _PLACEHOLDER))
            waiting = engine.waiting_for(tname) if t.condition.requires_and else \
                "fires on each accepted event (no && in its condition)"
            condition, stateful, dep_names = t.condition.text, t.condition.requires_and, list(t.deps)
        else:
            waiting, condition, stateful, dep_names = "", "", True, sorted(saved)
        deps = []
        for d in dep_names:
            ref = saved.get(d)
            if isinstance(ref, dict):
                ev = ref.get("ev") if isinstance(ref.get("ev"), dict) else {}
                deps.append(DependencyState(d, True, str(ref.get("id")), ev.get("time"), _age(ev.get("time"), now)))
            else:
                deps.append(DependencyState(d, False))
        last = firings_notes.get(tname)
        last_firing = LastFiring(str(last.get("id")), str(last.get("at")), bool(last.get("ok")),
                                 str(last.get("detail") or ""), int(last.get("attempts") or 0),
                                 last.get("status"), str(last.get("ref") or "")) if isinstance(last, dict) else None
        pending = []
        for j in sorted((j for j in journal if j.get("trigger") == tname), key=lambda j: str(j.get("created"))):
            fid = str(j.get("id"))
            note = running_notes.get(fid) or {}
            events = {d: str((r or {}).get("id")) for d, r in (j.get("events") or {}).items()}
            pending.append(PendingFiring(fid, tname, str(j.get("created") or ""), events, fid in running_notes,
                                         int(note.get("attempts") or 0), str(note.get("error") or "")))
        triggers.append(TriggerStatus(tname, condition, stateful, waiting, deps, last_firing, pending,
                                      entry_counts.get(key_token(tname), 0)))

    seen = obs.get("deps") or {}
    spec_deps = (summary or {}).get("deps") if isinstance(summary, dict) else None
    if engine is not None and not spec_deps:
        spec_deps = [{"name": d.spec.name, "eventSourceName": d.spec.event_source_name,
                      "eventName": d.spec.event_name, "consumer": None} for d in engine.dependencies.values()]
    consumers = list(meta.get("consumers") or [])
    dependencies = []
    lags = await asyncio.gather(*(_consumer(js, stream, c) for c in consumers)) if stream else []
    by_name = {c.name: c for c in lags}
    by_subject = {c.subject: c for c in lags}
    for d in spec_deps or []:
        lag = by_name.get(d.get("consumer") or "") or by_subject.get(f"{stream}.{d['eventSourceName']}."
                                                                     f"{d['eventName']}")
        note = seen.get(d["name"])
        last_event = SeenEvent(str(note.get("id")), note.get("time"), str(note.get("at")),
                               str(note.get("verdict") or ""), _age(note.get("at"), now)) \
            if isinstance(note, dict) else None
        dependencies.append(DependencyStatus(d["name"], d["eventSourceName"], d["eventName"], lag, last_event))

    written_age = _age(obs.get("written"), now)
    running = any(c.waiting for c in lags) or (written_age is not None and written_age < RUNNING_WITHIN)
    owner = {str(k): str(v) for k, v in (meta.get("owner") or {}).items() if v is not None}
    return SensorStatus(sensor_name, bucket, stream, meta.get("started"), running, format_time(now), owner,
                        meta.get("definition"), obs.get("written"),
                        {str(k): int(v) for k, v in (obs.get("counters") or {}).items() if isinstance(v, int)},
                        triggers, dependencies, warnings)


class _Placeholder:
    id = ""


_PLACEHOLDER: Any = _Placeholder()


async def list_sensors(js: JetStreamContext, *, count_pending: bool = True) -> list[SensorSummary]:
    """Every sensor state on the server (buckets with a ``meta`` key), sorted by sensor and state."""
    out = []
    infos = await translated(js.streams_info(), "list streams")
    for si in infos:
        name = si.config.name
        if not name.startswith(KV_STREAM):
            continue
        bucket = name[len(KV_STREAM):]
        try:
            store = await _open(js, bucket)
            meta = await _doc(store, "meta")
            if not meta or "sensor" not in meta:
                continue
            pending = await asyncio.wait_for(count_journal(store), 30) if count_pending else None
        except (SensorNotFound, EventBusError, asyncio.TimeoutError):
            continue
        owner = {str(k): str(v) for k, v in (meta.get("owner") or {}).items() if v is not None}
        out.append(SensorSummary(str(meta.get("sensor")), bucket, meta.get("stream"), meta.get("started"), owner,
                                 list(meta.get("triggers") or []), pending, si.state.messages, si.state.bytes))
    return sorted(out, key=lambda s: (s.sensor, s.state))
