"""Argo's transform (``pkg/sensors/dependencies/transform.go``): jq or Lua replaces the event data.

jq wins when both are set. jq's first output must be an object; Lua's result must be a
table. Anything else is an error and the event is dropped for that dependency.
jq runs in a worker process with a time and memory bound (see ``jq_worker``).
"""

from __future__ import annotations

import json
from typing import Any

from airflow_argo_events.core.events import Event
from airflow_argo_events.core.sensor.jq_worker import JqProcess, JqRunError, check_program
from airflow_argo_events.core.sensor.lua import LuaError, LuaSandbox
from airflow_argo_events.core.spec.sensor import EventDependencyTransformer

JQ_TIMEOUT_SECONDS = 2.0
"""Per event: the worker is killed and restarted past it. jq transforms take microseconds; 2 s is a hang."""
_JQ = JqProcess()


class TransformError(ValueError):
    """The transform failed for this event."""


class Transform:
    """A compiled transform; ``apply(event)`` returns the event with new data."""

    def __init__(self, spec: EventDependencyTransformer, lua_factory: Any = None) -> None:
        self.spec = spec
        self._jq = None
        self._lua: tuple[LuaSandbox, Any] | None = None
        self.error: str | None = None
        try:
            if spec.jq:
                import jq

                check_program(spec.jq)
                jq.compile(spec.jq)  # syntax errors now, per event later
                self._jq = spec.jq
            elif spec.script:
                box = lua_factory() if lua_factory else LuaSandbox()
                self._lua = (box, box.compile(spec.script, "transform"))
        except ImportError:
            self.error = "jq transforms need the 'jq' extra: pip install 'airflow-argo-events[jq]'"
        except (ValueError, LuaError) as err:
            self.error = f"invalid transform: {err}"

    def apply(self, event: Event) -> Event:
        if self.error:
            raise TransformError(self.error)
        data = event.data
        if isinstance(data, (bytes, bytearray)):
            raise TransformError("event data is not valid JSON")
        if self._jq is not None:
            return event.with_data(self._run_jq(data))
        if self._lua is not None:
            box, fn = self._lua
            if not isinstance(data, dict):
                raise TransformError("event data is not a JSON object")
            try:
                out = box.run(fn, data)
            except LuaError as err:
                raise TransformError(f"lua: {err}") from None
            if not isinstance(out, dict):
                raise TransformError(f"lua transform must return a table, got {type(out).__name__}")
            return event.with_data(out)
        return event

    def _run_jq(self, data: Any) -> dict[str, Any]:
        try:
            out = _JQ.run(self._jq, data, JQ_TIMEOUT_SECONDS)
        except JqRunError as err:
            raise TransformError(f"jq: {err}") from None
        if not isinstance(out, dict):
            raise TransformError(f"jq output must be a JSON object, got {json.dumps(out)[:60]}")
        # gojq's output goes through Go's json.Marshal of a map: keys sorted.
        return {k: out[k] for k in sorted(out)}
