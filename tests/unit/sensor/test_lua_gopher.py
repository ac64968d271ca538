"""Lua as Argo runs it: gopher-lua (Lua 5.1) behind Argo's mapToTable / toGoValue (issue 12).

Each case is a difference the Go oracle (tests/golden/lua.jsonl) found between Lua 5.4 and
Argo; these keep them closed without needing the golden files."""

from __future__ import annotations

import pytest

from airflow_argo_events.core.sensor.lua import LuaError, LuaSandbox, go_number

EVENT = {"a": 21, "s": "é", "none": None, "big": 12345678901234567890, "list": [1, None, [2], "x", {"k": None}],
         "nums": [2.5, 9007199254740993]}


@pytest.fixture(scope="module")
def box():
    return LuaSandbox()


def run(box, src, event=None):
    return box.run(box.compile(src, "t"), EVENT if event is None else event)


def passes(box, src, event=None):
    return box.passes(box.compile(src, "f"), EVENT if event is None else event)


@pytest.mark.parametrize("src, expected", [
    ("return tostring(10/2)", "5"),
    ("return tostring(10/4)", "2.5"),
    ("return tostring(0.1 + 0.2)", "0.30000000000000004"),
    ("return tostring(2^53)", "9007199254740992"),
    ("return tostring(2^63)", "9.223372036854776e+18"),
    ("return tostring(1e21)", "1e+21"),
    ("return tostring(1e20)", "1e+20"),
    ("return tostring(-0.0)", "0"),
    ("return tostring(1/0) .. tostring(-1/0)", "+Inf-Inf"),
    ("return tostring(event.big)", "1.2345678901234567e+19"),
    ("return string.upper(event.s) .. string.lower('ÄB')", "Éäb"),
    ("return ('straße'):upper()", "STRAßE"),  # Go maps one rune to one rune
    ("return type(event.a) .. math.type", None),  # no math.type in 5.1: concat of nil fails
], ids=lambda v: str(v)[:30])
def test_numbers_print_as_go_does(box, src, expected):
    if expected is None:
        with pytest.raises(LuaError):
            run(box, src)
        return
    assert run(box, src) == expected


@pytest.mark.parametrize("src", ["return 7 // 2", "return 1 & 2", "goto x ::x::", "return utf8.char(72)"])
def test_lua_54_syntax_and_libraries_are_not_there(box, src):
    with pytest.raises(LuaError):
        run(box, src)


def test_the_event_table_is_built_like_argos_map_to_table(box):
    assert passes(box, "return event.none == nil")
    assert run(box, "local n = 0 for _ in pairs(event) do n = n + 1 end return n") == 5  # none dropped
    # arrays keep objects, numbers, strings and booleans; nulls and nested arrays are dropped
    assert run(box, "return #event.list") == 3
    assert run(box, "return event.list[2]") == "x"
    # every number is a float64: 9007199254740993 reads as 9007199254740992
    assert passes(box, "return event.nums[2] == 9007199254740992")


@pytest.mark.parametrize("src, result", [
    ("return true, false", False),
    ("return false, true", True),
    ("return", False),
    ("return 1", False),
    ("return 'true'", False),
    ("local x = 1", False),
])
def test_a_filter_passes_when_the_last_value_returned_is_true(box, src, result):
    assert passes(box, src) is result


@pytest.mark.parametrize("src, expected", [
    ("return {1, 2, x = 3}", [1, 2]),                       # an array part wins, other keys are dropped
    ("return {1, nil, 3}", [1, None, 3]),
    ("return {[3] = 'c'}", [None, None, "c"]),
    ("return {[1.5] = 'x', [0] = 'z', [-1] = 'y'}", {"-1": "y", "0": "z", "1.5": "x"}),
    ("return {[true] = 1}", {"true": 1}),
    ("return setmetatable({}, {__is_array = true})", []),   # Argo's way to force an array
    ("return {}", {}),
    ("return {b = 1, a = {c = 2}}", {"a": {"c": 2}, "b": 1}),
    ("return {n = event.big}", {"n": 12345678901234567000}),  # Go's json.Marshal digits
    ("return {s = string.char(255)}", {"s": "\ufffd"}),     # json.Marshal: invalid UTF-8 -> U+FFFD
    ("return event, 1", 1),                                  # the last value, not a table
], ids=lambda v: str(v)[:30])
def test_a_returned_table_becomes_json_as_to_go_value_makes_it(box, src, expected):
    assert run(box, src) == expected


def test_gsub_and_gmatch_follow_lua_51_on_empty_matches(box):
    # 5.1 (and gopher-lua) allow an empty match right after a match; 5.4 does not
    assert run(box, "return (string.gsub('abc', '%w*', '-'))") == "--"
    assert run(box, "local t = {} for w in string.gmatch('ab', 'x*') do t[#t + 1] = '<' .. w .. '>' end "
                    "return table.concat(t)") == "<><><>"
    # init beyond the subject is clamped to its end (5.4 gives nil)
    assert run(box, "return (string.find('abc', '', 10))") == 4


def test_shared_metatables_cannot_be_reached(box):
    assert run(box, "return getmetatable('')") is False
    with pytest.raises(LuaError, match="protected metatable"):
        run(box, "setmetatable(string, {}) return 1")
    assert run(box, "return ('a'):upper()") == "A"


def test_go_number():
    assert [go_number(x) for x in (5.0, 2.5, 1e21, 2.0**63, -(2.0**63), 1e-7)] == [
        "5", "2.5", "1e+21", "9.223372036854776e+18", "-9223372036854775808", "1e-07"]
