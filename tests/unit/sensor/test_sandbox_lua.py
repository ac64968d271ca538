"""Lua sandbox bounds (issue 11, finding 11): limits pcall cannot catch, bounded string
patterns, and no state carried between events or dependencies."""

from __future__ import annotations

import random

import pytest

from airflow_argo_events.core.sensor import lua_patterns
from airflow_argo_events.core.sensor.engine import Engine
from airflow_argo_events.core.sensor.lua import LuaError, LuaSandbox

from .helpers import dep, ev, sensor

pytestmark = pytest.mark.timeout(60)

LONG = "'x' .. string.rep(' ', 100000) .. 'y'"


@pytest.fixture(scope="module")
def box():
    return LuaSandbox()


def run(box, src, event=None):
    return box.run(box.compile(src, "t"), event or {})


@pytest.mark.parametrize("src", [
    "while true do pcall(function() while true do end end) end",
    "while true do xpcall(function() while true do end end, function(e) return e end) end",
    # the handler itself loops: it would run inside the hook, where hooks are off
    "return xpcall(function() error('x') end, function(e) while true do end end)",
    "while true do pcall(error, 'x') pcall(function() local t = {} for i = 1, 1e9 do t[i] = i end end) end",
    "local function f() pcall(f) while true do end end f()",
], ids=["pcall", "xpcall", "xpcall-handler", "pcall-memory", "recursive-pcall"])
def test_limits_cannot_be_caught(box, src):
    with pytest.raises(LuaError, match="limit exceeded"):
        run(box, src)
    assert run(box, "return event.a + 1", {"a": 1}) == 2


@pytest.mark.parametrize("src, expected", [
    (f"return ({LONG}):match('^%s*(.-)%s*$')", "x" + " " * 100000 + "y"),
    (f"return string.match({LONG}, '^%s*(.-)%s*$', 1.0)", "x" + " " * 100000 + "y"),
    (f"local s = {LONG} return #(s:gsub('%s+$', ''))", 100002),
    (f"local s = {LONG} local a, b = s:find('%s*y') return b - a", 100000),
    ("local s = string.rep('a', 5000) local n = 0 for x in s:gmatch('(.-)(.-)(.-)b') do n = n + 1 end return n", 0),
    ("return (string.rep('ab', 20000)):gsub('(a)(b)', '%2%1'):sub(1, 6)", "bababa"),
], ids=["trim-method", "trim-float-init", "gsub", "find", "gmatch-cubic", "gsub-captures"])
def test_costly_patterns_run_in_linear_time_with_lua_results(box, src, expected):
    assert run(box, src) == expected


def test_patterns_re2_cannot_express_are_refused_beyond_the_budget(box):
    with pytest.raises(LuaError, match="pattern too costly for a 50000-byte string"):
        run(box, "return (string.rep('(', 50000)):find('%b()')")
    assert run(box, "return ('f(a(b)c)'):match('%b()')") == "(a(b)c)"


def test_gsub_with_a_looping_function_is_stopped(box):
    with pytest.raises(LuaError, match="limit exceeded"):
        run(box, "return (string.rep('a ', 3000)):gsub('(%a)%s-', function(c) while true do end end)")


def test_no_state_between_events(box):
    fn = box.compile("seen = (seen or 0) + 1; string.upper = function() return 'x' end; "
                     "table.concat = nil; return seen", "leak")
    assert box.run(fn, {}) == 1
    assert box.run(fn, {}) == 1
    assert run(box, "return string.upper('a') .. tostring(table.concat ~= nil) .. tostring(seen)") == "Atruenil"


def test_one_dependency_cannot_change_the_library_of_another():
    s = sensor([
        dep("a", transform={"script": "string.upper = function() return 'pwned' end; upper = 1; "
                                      "event.x = 1; return event"}),
        dep("b", filters={"script": "return string.upper(event.name) == 'OK' and upper == nil"}),
    ], [{"template": {"name": "ta", "conditions": "a", "log": {}}},
        {"template": {"name": "tb", "conditions": "b", "log": {}}}])
    engine = Engine(s)
    assert [f.trigger for f in engine.process(ev(subject="a", data={"name": "ok"}))] == ["ta"]
    assert [f.trigger for f in engine.process(ev(subject="b", data={"name": "ok"}))] == ["tb"]


@pytest.mark.parametrize("src, message", [
    ("local t = {} for i = 1, 1000 do t = {t} end return t", "nested deeper"),
    ("local t = {} t.x = t return t", "nested deeper"),
    ("return {x = 1/0}", r"json: unsupported value: \+Inf"),
    ("return {x = function() end}", "unsupported type: function"),
])
def test_results_that_cannot_be_json_are_errors(box, src, message):
    with pytest.raises(LuaError, match=message):
        run(box, src)


# ---------------------------------------------------------------- RE2 path == Lua's matcher

_ATOMS = ["a", "b", ".", "%a", "%d", "%s", "%S", "%w", "%p", "[ab]", "[^a]", "[%d_]", "[a-c]", "x", "%.", "^", "$",
          " ", "-", "]", "[]]", "%%"]
_QUANTS = ["", "", "*", "+", "-", "?"]


def _pattern(rng):
    parts = ["^"] if rng.random() < 0.3 else []
    for _ in range(rng.randint(1, 5)):
        atom = rng.choice(_ATOMS) + rng.choice(_QUANTS)
        roll = rng.random()
        parts.append(f"({atom})" if roll < 0.15 else "()" if roll < 0.2 else atom)
    if rng.random() < 0.3:
        parts.append("$")
    return "".join(parts)


def test_re2_translation_agrees_with_lua_on_random_patterns():
    from lupa import lua51

    rt = lua51.LuaRuntime(unpack_returned_tuples=True)
    native = rt.eval("""function(op, s, p, init)
      local function pack(...) return {n = select("#", ...), ...} end
      if op == "gsub" then return pack(string.gsub(s, p, "<%0>")) end
      if op == "gmatch" then
        local out = {}
        for a, b in string.gmatch(s, p) do out[#out + 1] = tostring(a) .. "|" .. tostring(b) end
        return pack(table.concat(out, ";"))
      end
      return pack(string[op](s, p, init))
    end""")
    rng = random.Random(11)
    for _ in range(3000):
        p, op = _pattern(rng), rng.choice(["find", "match", "gsub", "gmatch"])
        s = "".join(rng.choice("ab 1_.x-]^$%") for _ in range(rng.randint(0, 12)))
        init = None if op == "gmatch" else rng.choice([None, 1, 2, -3, 0, 20])  # 5.1's gmatch has no init
        r = native(op, s, p, init)
        want = [r[i] for i in range(1, r["n"] + 1)]
        src, pat = s.encode(), p.encode()
        if op in ("find", "match"):
            got = lua_patterns.find(src, pat, init, op == "find") or [None]
        elif op == "gsub":
            got = list(lua_patterns.gsub(src, pat, b"<%0>", None, None, None, 1 << 20))
        else:
            step, items = lua_patterns.gmatch(src, pat, init), []
            while (c := step()) is not None:
                c = [x.decode() if isinstance(x, bytes) else x for x in c] + [None]
                items.append(f"{'nil' if c[0] is None else c[0]}|{'nil' if c[1] is None else c[1]}")
            got = [";".join(items)]
        got = [x.decode() if isinstance(x, bytes) else x for x in got]
        assert got == want, (op, p, s, init)


def test_variable_items_counts_the_backtracking_exponent():
    assert lua_patterns.variable_items(b"^%s*(.-)%s*$") == 3
    assert lua_patterns.variable_items(b"%*%-abc") == 0
    assert lua_patterns.variable_items(b"%b()") == 1


def test_time_limit_applies_when_the_instruction_budget_is_large():
    slow = LuaSandbox(max_instructions=10**15, max_seconds=0.2)
    with pytest.raises(LuaError, match="time limit exceeded"):
        run(slow, "while true do pcall(function() while true do end end) end")
