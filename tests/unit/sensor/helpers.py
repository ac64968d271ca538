"""Small builders for engine tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_argo_events.core.events import Event
from airflow_argo_events.core.spec.sensor import EventDependencyFilter, Sensor

T0 = datetime(2024, 1, 1, 10, 0, 0, tzinfo=timezone.utc)


def ev(source: str = "es", subject: str = "e", data: Any = None, id: str | None = None,
       at: datetime | int = 0, type: str = "webhook") -> Event:
    t = at if isinstance(at, datetime) else T0 + timedelta(seconds=at)
    return Event(id=id or f"ev{_n()}",
                 source=source, subject=subject, type=type, time=t, data=data)


_counter = [0]


def _n() -> int:
    _counter[0] += 1
    return _counter[0]


def filt(**kwargs: Any) -> EventDependencyFilter:
    return EventDependencyFilter.model_validate(kwargs)


def sensor(deps: list[dict[str, Any]], triggers: list[dict[str, Any]], name: str = "s") -> Sensor:
    return Sensor.model_validate({"metadata": {"name": name}, "spec": {"dependencies": deps, "triggers": triggers}})


def dep(name: str, source: str = "es", event: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "eventSourceName": source, "eventName": event or name, **extra}


def log_trigger(name: str, conditions: str = "", **extra: Any) -> dict[str, Any]:
    tpl: dict[str, Any] = {"name": name, "log": {}}
    if conditions:
        tpl["conditions"] = conditions
    tpl.update(extra)
    return {"template": tpl}
