"""Known gaps against Argo's Go libraries (issue 12 section 2), one regression test each.

The golden corpora (tests/unit/test_golden_corpora.py) check thousands of cases; these
name the specific behaviours users reported or the issue lists.
"""

from __future__ import annotations

import json

import pytest

from airflow_argo_events.core.limits import loads_strict
from airflow_argo_events.core.sensor.expr import ExprError, ExprFilterProgram
from airflow_argo_events.core.sensor.filters import DependencyFilter
from airflow_argo_events.core.sensor.gotemplate import GoTemplate, TemplateError
from airflow_argo_events.core.sensor.params import CompiledSource
from airflow_argo_events.core.sensor.regex import RegexError, go_regex
from airflow_argo_events.core.spec.sensor import EventDependencyFilter, TriggerParameterSource
from tests.unit.sensor.helpers import ev

DATA = loads_strict(b'{"n": 21.0, "k": 1e3, "f": 2.50, "small": 1.5e-7, "big": 1e21, "i": 100, "m": 1000000}')


@pytest.mark.parametrize("key, text", [
    ("n", "21"), ("k", "1000"), ("f", "2.5"), ("small", "0.00000015"), ("big", "1000000000000000000000"),
    ("i", "100"),
])
def test_data_key_on_a_number_is_gjson_string(key, text):
    src = CompiledSource.compile(TriggerParameterSource.model_validate({"dependencyName": "d", "dataKey": key}))
    assert src.resolve({"d": ev(data=DATA)}).text == text


def test_string_data_filter_sees_gjson_number_text():
    spec = EventDependencyFilter.model_validate({"data": [{"path": "n", "type": "string", "value": ["^21$"]}]})
    assert DependencyFilter(spec).check(ev(data=DATA)).passed is True


@pytest.mark.parametrize("template, out", [
    ("{{ .Input.n }}", "21"), ("{{ .Input.m }}", "1e+06"), ("{{ .Input.i }}", "100"),
    ("{{ toJson .Input.k }}", "1000"), ("{{ toJson .Input.small }}", "1.5e-7"),
])
def test_template_numbers_print_as_go_float64(template, out):
    assert GoTemplate(template).render({"Input": DATA}) == out


@pytest.mark.parametrize("text, out", [
    ("alpha-beta o'neil", "Alpha-Beta O'Neil"), ("hello_world 1st x.y", "Hello_world 1st X.Y"),
    ("ǆemo", "ǅemo"), ("don't-stop", "Don'T-Stop"),
])
def test_title_is_go_strings_title(text, out):
    assert GoTemplate("{{ title .Input }}").render({"Input": text}) == out


@pytest.mark.parametrize("template, out", [
    ('{{ upper "straße" }}', "STRAßE"), ('{{ lower "İstanbul" }}', "istanbul"),
    ('{{ trunc 2 "日本" }}', "\ufffd\ufffd"), ('{{ toJson "<a&b>" }}', '"\\u003ca\\u0026b\\u003e"'),
    ('{{ toRawJson "<a&b>" }}', '"<a&b>"'), ('{{ b64dec "!!" }}', "illegal base64 data at input byte 0"),
])
def test_sprig_string_functions_follow_go(template, out):
    assert GoTemplate(template).render({"Input": {}}) == out


@pytest.mark.parametrize("template", ["{{ upper .Input.n }}", "{{ .Input.missing | lower }}", "{{ trunc .Input.n \"x\" }}"])
def test_sprig_argument_types_are_checked_as_go_does(template):
    with pytest.raises(TemplateError):
        GoTemplate(template).render({"Input": DATA})


@pytest.mark.parametrize("expr, values, result", [
    ('a =~ "^x" == true', {"a": "xy"}, True),  # one comparator level, left to right
    ("a < b == true", {"a": 1, "b": 2}, True),  # no chaining
    ("2 ** 3 ** 2", {}, 64.0),  # left-associative
    ("-2 ** 2", {}, 4.0),  # prefix binds tightest
    ('"n=" + a', {"a": 21}, "n=21"),  # string concatenation in Go's %v
    ('a + "x"', {"a": 1000000}, "1e+06x"),
    ('a == "1"', {"a": 1}, False),  # reflect.DeepEqual: types differ
    ("flag == 1", {"flag": True}, False),
    ("a / 0", {"a": 1}, float("inf")),
    ("false && nope", {}, False),  # short-circuit: the missing name is never read
    ("true ? 'y' : 'n'", {}, "y"),
    ("none ?? 'd'", {"none": None}, "d"),
    ("a in (1, 2, 3)", {"a": 2}, True),
    ("'2024-01-02' == 1704153600", {}, True),  # govaluate reads date strings as Unix time
])
def test_govaluate_semantics(expr, values, result):
    assert ExprFilterProgram(expr).evaluate(values) == result


@pytest.mark.parametrize("expr", ["a==-1", "!!a", "a +", "(a", "a.b == 1", "nope(1)", ""])
def test_govaluate_parse_errors(expr):
    with pytest.raises(ExprError):
        ExprFilterProgram(expr)


@pytest.mark.parametrize("expr, values", [("1 && true", {}), ("s > 1", {"s": "x"}), ("nope", {}), ("-s", {"s": "x"})])
def test_govaluate_type_errors(expr, values):
    with pytest.raises(ExprError):
        ExprFilterProgram(expr).evaluate(values)


def test_go_regexp_refuses_any_byte_escape():
    with pytest.raises(RegexError):
        go_regex(r"a\C")
    assert go_regex(r"a\\C") is not None


def test_event_source_filter_expression_keeps_dotted_names():
    assert json.dumps(ExprFilterProgram("body.n > 5", dotted_names=True).names) == '["body.n"]'
