"""Argo's transform (``pkg/sensors/dependencies/transform.go``): jq or Lua replaces the event data.

jq wins when both are set. jq's first output must be an object; Lua's last returned value
must be a table (an object, or an array when it has an array part). Anything else is an error
and the event is dropped for that dependency.
jq runs in a worker process with a time and memory bound (see ``jq_worker``).
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from typing import Any

from airflow_argo_events.core.events import Event
from airflow_argo_events.core.sensor.jq_worker import JqProcess, JqRunError, check_program
from airflow_argo_events.core.sensor.lua import LuaError, LuaSandbox
from airflow_argo_events.core.sensor.paths import go_json_number
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
        if data is None:  # Argo: no payload, nothing to transform
            return event
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
            # A table with an array part becomes a JSON array, which Argo accepts as data too.
            if not isinstance(out, (dict, list)):
                raise TransformError("lua: transformation script output type is not of lua table")
            return event.with_data(out)
        return event

    def _run_jq(self, data: Any) -> dict[str, Any]:
        try:
            out = _JQ.run(self._jq, data, JQ_TIMEOUT_SECONDS)
        except JqRunError as err:
            raise TransformError(f"jq: {err}") from None
        if not isinstance(out, dict):
            raise TransformError(f"jq output must be a JSON object, got {json.dumps(out)[:60]}")
        # gojq's output goes through Go's json.Marshal of a map: keys sorted, and every
        # float64 written Go's way (1e20 as 100000000000000000000). Integers come as jq wrote
        # them: a double in its shortest digits (Go's too), or a program's literal in full.
        return _go_marshal(out)


_DBL_MAX = sys.float_info.max


def _go_marshal(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _go_marshal(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_go_marshal(v) for v in value]
    if isinstance(value, float):
        if value in (_DBL_MAX, -_DBL_MAX):  # how libjq writes an infinity; json.Marshal refuses one
            raise TransformError(f"jq: json: unsupported value: {'+' if value > 0 else '-'}Inf")
        return go_json_number(value)
    if isinstance(value, int) and not -2**53 < value < 2**53 and not isinstance(value, bool):
        f = float(value)  # a double jq wrote in full (1.2345678901234568e+29 as 1234567...), or a literal
        return go_json_number(f) if int(Decimal(repr(f))) == value else value
    return value
