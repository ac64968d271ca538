from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_argo_events.core.sensor.conditions import Condition, ConditionError


@pytest.mark.parametrize(
    "text, env, expected",
    [
        ("dep01", {"dep01": True}, True),
        ("dep01", {}, False),
        ("dep01 && dep02", {"dep01": True}, False),
        ("dep01 && dep02", {"dep01": True, "dep02": True}, True),
        ("dep01 || dep02", {"dep02": True}, True),
        ("(dep01 || dep02) && dep03", {"dep01": True, "dep03": True}, True),
        ("(dep01 || dep02) && dep03", {"dep01": True, "dep02": True}, False),
        ("dep01 || dep02 && dep03", {"dep01": True}, True),  # && binds tighter
        ("!dep01 && dep02", {"dep02": True}, True),
        ("dep-a && dep_b", {"dep_a": True, "dep_b": True}, True),  # - and _ are the same name
        ("dep01 and (dep02 or not dep03)", {"dep01": True}, True),
    ],
)
def test_evaluate(text, env, expected):
    assert Condition.parse(text).evaluate(env) is expected


@pytest.mark.parametrize(
    "text, names, requires_and",
    [
        ("dep02", ("dep02",), False),
        ("dep01 || dep02", ("dep01", "dep02"), False),
        ("dep02 && dep03", ("dep02", "dep03"), True),
        ("(dep01 || dep02) && dep03", ("dep01", "dep02", "dep03"), True),
        ("dep03 && (dep01 || dep03)", ("dep03", "dep01"), True),
        ("my-dep || other", ("my_dep", "other"), False),
    ],
)
def test_names_and_stateful_path(text, names, requires_and):
    c = Condition.parse(text)
    assert c.names == names
    assert c.requires_and is requires_and


@pytest.mark.parametrize("text", ["", "dep01 &&", "(dep01", "dep01)", "dep01 & dep02", "dep01 | dep02",
                                  "dep01 dep02", "dep01 == 1", "&& dep01"])
def test_invalid(text):
    with pytest.raises(ConditionError):
        Condition.parse(text)


NAMES = ["a", "b", "c", "d"]


@st.composite
def expressions(draw, depth=0):
    if depth > 3 or draw(st.booleans()):
        return draw(st.sampled_from(NAMES))
    kind = draw(st.sampled_from(["and", "or", "not", "paren"]))
    if kind == "not":
        return "!" + draw(expressions(depth + 1))
    if kind == "paren":
        return "(" + draw(expressions(depth + 1)) + ")"
    op = "&&" if kind == "and" else "||"
    return f"{draw(expressions(depth + 1))} {op} {draw(expressions(depth + 1))}"


@settings(max_examples=300, deadline=None)
@given(expressions())
def test_matches_python_boolean_reference(text):
    cond = Condition.parse(text)
    python = text.replace("&&", " and ").replace("||", " or ").replace("!", " not ")
    for values in itertools.product([False, True], repeat=len(NAMES)):
        env = dict(zip(NAMES, values, strict=True))
        assert cond.evaluate(env) is eval(python, {}, env), (text, env)  # reference only, test data
