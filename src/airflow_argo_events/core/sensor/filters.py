"""Argo's dependency filters (``pkg/sensors/dependencies/filter.go``), compiled once per dependency.

Kinds: exprs, data, context, time, script. ``filtersLogicalOperator`` combines them:

1. ``and`` (default): every configured kind must pass; an error in exprs, data or time
   drops the event.
2. ``or``: the event passes when some *configured* kind passed **and no kind reported an
   error** (Argo's ``Filter()`` turns any error into a drop, even if another kind passed).
3. A script error always drops the event.

Within data and exprs, ``dataLogicalOperator``/``exprLogicalOperator`` work the same
way: under ``and`` the first failure or error decides; under ``or`` the first match
passes at once and errors are only reported when nothing matched.

Every verdict carries a one-line reason, which ``sensor test --explain`` prints.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from airflow_argo_events.core.events import Event
from airflow_argo_events.core.sensor.expr import ExprError, ExprFilterProgram
from airflow_argo_events.core.sensor.gotemplate import NO_VALUE, GoTemplate, TemplateError
from airflow_argo_events.core.sensor.lua import LuaError, LuaSandbox
from airflow_argo_events.core.sensor.paths import (
    MISSING,
    compile_path,
    gjson_bool,
    gjson_float,
    gjson_string,
    parse_go_bool,
    parse_go_float,
)
from airflow_argo_events.core.sensor.regex import RegexError, text_test
from airflow_argo_events.core.spec.sensor import DataFilter, EventDependencyFilter, TimeFilter, parse_clock


@dataclass(frozen=True, slots=True)
class Verdict:
    passed: bool
    reason: str = ""


PASS = Verdict(True)


class _KindError(Exception):
    """A filter kind reported an error (Argo: returned a non-nil error)."""


def _no_json(data: Any) -> bool:
    return isinstance(data, (bytes, bytearray))


# ------------------------------------------------------------------ data


class _DataItem:
    def __init__(self, f: DataFilter) -> None:
        self.spec = f
        self.get = compile_path(f.path)
        self.template = None
        self.template_error = None
        if f.template:
            try:
                self.template = GoTemplate(f.template)
            except TemplateError as err:
                self.template_error = str(err)
        self.values: list[Any] = []
        self.value_error: str | None = None
        for v in f.value:
            try:
                if f.type == "bool":
                    self.values.append(parse_go_bool(v))
                elif f.type == "number":
                    self.values.append(parse_go_float(v))
                else:
                    self.values.append(text_test(v))  # Go's regexp: RE2, linear time
            except RegexError as err:
                self.value_error = str(err)
                break
            except ValueError as err:
                self.value_error = f"value {v!r}: {err}"
                break
        self.negate = f.comparator == "!="
        self.compare = _COMPARE.get(f.comparator or "=", operator.le)

    def check(self, data: Any) -> tuple[bool, str]:
        """(matched, description of a mismatch; "" on a match, which nothing shows);
        raises _KindError for Argo's error cases."""
        f = self.spec
        value = self.get(data)
        if value is MISSING:
            raise _KindError(f"path '{f.path}' does not exist")
        if self.template_error:
            raise _KindError(self.template_error)
        if self.template is not None:
            try:
                out = self.template.render({"Input": gjson_string(value)})
            except TemplateError as err:
                raise _KindError(str(err)) from None
            if out == "" or out == NO_VALUE:
                raise _KindError(f"template '{f.template}' evaluated to empty string or no value")
            value = out
        if self.value_error:
            raise _KindError(self.value_error)
        kind = f.type
        values = self.values
        if kind == "bool":
            actual = gjson_bool(value)
            hits = [v == actual for v in values]
        elif kind == "number":
            op = self.compare
            actual_f = gjson_float(value)
            hits = [op(actual_f, v) for v in values]
        else:
            text = gjson_string(value)
            found = [test(text) for test in values]
            hits = [not m for m in found] if self.negate else found
        # Deliberate difference (ARGO_SEMANTICS.md section 9): != with several
        # values passes only when the value equals none of them.
        if (all(hits) if self.negate and len(values) > 1 else any(hits)):
            return True, ""
        if kind == "bool":
            shown = "true" if actual else "false"
        elif kind == "number":
            shown = gjson_string(value)
        else:
            shown = repr(text)
        return False, f"{f.path}={shown} {f.comparator or '='} {f.value}"


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "=": operator.eq, "!=": operator.ne, ">": operator.gt, ">=": operator.ge, "<": operator.lt,
}
"""Number comparators; any other is ``<=`` (as validated, only ``<=`` is left)."""


def _run_items(kind: str, items: list[Any], op: str, data: Any) -> tuple[bool, str]:
    """Argo's loop over data/expr filters; raises _KindError when Argo returns an error.

    The description of an item that matched is never shown (under ``and`` only a mismatch
    is; under ``or`` a match passes), so items describe only their mismatches.
    """
    if op != "or":
        for item in items:
            try:
                ok, desc = item.check(data)
            except _KindError as err:
                raise _KindError(f"{kind} filter error ({err})") from None
            if not ok:
                return False, f"{kind} filter: {desc} is false"
        return True, ""
    errors: list[str] = []
    last = ""
    for item in items:
        try:
            ok, desc = item.check(data)
        except _KindError as err:
            errors.append(str(err))
            continue
        if ok:
            return True, desc
        last = desc
    if errors:
        raise _KindError(f"{kind} filter errors [{' / '.join(errors)}]")
    return False, f"{kind} filter: no filter matched (last: {last})"


# ------------------------------------------------------------------ exprs


class _ExprItem:
    def __init__(self, expr: str, fields: list[tuple[str, str]]) -> None:
        self.expr = expr
        self.fields = [(name, path, compile_path(path)) for name, path in fields]
        self.program: ExprFilterProgram | None = None
        self.error: str | None = None
        try:
            self.program = ExprFilterProgram(expr)
        except ExprError as err:
            self.error = str(err)

    def check(self, data: Any) -> tuple[bool, str]:
        """(the expression is ``true``, the description of a mismatch)."""
        values = self.bind(data)
        if self.error:
            raise _KindError(self.error)
        try:
            result = self.program.evaluate(values)  # type: ignore[union-attr]
        except ExprError as err:
            raise _KindError(str(err)) from None
        if result is True:
            return True, ""
        shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
        return False, f"'{self.expr}' with {shown}"

    def bind(self, data: Any) -> dict[str, Any]:
        values = {}
        for name, path, get in self.fields:
            v = get(data)
            if v is MISSING:
                raise _KindError(f"path '{path}' does not exist")
            values[name] = v
        return values


# ------------------------------------------------------------------ time


def _time_window(f: TimeFilter, t: datetime) -> bool:
    """[start, stop) on the event's date; when stop <= start the window wraps midnight.

    start < stop:   0:00 ----[start ===== stop)---- 24:00
    stop < start:   0:00 ===== stop)----[start ===== 24:00
    """
    tz = ZoneInfo(f.timezone) if f.timezone else timezone.utc
    local = _local(t, tz)
    start = _at(local, f.start)
    stop = _at(local, f.stop)
    if start < stop:
        return start <= local < stop
    return local >= start or local < stop


_GREGORIAN_CYCLE = timedelta(days=146_097)
"""400 years: the calendar (weekdays, leap days) repeats, and so does a zone's time of day."""


def _local(t: datetime, tz: tzinfo) -> datetime:
    """``t`` in ``tz``, even where that falls outside Python's years 1-9999.

    Go's time has no such bound: 9999-12-31T23:00Z is 10000-01-01 in Pacific/Kiritimati
    and Argo compares its time of day. Only the time of day matters to the window, so
    shift by whole 400-year cycles (same calendar, same zone rules: past the last
    transition a zone follows one yearly rule) and convert that instead.
    """
    try:
        return t.astimezone(tz)
    except OverflowError:
        shift = _GREGORIAN_CYCLE if t.year < 5000 else -_GREGORIAN_CYCLE
        return (t + shift).astimezone(tz)


def _at(day: datetime, hms: str) -> datetime:
    h, m, s, us = parse_clock(hms)  # as validated: Go's 15:04:05, with an optional fraction
    return day.replace(hour=h, minute=m, second=s, microsecond=us)


# ------------------------------------------------------------------ the whole filter


class DependencyFilter:
    """All filters of one dependency; ``check(event)`` gives a Verdict with a reason."""

    def __init__(self, spec: EventDependencyFilter | None, operator: str = "", lua: LuaSandbox | None = None,
                 lua_factory: Any = None) -> None:
        self.spec = spec
        self.operator = operator or "and"
        self.data_items = [_DataItem(f) for f in (spec.data or [])] if spec else []
        self.expr_items = [
            _ExprItem(e.expr, [(fld.name, fld.path) for fld in e.fields]) for e in (spec.exprs or [])
        ] if spec else []
        # The configured kinds, in Argo's order (exprs, data, context, time); the script runs last.
        self._kinds: list[Callable[[Event], tuple[bool, str]]] = [fn for configured, fn in (
            (spec is not None and spec.exprs is not None, self._exprs),
            (spec is not None and spec.data is not None, self._data),
            (spec is not None and spec.context is not None, self._context),
            (spec is not None and spec.time is not None, self._time),
        ) if configured]
        self.script = None
        if spec and spec.script:
            box = lua or (lua_factory() if lua_factory else LuaSandbox())
            try:
                self.script = (box, box.compile(spec.script, "filter"))
            except LuaError as err:
                self.script = (box, err)

    @property
    def empty(self) -> bool:
        return self.spec is None

    def check(self, event: Event) -> Verdict:
        spec = self.spec
        if spec is None:
            return PASS
        if self.operator == "or":
            return self._check_or(event)
        # and: every configured kind runs in order; the first error decides at once, else
        # the first kind that did not pass (only then is a reason needed).
        failed = None
        for fn in self._kinds:
            try:
                ok, why = fn(event)
            except _KindError as err:
                return Verdict(False, str(err))
            if not ok and failed is None:
                failed = why
        if self.script is not None:
            try:
                ok, why = self._script(event)
            except _KindError as err:
                return Verdict(False, str(err))
            if not ok and failed is None:
                failed = why
        return PASS if failed is None else Verdict(False, failed)

    def _check_or(self, event: Event) -> Verdict:
        errors: list[str] = []
        results: list[tuple[bool, str]] = []  # (passed, reason) of each configured kind
        for fn in self._kinds:
            try:
                results.append(fn(event))
            except _KindError as err:
                errors.append(str(err))
                results.append((False, str(err)))
        if self.script is not None:
            try:
                results.append(self._script(event))
            except _KindError as err:
                return Verdict(False, str(err))
        if errors:
            return Verdict(False, "filters (or): " + " / ".join(errors))
        if any(ok for ok, _ in results):
            return PASS
        return Verdict(False, "filters (or): none passed: " + "; ".join(r for _, r in results if r))

    def _data(self, event: Event) -> tuple[bool, str]:
        data = event.data
        if data is None:
            return True, ""
        if _no_json(data):
            raise _KindError("data filter error (event data not valid JSON)")
        return _run_items("data", self.data_items, self.spec.data_logical_operator or "and", data)

    def _exprs(self, event: Event) -> tuple[bool, str]:
        data = event.data
        if data is None:
            return True, ""
        if _no_json(data):
            raise _KindError("expr filter error (event data not valid JSON)")
        return _run_items("expr", self.expr_items, self.spec.expr_logical_operator or "and", data)

    def _context(self, event: Event) -> tuple[bool, str]:
        c = self.spec.context
        for name, expected, actual in (
            ("type", c.type, event.type), ("subject", c.subject, event.subject),
            ("source", c.source, event.source), ("datacontenttype", c.datacontenttype, event.datacontenttype),
        ):
            if expected and expected != actual:
                return False, f"context filter: {name} {actual!r} != {expected!r}"
        return True, ""

    def _time(self, event: Event) -> tuple[bool, str]:
        f = self.spec.time
        if _time_window(f, event.time):
            return True, ""
        return False, f"time filter: {event.time.isoformat()} outside [{f.start}, {f.stop}) {f.timezone or 'UTC'}"

    def _script(self, event: Event) -> tuple[bool, str]:
        box, fn = self.script
        if isinstance(fn, LuaError):
            raise _KindError(f"script filter error ({fn})")
        data = event.data
        if data is None:
            return True, ""
        if not isinstance(data, dict):
            raise _KindError("script filter error (event data is not a JSON object)")
        try:
            passed, shown = box.verdict(fn, data)
        except LuaError as err:
            raise _KindError(f"script filter error ({err})") from None
        return passed, f"script filter returned {shown}"
