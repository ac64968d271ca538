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

import hashlib
import itertools
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
PAYLOAD_KINDS = ("http", "nats", "kafka", "airflow")
RESOURCE_KINDS = ("k8s", "argoWorkflow")
MAX_TRANSFORMED_BYTES = 1024 * 1024
"""NATS's default max payload: an event larger than this could be neither stored nor published."""


def firing_id(sensor: str, trigger: str, events: dict[str, Event]) -> str:
    """sha256 of the sensor, the trigger and the sorted dependency:event-id pairs, 16 hex."""
    pairs = ",".join(f"{dep}:{ev.id}" for dep, ev in sorted(events.items()))
    return hashlib.sha256(f"{sensor}\n{trigger}\n{pairs}".encode()).hexdigest()[:16]


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
    """The trigger type's block (camelCase) after its own ``parameters`` (url, subject, ...)."""
    error: str = ""
    """Set when a parameter could not be resolved: as in Argo, the action is not run (the
    executor records the firing as failed and runs the dlqTrigger); the state is cleared all the same."""

    def summary(self) -> dict[str, Any]:
        """The ``sensor test`` output line."""
        return {"trigger": self.trigger, "events": {d: e.id for d, e in self.events.items()},
                "resolved": self.resolved}


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
    resource_params: list[CompiledParameter]
    payload_params: list[CompiledParameter]
    saved: dict[str, Event] = field(default_factory=dict)
    seen: dict[str, datetime] = field(default_factory=dict)


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
        self.duplicates = 0
        """How many times an event id seen in the last 60 s was skipped (Argo's recentMsgsByID)."""
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
            body = t.body
            self.triggers.append(_TriggerRuntime(
                spec=trig, name=t.name, condition=cond, deps=deps, by_key=by_key, resets=resets,
                trigger_params=compile_parameters(trig.parameters),
                resource_params=compile_parameters(getattr(body, "parameters", None), f"{t.kind}.parameters"),
                payload_params=compile_parameters(getattr(body, "payload", None), f"{t.kind}.payload"),
            ))

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
            for t in self.triggers:
                if any(r.passed(last, now) for r in t.resets):
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
        self.advance(now)
        key = (event.source, event.subject)
        accepted: dict[str, tuple[Event | None, str]] = {}
        firings: list[Firing] = []
        self.applied = []
        matched = [t for t in self.triggers if key in t.by_key]
        if not matched:
            self._note(f"  no dependency listens to source={event.source!r} subject={event.subject!r}")
            return firings
        before = {t.name: dict(t.saved) for t in matched}
        dirty_before = set(self._dirty)
        try:
            for t in matched:
                if t.name in skip:
                    self._note(f"  {t.name}: message already applied before a redelivery, skipped")
                    continue
                if self._seen_recently(t, event.id, now):
                    self.duplicates += 1
                    self._note(f"  {t.name}: event {event.id} already seen, skipped")
                    continue
                for dep in t.by_key[key]:
                    if dep not in accepted:
                        accepted[dep] = self.dependencies[dep].accept(event)
                        ev, why = accepted[dep]
                        self._note(f"  dependency {dep}: " + ("passed" if ev is not None else f"rejected: {why}"))
                    ev, _ = accepted[dep]
                    if ev is None:
                        continue
                    fired = self._apply(t, dep, ev)
                    self.applied.append((t.name, dep, fired))
                    if fired is not None:
                        firings.append(fired)
        except BaseException:
            for t in matched:
                t.saved = before[t.name]
                t.seen.pop(event.id, None)
            self._dirty = dirty_before
            self.applied = []
            raise
        return firings

    def _seen_recently(self, t: _TriggerRuntime, event_id: str, now: datetime) -> bool:
        """Argo's recentMsgsByID: ids kept for 60 s, oldest evicted first (insertion order)."""
        seen = t.seen
        at = seen.get(event_id)
        if at is not None and now - at < DEDUP_WINDOW:
            return True
        if self._seen_log is not None and at is None:
            self._seen_log.append((t.name, event_id))
        seen.pop(event_id, None)
        seen[event_id] = now
        while seen:
            oldest_id = next(iter(seen))
            if now - seen[oldest_id] < DEDUP_WINDOW and len(seen) <= MAX_REMEMBERED_IDS:
                break
            del seen[oldest_id]
        return False

    def _apply(self, t: _TriggerRuntime, dep: str, event: Event) -> Firing | None:
        if not t.condition.requires_and:
            self._note(f"  {t.name}: fires on {dep} ({t.condition.text or dep})")
            return self._fire(t, {dep: event})
        env = {canonical(d): True for d in t.saved}
        env[canonical(dep)] = True
        self._dirty.add(t.name)
        if t.condition.evaluate(env):
            events = dict(t.saved)
            events[dep] = event
            firing = self._fire(t, events)  # before clearing: a failure leaves the state as it was
            t.saved.clear()
            self._note(f"  {t.name}: condition '{t.condition.text}' met with {sorted(events)}")
            return firing
        t.saved[dep] = event
        self._note(f"  {t.name}: saved {dep}; {self.waiting_for(t.name)}")
        return None

    def waiting_for(self, trigger: str) -> str:
        """What the trigger's condition still needs, in words."""
        t = self._trigger(trigger)
        have = {canonical(d): True for d in t.saved}
        if t.condition.evaluate(have):
            return "condition already true"
        missing = [d for d in t.deps if d not in t.saved]
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

    def _fire(self, t: _TriggerRuntime, events: dict[str, Event]) -> Firing:
        fid = firing_id(self.name, t.name, events)
        template = t.spec.template
        assert template is not None
        try:
            return self._resolve(fid, t.name, t.spec, template, events, t.trigger_params,
                                 (t.resource_params, t.payload_params))
        except ParameterError as err:
            # Argo logs the error and does not run the trigger (its state is cleared all the same).
            return Firing(self.name, t.name, fid, events, template, None, t.spec, None,
                          _one_line(f"trigger {t.name!r}: {err}; the action is not run"))

    def _resolve(self, fid: str, name: str, spec: Trigger, template: TriggerTemplate, events: dict[str, Event],
                 trigger_params: list[CompiledParameter],
                 compiled: tuple[list[CompiledParameter], list[CompiledParameter]] | None) -> Firing:
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
            body = template.body
            compiled = (compile_parameters(getattr(body, "parameters", None), f"{template.kind}.parameters"),
                        compile_parameters(getattr(body, "payload", None), f"{template.kind}.payload"))
        resource_params, payload_params = compiled
        body = template.body
        body_doc = body.dump() if body is not None else None
        if body_doc is not None and template.kind not in RESOURCE_KINDS and resource_params:
            body_doc = apply_params(body_doc, resource_params, events, fid, strict=True)
        return Firing(self.name, name, fid, events, template,
                      resolve_body(template, resource_params, payload_params, events, fid), spec, body_doc)

    def dlq_firing(self, firing: Firing) -> Firing | None:
        """The firing of a trigger's ``dlqTrigger`` on the same events (Argo runs it after retries fail)."""
        spec = firing.trigger_spec
        dlq = spec.dlq_trigger if spec else None
        if dlq is None or dlq.template is None:
            return None
        fid = hashlib.sha256(f"{firing.id}\ndlq".encode()).hexdigest()[:16]
        try:
            return self._resolve(fid, dlq.template.name, dlq, dlq.template, firing.events,
                                 compile_parameters(dlq.parameters), None)
        except ParameterError as err:
            return Firing(self.name, dlq.template.name, fid, firing.events, dlq.template, None, dlq, None,
                          _one_line(f"dead-letter trigger {dlq.template.name!r}: {err}; the action is not run"))

    def build_firing(self, trigger: str, events: dict[str, Event]) -> Firing:
        """Rebuild a firing from its events (the journal stores only these): same id, same body."""
        return self._fire(self._trigger(trigger), events)

    # ------------------------------------------------------------ state

    def saved(self, trigger: str) -> dict[str, Event]:
        return dict(self._trigger(trigger).saved)

    def restore(self, trigger: str, events: dict[str, Event]) -> None:
        t = self._trigger(trigger)
        t.saved = {d: e for d, e in events.items() if d in t.deps}

    def clear(self, trigger: str) -> None:
        self._trigger(trigger).saved.clear()

    def begin(self) -> None:
        """Start recording which event ids are newly seen, so that :meth:`rollback_seen` can
        forget them when the runtime has to process a batch again."""
        self._seen_log = []

    def rollback_seen(self) -> None:
        for name, event_id in self._seen_log or ():
            self._trigger(name).seen.pop(event_id, None)
        self._seen_log = []

    def stateful(self, trigger: str) -> bool:
        """True when the trigger keeps saved events (its condition has ``&``)."""
        return self._trigger(trigger).condition.requires_and

    def take_dirty(self) -> set[str]:
        """Names of the triggers whose saved events changed since the last call."""
        dirty, self._dirty = self._dirty, set()
        return dirty

    def triggers_for(self, source: str, subject: str) -> list[tuple[str, list[str]]]:
        """(trigger, dependencies) that listen to one eventSourceName/eventName pair."""
        return [(t.name, t.by_key[(source, subject)]) for t in self.triggers if (source, subject) in t.by_key]

    def snapshot(self) -> dict[str, Any]:
        """The engine's state as JSON: saved events per trigger and the clock (for resets)."""
        return {
            "clock": self.clock.isoformat() if self.clock else None,
            "triggers": {t.name: {d: e.to_json() for d, e in t.saved.items()} for t in self.triggers if t.saved},
        }

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


def resolve_body(template: TriggerTemplate, resource_params: list[CompiledParameter],
                 payload_params: list[CompiledParameter], events: dict[str, Event], fid: str) -> Any:
    """What the action sends (DESIGN.md ``resolved``)."""
    kind = template.kind
    body = template.body
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
        return apply_params(resource, resource_params, events, fid, strict=True)
    if kind in PAYLOAD_KINDS:
        return construct_payload(payload_params, events, fid, strict=True)
    if kind == "log":
        return None
    if kind == "slack":
        return apply_params(body.dump(), resource_params, events, fid, strict=True)
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split())
