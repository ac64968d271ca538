"""Go regexps run on RE2 (linear time) and expressions are nesting-bounded (issue 11, finding 14)."""

from __future__ import annotations

import pytest

from airflow_argo_events.core.sensor.expr import ExprError, ExprFilterProgram
from airflow_argo_events.core.sensor.filters import DependencyFilter
from airflow_argo_events.core.sensor.regex import RegexError, go_regex, matches
from airflow_argo_events.core.spec.sensor import EventDependencyFilter
from tests.unit.sensor.helpers import ev

pytestmark = pytest.mark.timeout(30)

EVIL = "a" * 50_000 + "b"


def test_data_filter_catastrophic_pattern_is_linear():
    spec = EventDependencyFilter.model_validate({"data": [{"path": "s", "type": "string", "value": ["(a+)+$"]}]})
    assert DependencyFilter(spec).check(ev(data={"s": EVIL})).passed is False
    assert DependencyFilter(spec).check(ev(data={"s": "aaa"})).passed is True


def test_expr_regex_operators_are_linear():
    prog = ExprFilterProgram('s =~ "(a+)+$" || s !~ "^(a|aa)+$"')
    assert prog.evaluate({"s": EVIL}) is True
    assert ExprFilterProgram('s =~ "(a+)+$"').evaluate({"s": EVIL}) is False


@pytest.mark.parametrize("pattern", [r"(a)\1", r"(?=x)", r"\Z", "a{1001}"])
def test_patterns_go_rejects_are_errors(pattern):
    with pytest.raises(RegexError):
        go_regex(pattern)


@pytest.mark.parametrize("pattern, text, expected", [
    ("abc$", "abc\n", False),  # Go's $ is end of text; Python's re would match before the newline
    (r"^\d+$", "١٢٣", False),  # \d is ASCII in Go
    ("(?i)ORDER", "order-created", True),
    ("^order", "order-created", True),
    ("\u00e9t\u00e9", "\u00e9t\u00e9 \ud800", True),  # a lone surrogate from JSON does not break matching
])
def test_go_semantics(pattern, text, expected):
    assert matches(go_regex(pattern), text) is expected


@pytest.mark.parametrize("expr", ["!(" * 1300 + "a" + ")" * 1300, "-(" * 1000 + "a" + ")" * 1000,
                                  " + ".join(["a"] * 200)])
def test_deep_expressions_are_refused_when_compiled(expr):
    with pytest.raises(ExprError, match="nested deeper than 64"):
        ExprFilterProgram(expr)


def test_ordinary_expressions_unchanged():
    assert ExprFilterProgram("!(!(!a))").evaluate({"a": False}) is True
    assert ExprFilterProgram("-(-(-a)) == -3").evaluate({"a": 3}) is True
    assert ExprFilterProgram(" + ".join(["a"] * 30) + " == 30").evaluate({"a": 1}) is True
