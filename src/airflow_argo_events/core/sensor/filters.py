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
from airflow_argo_events.core.sensor.regex import RegexError, go_regex, matches
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
                    self.values.append(go_regex(v))  # Go's regexp: RE2, linear time
            except RegexError as err:
                self.value_error = str(err)
                break
            except ValueError as err:
                self.value_error = f"value {v!r}: {err}"
                break
        self.negate = f.comparator == "!="

    def check(self, data: Any) -> tuple[bool, str]:
        """(matched, description); raises _KindError for Argo's error cases."""
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
        cmp = f.comparator or "="
        if f.type == "bool":
            actual = gjson_bool(value)
            hits = [v == actual for v in self.values]
            shown = "true" if actual else "false"
        elif f.type == "number":
            actual_f = gjson_float(value)
            hits = [_compare(actual_f, cmp, v) for v in self.values]
            shown = gjson_string(value)
        else:
            text = gjson_string(value)
            found = [matches(rx, text) for rx in self.values]
            hits = [not m for m in found] if self.negate else found
            shown = repr(text)
        if self.negate and len(self.values) > 1:
            # Deliberate difference (ARGO_SEMANTICS.md section 9): != with several
            # values passes only when the value equals none of them.
            ok = all(hits)
        else:
            ok = any(hits)
        return ok, f"{f.path}={shown} {cmp} {f.value}"


def _compare(a: float, cmp: str, b: float) -> bool:
    if cmp == "=":
        return a == b
    if cmp == "!=":
        return a != b
    if cmp == ">":
        return a > b
    if cmp == ">=":
        return a >= b
    if cmp == "<":
        return a < b
    return a <= b


def _run_items(kind: str, items: list[Any], op: str, check: Any) -> tuple[bool, str]:
    """Argo's loop over data/expr filters; raises _KindError when Argo returns an error."""
    errors: list[str] = []
    last = ""
    for item in items:
        try:
            ok, desc = check(item)
        except _KindError as err:
            if op != "or":
                raise _KindError(f"{kind} filter error ({err})") from None
            errors.append(str(err))
            continue
        last = desc
        if ok and op == "or":
            return True, desc
        if not ok and op != "or":
            return False, f"{kind} filter: {desc} is false"
    if op == "or":
        if errors:
            raise _KindError(f"{kind} filter errors [{' / '.join(errors)}]")
        return False, f"{kind} filter: no filter matched (last: {last})"
    return True, ""


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
        is_or = self.operator == "or"
        errors: list[str] = []
        results: list[tuple[bool, bool, str]] = []  # (configured, passed, reason)

        def kind(configured: bool, fn: Any) -> None:
            if not configured:
                results.append((False, True, ""))
                return
            try:
                ok, why = fn()
            except _KindError as err:
                if not is_or:
                    raise
                errors.append(str(err))
                results.append((True, False, str(err)))
                return
            results.append((True, ok, why))

        try:
            kind(spec.exprs is not None, lambda: self._exprs(event))
            kind(spec.data is not None, lambda: self._data(event))
            kind(spec.context is not None, lambda: self._context(event))
            kind(spec.time is not None, lambda: self._time(event))
        except _KindError as err:
            return Verdict(False, str(err))
        if self.script is not None:
            try:
                ok, why = self._script(event)
            except _KindError as err:
                return Verdict(False, str(err))
            results.append((True, ok, why))
        if is_or:
            passed = any(conf and ok for conf, ok, _ in results)
            if errors:
                return Verdict(False, "filters (or): " + " / ".join(errors))
            if passed:
                return PASS
            return Verdict(False, "filters (or): none passed: " + "; ".join(r for c, _, r in results if c and r))
        for conf, ok, why in results:
            if conf and not ok:
                return Verdict(False, why)
        return PASS

    def _data(self, event: Event) -> tuple[bool, str]:
        data = event.data
        if data is None:
            return True, ""
        if _no_json(data):
            raise _KindError("data filter error (event data not valid JSON)")
        return _run_items("data", self.data_items, self.spec.data_logical_operator or "and",
                          lambda item: item.check(data))

    def _exprs(self, event: Event) -> tuple[bool, str]:
        data = event.data
        if data is None:
            return True, ""
        if _no_json(data):
            raise _KindError("expr filter error (event data not valid JSON)")

        def check(item: _ExprItem) -> tuple[bool, str]:
            values = item.bind(data)
            if item.error:
                raise _KindError(item.error)
            try:
                result = item.program.evaluate(values)  # type: ignore[union-attr]
            except ExprError as err:
                raise _KindError(str(err)) from None
            shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
            return result is True, f"'{item.expr}' with {shown}"

        return _run_items("expr", self.expr_items, self.spec.expr_logical_operator or "and", check)

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
            result = box.run(fn, data)
        except LuaError as err:
            raise _KindError(f"script filter error ({err})") from None
        return result is True, f"script filter returned {result!r}"
