"""SourceEvent -> CloudEvent, as Argo's ``eventing.go``; and the per-event ``filter.expression``."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from airflow_argo_events.core.events import Event, new_event
from airflow_argo_events.core.sensor.expr import ExprError, ExprFilterProgram
from airflow_argo_events.core.sensor.paths import MISSING, compile_path
from airflow_argo_events.core.sources.base import SourceEvent
from airflow_argo_events.core.spec.eventsource import EventConfig


def to_event(cfg: EventConfig, raw: SourceEvent) -> Event:
    """id = hex UUID (or the source's own), source = EventSource name, subject = event name, type = source type."""
    return new_event(source=cfg.source, subject=cfg.name, type=cfg.type, data=raw.payload, id=raw.id,
                     time=raw.time or datetime.now(timezone.utc))


class EventFilter:
    """An EventSource's ``filter.expression`` over the payload (names are GJSON paths, e.g. ``body.n > 5``)."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.program = ExprFilterProgram(expression, dotted_names=True)
        self.paths = {name: compile_path(name) for name in self.program.names}

    def passes(self, payload: Any) -> bool:
        values = {}
        for name, get in self.paths.items():
            v = get(payload)
            if v is MISSING:
                return False
            values[name] = v
        try:
            return self.program.evaluate(values) is True
        except ExprError:
            return False


def event_filter(cfg: EventConfig) -> EventFilter | None:
    # resource's ``filter`` is Argo's ResourceFilter (labels, fields, ...), which has no expression
    expression = getattr(getattr(cfg.spec, "filter", None), "expression", "")
    return EventFilter(expression) if expression else None
