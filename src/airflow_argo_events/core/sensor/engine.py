"""The sensor engine: events in, firings out. Pure and deterministic: the clock is passed in.

Per trigger (Argo ``pkg/sensors/listener.go`` and ``trigger_conn.go``):

1. The trigger listens to the dependencies its condition names (all of them, joined
   with ``&&``, when there is no condition), in order of first appearance.
2. An event matches a dependency when source == eventSourceName and subject == eventName;
   several dependencies may match one event, each is processed in turn.
3. For each: transform, then filters. A failure drops the event for that dependency only.
4. Without ``&`` in the condition, every passing event fires at once, alone.
   With ``&``, the condition is evaluated over the saved dependencies plus this one; if
   true, the trigger fires with every saved event plus this one and its state is
   cleared; otherwise the event is saved under its dependency (the latest wins).
5. conditionsReset crons clear a trigger's saved events when a tick passes.
6. Event ids seen by a trigger in the last 60 s are skipped (Argo's recentMsgsByID).

>>> from airflow_argo_events.core.spec.loader import load_text
>>> from airflow_argo_events.core.events import new_event
>>> (sensor,) = load_text('''
... kind: Sensor
... metadata: {name: s}
... spec:
...   dependencies:
...     - {name: a, eventSourceName: es, eventName: a}
...     - {name: b, eventSourceName: es, eventName: b}
...   triggers:
...     - template: {name: both, log: {}}
... ''')
>>> eng = Engine(sensor)
>>> eng.process(new_event(source="es", subject="a", type="webhook", data={}))
[]
>>> [f.trigger for f in eng.process(new_event(source="es", subject="b", type="webhook", data={}))]
['both']
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from collections import OrderedDict, deque
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter
from pydantic import ValidationError

from airflow_argo_events.core.events import Event
from airflow_argo_events.core.limits import MAX_JSON_DEPTH, depth_exceeds, dumps_compact
from airflow_argo_events.core.sensor.conditions import Condition, canonical
from airflow_argo_events.core.sensor.correlation import NO_KEY, Correlation, Match, aware
from airflow_argo_events.core.sensor.filters import DependencyFilter, Verdict
from airflow_argo_events.core.sensor.lua import LuaSandbox
from airflow_argo_events.core.sensor.params import (
    CompiledParameter,
    ParameterError,
    apply_params,
    compile_parameters,
    construct_payload,
)
from airflow_argo_events.core.sensor.transform import Transform, TransformError
from airflow_argo_events.core.spec.base import spec_error
from airflow_argo_events.core.spec.sensor import EventDependency, Sensor, Trigger, TriggerTemplate

DEDUP_WINDOW = timedelta(seconds=60)
MAX_REMEMBERED_IDS = 100_000
PAYLOAD_KINDS = ("http", "nats", "kafka", "airflow", "prefect", "prefectEvent", "awsLambda")
RESOURCE_KINDS = ("k8s", "argoWorkflow")
PARAMETERS_BUILD_PAYLOAD = ("prefect",)
"""Kinds whose ``parameters`` build what the action sends (a Prefect flow run's parameters),
where other kinds' ``parameters`` edit the trigger's own block."""
MAX_TRANSFORMED_BYTES = 1024 * 1024
"""NATS's default max payload: an event larger than this could be neither stored nor published."""


def firing_id(sensor: str, trigger: str, events: dict[str, Event], key: str | None = None,
              counted: dict[str, list[str]] | None = None) -> str:
    """sha256 of the sensor, the trigger and the sorted dependency:event-id pairs, 16 hex.

    Correlated firings (an extension) add their key, and a threshold dependency lists every
    event it counted (``dep:id1+id2+id3``); a plain firing's id is Argo-shaped as before.
    """
    if counted:
        pairs = ",".join(f"{dep}:{'+'.join(counted[dep]) if dep in counted else ev.id}"
                         for dep, ev in sorted(events.items()))
    else:
        pairs = ",".join([f"{dep}:{ev.id}" for dep, ev in sorted(events.items())])
    text = f"{sensor}\n{trigger}\n{pairs}" if key is None else f"{sensor}\n{trigger}\n{pairs}\nkey:{key}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Firing:
    """One trigger firing: what fired, on which events, and what the action would send."""

    sensor: str
    trigger: str
    id: str
    events: dict[str, Event]
    template: TriggerTemplate
    """The trigger template after trigger-level parameters."""
    resolved: Any
    """k8s/argoWorkflow: the resource after its parameters; http/nats/kafka: the payload."""
    trigger_spec: Trigger | None = None
    body: dict[str, Any] | None = None
    """The trigger type's block (camelCase) after its own ``parameters`` (url, subject, ...).
    Read-only: firings of a trigger without such parameters share one document."""
    error: str = ""
    """Set when a parameter could not be resolved: as in Argo, the action is not run (the
    executor records the firing as failed and runs the dlqTrigger); the state is cleared all the same."""
    key: str | None = None
    """The correlation key value the firing's events share (extension; None without keys)."""
    counted: dict[str, list[str]] | None = None
    """Threshold dependencies: the ids of every event counted, oldest first (``events`` holds the latest)."""

    def summary(self) -> dict[str, Any]:
        """The ``sensor test`` output line (``key`` and ``counted`` only for correlated firings)."""
        out: dict[str, Any] = {"trigger": self.trigger, "events": {d: e.id for d, e in self.events.items()},
                               "resolved": self.resolved}
        if self.key is not None:
            out["key"] = self.key
        if self.counted:
            out["counted"] = self.counted
        return out


@dataclass
class _Dependency:
    spec: EventDependency
    transform: Transform | None
    filter: DependencyFilter

    def accept(self, event: Event) -> tuple[Event | None, str]:
        """The (transformed) event if it passes, else None and the reason."""
        if self.transform is not None:
            try:
                event = self.transform.apply(event)
            except TransformError as err:
                return None, f"transform error: {err}"
            # A transform can build more than it was given: keep what is stored and passed on
            # within the limits every event from the bus already meets.
            if depth_exceeds(event.data):
                return None, f"transform error: output nested deeper than {MAX_JSON_DEPTH} levels"
            if len(dumps_compact(event.data)) > MAX_TRANSFORMED_BYTES:
                return None, f"transform error: output larger than {MAX_TRANSFORMED_BYTES} bytes"
        verdict: Verdict = self.filter.check(event)
        return (event, "") if verdict.passed else (None, verdict.reason)


@dataclass
class _Reset:
    cron: str
    tz: Any
    next_tick: datetime | None = None

    def passed(self, last: datetime, now: datetime) -> bool:
        """True when a tick lies in (last, now]."""
        if self.next_tick is None or self.next_tick <= last:
            self.next_tick = self._after(last)
        if self.next_tick <= now:
            self.next_tick = self._after(now)
            return True
        return False

    def _after(self, t: datetime) -> datetime:
        # Near year 9999 there is no next tick a datetime can hold: no more resets.
        try:
            return croniter(self.cron, t.astimezone(self.tz)).get_next(datetime)
        except (OverflowError, ValueError):  # croniter raises CroniterError, a ValueError
            return datetime.max.replace(tzinfo=timezone.utc)


@dataclass
class _TriggerRuntime:
    spec: Trigger
    name: str
    condition: Condition
    deps: list[str]  # real dependency names, in order of first appearance
    by_key: dict[tuple[str, str], list[str]]
    resets: list[_Reset]
    trigger_params: list[CompiledParameter]
    body: _Body
    saved: dict[str, Event] = field(default_factory=dict)
    seen: OrderedDict[str, datetime] = field(default_factory=OrderedDict)
    corr: Correlation | None = None
    """Extension: state per correlation key, window, thresholds (``saved`` stays empty)."""


class Engine:
    """A compiled Sensor. ``process(event, now)`` returns the firings it causes, in trigger order.

    State (the latest event saved per dependency of each ``&&`` trigger) lives in the
    engine; ``saved(trigger)`` / ``restore(trigger, events)`` move it in and out so the
    runtime can persist it.
    """

    def __init__(self, sensor: Sensor, lua_factory: Callable[[], LuaSandbox] | None = None,
                 explain: bool = False) -> None:
        self.sensor = sensor
        self.name = sensor.metadata.name
        self._lua: LuaSandbox | None = None
        self._lua_factory = lua_factory
        self.explain: list[str] | None = [] if explain else None
        self.clock: datetime | None = None
        self.applied: list[tuple[str, str, Firing | None]] = []
        """(trigger, dependency, firing or None when saved) for each place the last ``process``
        saved the event or fired on it."""
        self._dirty: set[str] = set()
        self._dirty_keys: set[tuple[str, str]] = set()
        self._undo: list[tuple[_TriggerRuntime, str | None, Match | datetime | None]] = []
        self._evicted: dict[str, int] = {}
        self.evictions = 0
        """Partial matches evicted beyond a trigger's ``correlation.maxPending``, in all."""
        self.duplicates = 0
        """How many times an event id seen in the last 60 s was skipped (Argo's recentMsgsByID)."""
        self.verdicts: dict[str, tuple[Event | None, str]] = {}
        """What the last ``process`` decided per dependency it matched: (the accepted event, "")
        or (None, why not, in the words ``explain`` uses). The live runtime counts and notes it."""
        self._seen_log: list[tuple[str, str]] | None = None
        self.dependencies: dict[str, _Dependency] = {}
        for dep in sensor.spec.dependencies:
            self.dependencies[dep.name] = _Dependency(
                dep,
                Transform(dep.transform, self._shared_lua) if dep.transform and (dep.transform.jq or
                                                                                dep.transform.script) else None,
                DependencyFilter(dep.filters, dep.filters_logical_operator, lua_factory=self._shared_lua),
            )
        by_canonical = {canonical(d.name): d.name for d in sensor.spec.dependencies}
        self.triggers: list[_TriggerRuntime] = []
        for trig in sensor.spec.triggers:
            t = trig.template
            assert t is not None
            cond = Condition.parse(t.conditions) if t.conditions else Condition.all_of(
                [d.name for d in sensor.spec.dependencies])
            deps = [by_canonical[n] for n in cond.names]
            by_key: dict[tuple[str, str], list[str]] = {}
            for d in deps:
                spec = self.dependencies[d].spec
                by_key.setdefault((spec.event_source_name, spec.event_name), []).append(d)
            resets = []
            for r in t.conditions_reset or []:
                if r.by_time and r.by_time.cron:
                    tz = ZoneInfo(r.by_time.timezone) if r.by_time.timezone else timezone.utc
                    resets.append(_Reset(r.by_time.cron, tz))
            self.triggers.append(_TriggerRuntime(
                spec=trig, name=t.name, condition=cond, deps=deps, by_key=by_key, resets=resets,
                trigger_params=compile_parameters(trig.parameters),
                body=_compile_body(t),
                corr=Correlation(t.correlation, deps) if t.correlation is not None else None,
            ))

        # The triggers listening to each (eventSourceName, eventName), in trigger order, and
        # those with a conditionsReset: ``process`` looks both up once per event.
        self._listeners: dict[tuple[str, str], list[_TriggerRuntime]] = {}
        for t in self.triggers:
            for pair in t.by_key:
                self._listeners.setdefault(pair, []).append(t)
        self._resetting = [t for t in self.triggers if t.resets]

    def _shared_lua(self) -> LuaSandbox:
        if self._lua is None:
            self._lua = self._lua_factory() if self._lua_factory else LuaSandbox()
        return self._lua

    def _note(self, text: str) -> None:
        if self.explain is not None:
            self.explain.append(text)

    # ------------------------------------------------------------ clock and resets

    def advance(self, now: datetime) -> list[str]:
        """Move the clock to ``now``; clears triggers whose conditionsReset ticked. Returns their names."""
        cleared = []
        last = self.clock
        if last is not None and now > last:
            for t in self._resetting:
                if any(r.passed(last, now) for r in t.resets):
                    if t.corr is not None:  # per key: every key's partial match is cleared
                        if t.corr.matches:
                            self._note(f"  reset: {t.name}: conditionsReset cron passed, cleared "
                                       f"{len(t.corr.matches)} pending key(s)")
                            self._dirty_keys.update((t.name, k) for k in t.corr.matches)
                        t.corr.clear()
                    if t.saved:
                        self._note(f"  reset: {t.name}: conditionsReset cron passed, cleared {sorted(t.saved)}")
                        self._dirty.add(t.name)
                    t.saved.clear()
                    cleared.append(t.name)
        if last is None or now > last:
            self.clock = now
        return cleared

    # ------------------------------------------------------------ events

    def process(self, event: Event, now: datetime | None = None, skip: Container[str] = ()) -> list[Firing]:
        """The firings ``event`` causes. Triggers named in ``skip`` ignore it (the runtime
        passes those that already applied a redelivered message).

        All or nothing: if anything raises (a parameter template, a hostile transform), the
        saved state is as it was before the call and the error propagates to the caller's
        error boundary for this one event.
        """
        now = now or event.time
        explain = self.explain
        clock = self.clock
        if clock is None or now > clock:
            if self._resetting:
                self.advance(now)
            else:  # what advance() comes to without a conditionsReset
                self.clock = now
        key = (event.source, event.subject)
        accepted: dict[str, tuple[Event | None, str]] = {}
        self.verdicts = accepted
        firings: list[Firing] = []
        self.applied = []
        matched = self._listeners.get(key)
        if not matched:
            if explain is not None:
                explain.append(f"  no dependency listens to source={event.source!r} subject={event.subject!r}")
            return firings
        # What a failure puts back (see the docstring): copies only of what this call can change.
        before = [(t, dict(t.saved) if t.saved else None) for t in matched]
        dirty_before = set(self._dirty) if self._dirty else None
        if self._undo:
            self._undo.clear()
        try:
            for t in matched:
                if skip and t.name in skip:
                    if explain is not None:
                        explain.append(f"  {t.name}: message already applied before a redelivery, skipped")
                    continue
                if self._seen_recently(t, event.id, now):
                    self.duplicates += 1
                    if explain is not None:
                        explain.append(f"  {t.name}: event {event.id} already seen, skipped")
                    continue
                for dep in t.by_key[key]:
                    verdict = accepted.get(dep)
                    if verdict is None:
                        verdict = accepted[dep] = self.dependencies[dep].accept(event)
                        if explain is not None:
                            ev, why = verdict
                            explain.append(f"  dependency {dep}: " + ("passed" if ev is not None
                                                                     else f"rejected: {why}"))
                    ev = verdict[0]
                    if ev is None:
                        continue
                    if t.corr is None:
                        fired = self._apply(t, dep, ev)
                        self.applied.append((t.name, dep, fired, NO_KEY))
                    else:
                        got = self._apply_correlated(t, dep, ev, now)
                        if got is None:  # no key, or older than the window: rejected for this trigger
                            continue
                        fired, corr_key = got
                        self.applied.append((t.name, dep, fired, corr_key))
                    if fired is not None:
                        firings.append(fired)
        except BaseException:
            for t, saved in before:
                t.saved = saved if saved is not None else {}
                t.seen.pop(event.id, None)
            self._undo_correlated()
            self._dirty = dirty_before if dirty_before is not None else set()
            self.applied = []
            raise
        return firings

    def _seen_recently(self, t: _TriggerRuntime, event_id: str, now: datetime) -> bool:
        """Argo's recentMsgsByID: ids kept for 60 s, oldest evicted first (insertion order)."""
        seen = t.seen
        at = seen.get(event_id)
        if at is not None:
            if now - at < DEDUP_WINDOW:
                return True
            seen.move_to_end(event_id)
        elif self._seen_log is not None:
            self._seen_log.append((t.name, event_id))
        seen[event_id] = now
        # An OrderedDict: a plain dict's first key costs a scan past every deleted slot, which
        # with a full window (tens of thousands of ids, one evicted per event) is ~10 us an event.
        while seen:
            oldest_id, oldest_at = next(iter(seen.items()))
            if now - oldest_at < DEDUP_WINDOW and len(seen) <= MAX_REMEMBERED_IDS:
                break
            del seen[oldest_id]
        return False

    def _apply(self, t: _TriggerRuntime, dep: str, event: Event) -> Firing | None:
        explain = self.explain
        if not t.condition.requires_and:
            if explain is not None:
                explain.append(f"  {t.name}: fires on {dep} ({t.condition.text or dep})")
            return self._fire(t, {dep: event})
        env = {_canon(d): True for d in t.saved}
        env[_canon(dep)] = True
        self._dirty.add(t.name)
        if t.condition.evaluate(env):
            events = dict(t.saved)
            events[dep] = event
            firing = self._fire(t, events)  # before clearing: a failure leaves the state as it was
            t.saved.clear()
            if explain is not None:
                explain.append(f"  {t.name}: condition '{t.condition.text}' met with {sorted(events)}")
            return firing
        t.saved[dep] = event
        if explain is not None:
            explain.append(f"  {t.name}: saved {dep}; {self.waiting_for(t.name)}")
        return None

    # ------------------------------------------------------------ correlation (extension)

    def _apply_correlated(self, t: _TriggerRuntime, dep: str, event: Event,
                          now: datetime) -> tuple[Firing | None, str] | None:
        """Argo's saved-events logic within one key's partial match, with the window and thresholds.
        None when the event is rejected for this trigger (no usable key, older than the window)."""
        c = t.corr
        assert c is not None
        key, why = c.key_of(dep, event)
        if key is None:
            self._note(f"  dependency {dep}: rejected by trigger {t.name}: {why}")
            return None
        if c.window is not None:
            at = min(aware(event.time), aware(now))
            if c.watermark is None or at > c.watermark:
                self._undo.append((t, None, c.watermark))
                c.watermark = at
                for k in c.due():
                    self._expire(t, k)
            if c.too_old(event):
                self._note(f"  dependency {dep}: rejected by trigger {t.name}: older than the window "
                           f"({c.window_text}): event time {aware(event.time).isoformat()}, latest "
                           f"{c.watermark.isoformat() if c.watermark else '-'}")
                return None
        m = c.matches.get(key)
        if m is not None and c.window is not None and c.stale(m):
            self._expire(t, key)
            m = c.matches.get(key)
        self._undo.append((t, key, m.copy() if m is not None else None))
        new = m is None
        if m is None:
            m = Match()
        c.add(m, dep, event)
        self._dirty_keys.add((t.name, key))
        env = {canonical(d): True for d in m.events if c.satisfied(m, d)}
        if t.condition.evaluate(env):
            events = dict(m.events)
            # built before the state is cleared: a failure leaves it as it was (undo)
            firing = self._fire(t, events, key if c.keys is not None else None, c.counted_ids(m))
            c.matches.pop(key, None)
            if self.explain is not None:
                self._note(f"  {_label(t, key)}: condition '{t.condition.text}' met with {sorted(events)}")
            return firing, key
        if new:
            c.matches[key] = m
            while len(c.matches) > c.max_pending:
                self._evict(t)
        c.schedule_at(key, aware(event.time))
        if self.explain is not None:
            self._note(f"  {_label(t, key)}: saved {dep}; {self._waiting(t, m)}")
        return None, key

    def _expire(self, t: _TriggerRuntime, key: str) -> None:
        c = t.corr
        assert c is not None
        m = c.matches[key]
        if not c.stale(m):  # the event this schedule entry was for has been replaced since
            return
        before = m.copy()
        gone = c.expire(m)
        self._undo.append((t, key, before))
        self._dirty_keys.add((t.name, key))
        if gone:
            self._note(f"  {_label(t, key)}: {', '.join(gone)} expired (window {c.window_text})")
        if not m.events:
            del c.matches[key]

    def _evict(self, t: _TriggerRuntime) -> None:
        c = t.corr
        assert c is not None
        key = next(iter(c.matches))
        m = c.matches.pop(key)
        self._undo.append((t, key, m))
        self._dirty_keys.add((t.name, key))
        c.evicted += 1
        self.evictions += 1
        self._evicted[t.name] = self._evicted.get(t.name, 0) + 1
        self._note(f"  {t.name}[{key}]: evicted, more than maxPending {c.max_pending} keys pending "
                   f"(dropped {', '.join(sorted(m.events))})")

    def _undo_correlated(self) -> None:
        """Put the correlated matches back as they were before the failed ``process`` call."""
        for t, key, old in reversed(self._undo):
            c = t.corr
            assert c is not None
            if key is None:
                c.watermark = old  # type: ignore[assignment]
            elif old is None:
                c.matches.pop(key, None)
            else:
                assert isinstance(old, Match)
                c.matches[key] = old
                c.schedule(key, old)
        self._undo.clear()

    def _waiting(self, t: _TriggerRuntime, m: Match | None) -> str:
        c = t.corr
        assert c is not None
        have = {canonical(d): True for d in m.events if c.satisfied(m, d)} if m is not None else {}
        short = []
        for d, n in c.thresholds.items():
            q = m.counted.get(d) if m else None
            if q is not None and len(q) < n:
                short.append(f"{d} has {len(q)} of {n}")
        text = self._waits(t, have, lambda d: canonical(d) in have)
        return f"{text} ({'; '.join(short)})" if short else text

    def take_dirty_keys(self) -> set[tuple[str, str]]:
        """(trigger, key) of the correlated partial matches changed since the last call."""
        dirty, self._dirty_keys = self._dirty_keys, set()
        return dirty

    def take_evictions(self) -> dict[str, int]:
        """Evictions per trigger since the last call."""
        out, self._evicted = self._evicted, {}
        return out

    def correlated(self, trigger: str) -> bool:
        return self._trigger(trigger).corr is not None

    def keyed(self, trigger: str) -> bool:
        """True for a correlated trigger with ``keys`` (one state entry per key value)."""
        c = self._trigger(trigger).corr
        return c is not None and c.keys is not None

    def keys_for(self, event: Event) -> dict[str, set[str]]:
        """Keys the event has for each correlated trigger listening to it (the runtime checks
        a redelivered message against those keys' state entries). Pure: changes no state."""
        out: dict[str, set[str]] = {}
        pair = (event.source, event.subject)
        for t in self.triggers:
            if t.corr is None or pair not in t.by_key:
                continue
            keys: set[str] = set()
            for dep in t.by_key[pair]:
                ev, _ = self.dependencies[dep].accept(event)
                if ev is not None:
                    key, _ = t.corr.key_of(dep, ev)
                    if key is not None:
                        keys.add(key)
            out[t.name] = keys
        return out

    def matches(self, trigger: str) -> dict[str, dict[str, Event]]:
        """Every pending key of a correlated trigger with its saved events, oldest first."""
        t = self._trigger(trigger)
        if t.corr is None:
            return {NO_KEY: dict(t.saved)} if t.saved else {}
        return {k: dict(m.events) for k, m in t.corr.matches.items()}

    def counted(self, trigger: str, key: str = NO_KEY) -> dict[str, list[tuple[str, datetime]]]:
        """Threshold dependencies of one key: the (id, time) of each event counted."""
        t = self._trigger(trigger)
        m = t.corr.matches.get(key) if t.corr is not None else None
        return {d: list(q) for d, q in m.counted.items()} if m is not None else {}

    def waiting_for(self, trigger: str, key: str = NO_KEY) -> str:
        """What the trigger's condition still needs, in words (for one key of a correlated trigger)."""
        t = self._trigger(trigger)
        if t.corr is not None:
            return self._waiting(t, t.corr.matches.get(key))
        have = {canonical(d): True for d in t.saved}
        return self._waits(t, have, lambda d: d in t.saved)

    def _waits(self, t: _TriggerRuntime, have: dict[str, bool], present: Callable[[str], bool]) -> str:
        if t.condition.evaluate(have):
            return "condition already true"
        missing = [d for d in t.deps if not present(d)]
        for size in range(1, min(3, len(missing)) + 1):
            combos = [c for c in itertools.combinations(missing, size)
                      if t.condition.evaluate({**have, **{canonical(d): True for d in c}})]
            if combos:
                return "waits for " + " or ".join(" + ".join(c) for c in combos)
        return "waits for more of " + ", ".join(missing)

    def _trigger(self, name: str) -> _TriggerRuntime:
        by_name = self.__dict__.get("_by_name")
        if by_name is None:
            by_name = self.__dict__["_by_name"] = {t.name: t for t in self.triggers}
        return by_name[name]

    # ------------------------------------------------------------ firing

    def _fire(self, t: _TriggerRuntime, events: dict[str, Event], key: str | None = None,
              counted: dict[str, list[str]] | None = None) -> Firing:
        fid = firing_id(self.name, t.name, events, key, counted)
        template = t.spec.template
        assert template is not None
        try:
            return self._resolve(fid, t.name, t.spec, template, events, t.trigger_params,
                                 t.body, key, counted)
        except ParameterError as err:
            # Argo logs the error and does not run the trigger (its state is cleared all the same).
            return Firing(self.name, t.name, fid, events, template, None, t.spec, None,
                          _one_line(f"trigger {t.name!r}: {err}; the action is not run"), key, counted)

    def _resolve(self, fid: str, name: str, spec: Trigger, template: TriggerTemplate, events: dict[str, Event],
                 trigger_params: list[CompiledParameter],
                 compiled: _Body | None,
                 key: str | None = None, counted: dict[str, list[str]] | None = None) -> Firing:
        """Trigger-level parameters on the template first (they may rewrite its own parameters,
        Argo's THIS_WILL_BE_REPLACED example), then the template's parameters on its body."""
        if trigger_params:
            doc = apply_params(template.dump(), trigger_params, events, fid, strict=True)
            try:
                template = TriggerTemplate.model_validate(doc)
            except ValidationError as err:
                raise ParameterError(f"the trigger-level parameters made the template invalid: "
                                     f"{spec_error(err, prefix=('template',))}") from None
            compiled = None
        if compiled is None:
            compiled = _compile_body(template)
        body_doc = compiled.doc
        if body_doc is not None and compiled.kind not in RESOURCE_KINDS and compiled.resource_params:
            body_doc = apply_params(body_doc, compiled.resource_params, events, fid, strict=True)
        return Firing(self.name, name, fid, events, template, resolve_body(compiled, events, fid), spec, body_doc, "",
                      key, counted)

    def dlq_firing(self, firing: Firing) -> Firing | None:
        """The firing of a trigger's ``dlqTrigger`` on the same events (Argo runs it after retries fail)."""
        spec = firing.trigger_spec
        dlq = spec.dlq_trigger if spec else None
        if dlq is None or dlq.template is None:
            return None
        fid = hashlib.sha256(f"{firing.id}\ndlq".encode()).hexdigest()[:16]
        try:
            return self._resolve(fid, dlq.template.name, dlq, dlq.template, firing.events,
                                 compile_parameters(dlq.parameters), None, firing.key)
        except ParameterError as err:
            return Firing(self.name, dlq.template.name, fid, firing.events, dlq.template, None, dlq, None,
                          _one_line(f"dead-letter trigger {dlq.template.name!r}: {err}; the action is not run"))

    def build_firing(self, trigger: str, events: dict[str, Event], key: str | None = None,
                     counted: dict[str, list[str]] | None = None) -> Firing:
        """Rebuild a firing from its events (the journal stores only these, with the correlation
        key and counted ids of a correlated firing): same id, same body."""
        return self._fire(self._trigger(trigger), events, key, counted)

    # ------------------------------------------------------------ state

    def saved(self, trigger: str, key: str = NO_KEY) -> dict[str, Event]:
        """The saved events of a trigger (of one key's partial match for a correlated trigger)."""
        t = self._trigger(trigger)
        if t.corr is not None:
            m = t.corr.matches.get(key)
            return dict(m.events) if m is not None else {}
        return dict(t.saved)

    def restore(self, trigger: str, events: dict[str, Event], key: str = NO_KEY,
                counted: dict[str, list[tuple[str, datetime]]] | None = None) -> None:
        """Replace the saved events of a trigger (of one key for a correlated trigger; no events: the key goes)."""
        t = self._trigger(trigger)
        if t.corr is None:
            t.saved = {d: e for d, e in events.items() if d in t.deps}
            return
        c = t.corr
        kept = {d: e for d, e in events.items() if d in t.deps}
        if not kept:
            c.matches.pop(key, None)
            return
        m = Match(kept, {d: deque((i, aware(at)) for i, at in q)
                         for d, q in (counted or {}).items() if d in kept and d in c.thresholds})
        for d, ev in kept.items():  # a threshold dependency always counts its latest event
            if d in c.thresholds and not any(i == ev.id for i, _ in m.counted.get(d, ())):
                m.counted.setdefault(d, deque()).append((ev.id, aware(ev.time)))
        c.matches[key] = m
        c.schedule(key, m)  # the watermark moves with the next event processed

    def clear(self, trigger: str) -> None:
        """Drop every saved event of a trigger (every key of a correlated one)."""
        t = self._trigger(trigger)
        t.saved.clear()
        if t.corr is not None:
            t.corr.clear()

    def begin(self) -> None:
        """Start recording which event ids are newly seen, so that :meth:`rollback_seen` can
        forget them when the runtime has to process a batch again."""
        self._seen_log = []

    def rollback_seen(self) -> None:
        for name, event_id in self._seen_log or ():
            self._trigger(name).seen.pop(event_id, None)
        self._seen_log = []

    def stateful(self, trigger: str) -> bool:
        """True when the trigger keeps saved events (its condition has ``&``, or it is correlated)."""
        t = self._trigger(trigger)
        return t.condition.requires_and or t.corr is not None

    def take_dirty(self) -> set[str]:
        """Names of the triggers whose saved events changed since the last call."""
        dirty, self._dirty = self._dirty, set()
        return dirty

    def triggers_for(self, source: str, subject: str) -> list[tuple[str, list[str]]]:
        """(trigger, dependencies) that listen to one eventSourceName/eventName pair."""
        return [(t.name, t.by_key[(source, subject)]) for t in self.triggers if (source, subject) in t.by_key]

    def snapshot(self) -> dict[str, Any]:
        """The engine's state as JSON: saved events per trigger and the clock (for resets)."""
        out: dict[str, Any] = {
            "clock": self.clock.isoformat() if self.clock else None,
            "triggers": {t.name: {d: e.to_json() for d, e in t.saved.items()} for t in self.triggers if t.saved},
        }
        matches = {t.name: {k: {d: e.to_json() for d, e in m.events.items()} for k, m in t.corr.matches.items()}
                   for t in self.triggers if t.corr is not None and t.corr.matches}
        if matches:
            out["matches"] = matches
        return out

    def load(self, doc: dict[str, Any]) -> None:
        """Replace the state with a snapshot (unknown triggers/dependencies are dropped: the spec changed)."""
        from airflow_argo_events.core.events import event_from_json

        self.clock = datetime.fromisoformat(doc["clock"]) if doc.get("clock") else None
        saved = doc.get("triggers") or {}
        for t in self.triggers:
            t.saved = {d: event_from_json(e) for d, e in (saved.get(t.name) or {}).items() if d in t.deps}
            t.seen.clear()
            for r in t.resets:
                r.next_tick = None

    def listens_to(self) -> list[tuple[str, str]]:
        """Every (eventSourceName, eventName) some trigger listens to."""
        out: list[tuple[str, str]] = []
        for t in self.triggers:
            for k in t.by_key:
                if k not in out:
                    out.append(k)
        return out


@dataclass(frozen=True, slots=True)
class _Body:
    """A trigger template's type, block and compiled parameters, worked out once per template."""

    kind: str
    body: Any
    doc: dict[str, Any] | None
    """``body`` dumped (camelCase), once: every firing without block parameters shares it."""
    resource_params: list[CompiledParameter]
    """Parameters that edit the trigger's block (or its resource)."""
    payload_params: list[CompiledParameter]
    """Parameters that build its payload."""


def _compile_body(template: TriggerTemplate) -> _Body:
    body, kind = template.body, template.kind
    doc = body.dump() if body is not None else None
    params = compile_parameters(getattr(body, "parameters", None), f"{kind}.parameters")
    if kind in PARAMETERS_BUILD_PAYLOAD:
        return _Body(kind, body, doc, [], params)
    return _Body(kind, body, doc, params, compile_parameters(getattr(body, "payload", None), f"{kind}.payload"))


def resolve_body(compiled: _Body, events: dict[str, Event], fid: str) -> Any:
    """What the action sends (DESIGN.md ``resolved``)."""
    kind, body = compiled.kind, compiled.body
    if kind in PAYLOAD_KINDS:
        return construct_payload(compiled.payload_params, events, fid, strict=True)
    if kind in RESOURCE_KINDS:
        source = body.source
        if source is None:
            return None
        resource: Any = source.resource
        if resource is None and source.inline:
            import yaml

            resource = yaml.safe_load(source.inline)
        if resource is None:
            return None
        return apply_params(resource, compiled.resource_params, events, fid, strict=True)
    if kind == "log":
        return None
    if kind == "slack":
        return apply_params(compiled.doc, compiled.resource_params, events, fid, strict=True)
    return None


@functools.lru_cache(maxsize=4096)
def _canon(name: str) -> str:
    """:func:`canonical`, remembered: dependency names are few and looked up per event."""
    return canonical(name)


def _label(t: _TriggerRuntime, key: str) -> str:
    """``ship[42]`` for a key of a keyed trigger, the trigger's name otherwise (explain lines)."""
    return f"{t.name}[{key}]" if t.corr is not None and t.corr.keys is not None else t.name


def _one_line(text: str) -> str:
    return " ".join(text.split())
