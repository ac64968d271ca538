"""Argo's filter semantics, table by table (ported from the behaviour of filter_*_test.go)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from airflow_argo_events.core.sensor.filters import DependencyFilter

from .helpers import ev, filt


def check(payload, operator="", **spec):
    return DependencyFilter(filt(**spec), operator).check(ev(data=payload))


def data_f(path, type, value, comparator="", template=""):
    d = {"path": path, "type": type, "value": value}
    if comparator:
        d["comparator"] = comparator
    if template:
        d["template"] = template
    return d


BODY = {"k": "well hello there", "n": 10, "s10": "10.0", "b": True, "sb": "true", "enc": "aGVsbG8=",
        "obj": {"x": 1}}


@pytest.mark.parametrize(
    "f, passed",
    [
        # string: unanchored regex, several values OR-ed
        (data_f("k", "string", ["hello"]), True),
        (data_f("k", "string", ["^hello"]), False),
        (data_f("k", "string", ["nope", "there$"]), True),
        (data_f("k", "string", ["hello"], "!="), False),
        (data_f("k", "string", ["nope"], "!="), True),
        # deliberate difference: != with several values passes only if none matches
        (data_f("k", "string", ["nope", "hello"], "!="), False),
        (data_f("k", "string", ["nope", "zzz"], "!="), True),
        # number: ParseFloat vs gjson Float(); "" means =
        (data_f("n", "number", ["10"]), True),
        (data_f("n", "number", ["10.0"], "="), True),
        (data_f("s10", "number", ["10"]), True),
        (data_f("n", "number", ["9", "11"]), False),
        (data_f("n", "number", ["5"], ">"), True),
        (data_f("n", "number", ["10"], ">"), False),
        (data_f("n", "number", ["10"], ">="), True),
        (data_f("n", "number", ["11"], "<"), True),
        (data_f("n", "number", ["10"], "<="), True),
        (data_f("n", "number", ["10"], "!="), False),
        (data_f("n", "number", ["3"], "!="), True),
        (data_f("n", "number", ["10", "3"], "!="), False),
        # bool: ParseBool vs gjson Bool(); the string "true" is true
        (data_f("b", "bool", ["true"]), True),
        (data_f("b", "bool", ["false"]), False),
        (data_f("sb", "bool", ["true"]), True),
        (data_f("b", "bool", ["1"]), True),
        # template runs on the string first
        (data_f("enc", "string", ["^hello$"], template="{{ b64dec .Input }}"), True),
        (data_f("k", "string", ["HELLO"], template="{{ .Input | upper }}"), True),
        # objects compare as their JSON text
        (data_f("obj", "string", ['"x":1']), True),
    ],
)
def test_data_filter(f, passed):
    assert check(BODY, data=[f]).passed is passed


@pytest.mark.parametrize(
    "filters, op, passed, reason",
    [
        ([data_f("missing", "string", ["x"])], "", False, "path 'missing' does not exist"),
        ([data_f("missing", "string", ["x"]), data_f("n", "number", ["10"])], "or", True, ""),
        ([data_f("missing", "string", ["x"]), data_f("n", "number", ["1"])], "or", False, "path 'missing'"),
        ([data_f("n", "number", ["1"]), data_f("k", "string", ["hello"])], "or", True, ""),
        ([data_f("n", "number", ["10"]), data_f("k", "string", ["nope"])], "and", False, "data filter: k="),
        ([data_f("n", "number", ["abc"])], "", False, "abc"),
        ([data_f("k", "string", ["("])], "", False, "data filter error"),
        ([data_f("k", "string", ["x"], template="{{ .Input.nope }}")], "", False, "can't evaluate field"),
        ([data_f("missing2", "string", ["x"], template="{{ .Input }}")], "", False, "does not exist"),
    ],
)
def test_data_operators_and_errors(filters, op, passed, reason):
    v = check(BODY, data=filters, dataLogicalOperator=op)
    assert v.passed is passed
    assert reason in v.reason


def test_no_data_passes_and_non_json_data_is_an_error():
    f = filt(data=[data_f("a", "string", ["x"])])
    assert DependencyFilter(f).check(ev(data=None)).passed
    v = DependencyFilter(f).check(ev(data=b"\x00not json"))
    assert not v.passed and "not valid JSON" in v.reason


@pytest.mark.parametrize(
    "exprs, op, passed, reason",
    [
        ([{"expr": 'a == "xyz" && n > 5', "fields": [{"name": "a", "path": "a"}, {"name": "n", "path": "n"}]}],
         "", True, ""),
        ([{"expr": "n >= 20", "fields": [{"name": "n", "path": "n"}]}], "", False, "is false"),
        ([{"expr": 'a =~ "^x"', "fields": [{"name": "a", "path": "a"}]}], "", True, ""),
        ([{"expr": 'a !~ "^x"', "fields": [{"name": "a", "path": "a"}]}], "", False, ""),
        ([{"expr": "(n + 2) * 2 == 24 || !ok", "fields": [{"name": "n", "path": "n"}, {"name": "ok", "path": "ok"}]}],
         "", True, ""),
        ([{"expr": "[my field] == 10", "fields": [{"name": "my field", "path": "n"}]}], "", True, ""),
        ([{"expr": "m == 1", "fields": [{"name": "m", "path": "missing"}]}], "", False, "does not exist"),
        ([{"expr": "m == 1", "fields": [{"name": "m", "path": "missing"}]},
          {"expr": "n == 10", "fields": [{"name": "n", "path": "n"}]}], "or", True, ""),
        ([{"expr": "n == 1", "fields": [{"name": "n", "path": "n"}]},
          {"expr": "n == 2", "fields": [{"name": "n", "path": "n"}]}], "or", False, "no filter matched"),
        ([{"expr": "n ==", "fields": [{"name": "n", "path": "n"}]}], "", False, "invalid expression"),
        ([{"expr": "n == x", "fields": [{"name": "n", "path": "n"}]}], "", False, "No parameter 'x' found"),
        ([{"expr": "n.__class__", "fields": [{"name": "n", "path": "n"}]}], "", False, "expr filter error"),
    ],
)
def test_expr_filter(exprs, op, passed, reason):
    v = check({"a": "xyz", "n": 10, "ok": True}, exprs=exprs, exprLogicalOperator=op)
    assert v.passed is passed, v.reason
    assert reason in v.reason


def at(hms: str, day: int = 1) -> datetime:
    h, m, s = map(int, hms.split(":"))
    return datetime(2024, 1, day, h, m, s, tzinfo=timezone.utc)


# [Start, Stop) on the event's day; Stop < Start wraps past midnight.
@pytest.mark.parametrize(
    "start, stop, times",
    [
        ("09:00:00", "17:00:00", {"08:59:59": False, "09:00:00": True, "12:00:00": True, "16:59:59": True,
                                  "17:00:00": False, "23:00:00": False}),
        ("22:00:00", "02:00:00", {"21:59:59": False, "22:00:00": True, "23:59:59": True, "00:00:00": True,
                                  "01:59:59": True, "02:00:00": False, "12:00:00": False}),
    ],
    ids=["day-window", "wraps-midnight"],
)
def test_time_filter_windows(start, stop, times):
    f = DependencyFilter(filt(time={"start": start, "stop": stop}))
    for hms, expected in times.items():
        assert f.check(ev(data={}, at=at(hms))).passed is expected, hms


def test_time_filter_timezone_and_offsets():
    f = DependencyFilter(filt(time={"start": "09:00:00", "stop": "17:00:00", "timezone": "Europe/Paris"}))
    assert f.check(ev(data={}, at=at("08:30:00"))).passed  # 09:30 in Paris
    assert not f.check(ev(data={}, at=at("16:30:00"))).passed  # 17:30 in Paris
    from datetime import timedelta

    plus2 = datetime(2024, 1, 1, 10, 0, 0, tzinfo=timezone(timedelta(hours=2)))  # 08:00 UTC
    g = DependencyFilter(filt(time={"start": "09:00:00", "stop": "17:00:00"}))
    assert not g.check(ev(data={}, at=plus2)).passed


@pytest.mark.parametrize(
    "ctx, passed",
    [({"type": "webhook"}, True), ({"type": "calendar"}, False), ({"source": "es", "subject": "e"}, True),
     ({"subject": "other"}, False), ({"datacontenttype": "application/json"}, True)],
)
def test_context_filter(ctx, passed):
    assert check({}, context=ctx).passed is passed


@pytest.mark.parametrize(
    "script, passed, reason",
    [
        ('return event.a == "x"', True, ""),
        ('return event.a == "y"', False, "returned False"),
        ("return 1", False, "returned 1"),
        ("return event.nested.missing.deep", False, "script filter error"),
        ("while true do end", False, "instruction limit"),
        ('return os.execute("true")', False, "script filter error"),
        ("this is not lua", False, "script filter error"),
    ],
)
def test_script_filter(script, passed, reason):
    v = check({"a": "x"}, script=script)
    assert v.passed is passed
    assert reason in v.reason


@pytest.mark.parametrize(
    "spec, op, passed",
    [
        # and: every configured kind must pass
        ({"data": [data_f("n", "number", ["10"])], "context": {"type": "webhook"}}, "", True),
        ({"data": [data_f("n", "number", ["10"])], "context": {"type": "calendar"}}, "", False),
        # or: some configured kind passes...
        ({"data": [data_f("n", "number", ["1"])], "context": {"type": "webhook"}}, "or", True),
        ({"data": [data_f("n", "number", ["1"])], "context": {"type": "calendar"}}, "or", False),
        # ...and no kind reported an error (Argo's Filter() drops on any error)
        ({"data": [data_f("missing", "number", ["1"])], "context": {"type": "webhook"}}, "or", False),
        ({"exprs": [{"expr": "m == 1", "fields": [{"name": "m", "path": "missing"}]}],
          "context": {"type": "webhook"}}, "or", False),
        # a script error drops the event whatever the operator
        ({"script": "error('boom')", "context": {"type": "webhook"}}, "or", False),
        ({"script": "return true", "context": {"type": "calendar"}}, "or", True),
    ],
)
def test_filters_logical_operator(spec, op, passed):
    assert DependencyFilter(filt(**spec), op).check(ev(data={"n": 10})).passed is passed


def test_hostile_script_fails_only_its_event():
    f = DependencyFilter(filt(script="local s = string.rep('x', 1e9) return true"))
    assert not f.check(ev(data={"a": 1})).passed
    ok = DependencyFilter(filt(script="return event.a == 1"))
    assert ok.check(ev(data={"a": 1})).passed
