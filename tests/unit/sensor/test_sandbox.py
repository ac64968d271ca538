"""Hostile expressions, Lua scripts and jq programs fail for their own event only."""

from __future__ import annotations

import pytest

from airflow_argo_events.core.sensor import transform as transform_mod
from airflow_argo_events.core.sensor.expr import ExprError, ExprFilterProgram
from airflow_argo_events.core.sensor.lua import LuaError, LuaSandbox
from airflow_argo_events.core.sensor.transform import Transform, TransformError
from airflow_argo_events.core.spec.sensor import EventDependencyTransformer

from .helpers import ev

LUA_ESCAPES = [
    'return os.execute("touch /tmp/pwned")',
    'return io.open("/etc/passwd"):read("*a")',
    'return require("os")',
    'return dofile("/etc/passwd")',
    'return loadstring or load',
    'return load("return 1")()',
    "return debug.getinfo(1)",
    'return python.eval("1")',
    'return package.loadlib("libc.so.6", "system")',
    "return collectgarbage('count')",
    "while true do end",
    "local t = {} for i = 1, 1e9 do t[i] = i end",
    "local s = string.rep('x', 2^31)",
    "return string.dump(function() end)",
]


@pytest.mark.parametrize("script", LUA_ESCAPES)
def test_lua_escape_attempts_fail_cleanly(script):
    box = LuaSandbox(max_instructions=200_000, max_memory=16 * 1024 * 1024)
    with pytest.raises(LuaError):
        out = box.run(box.compile(script, "evil"), {"a": 1})
        if out in (None, False):  # a nil result is not an escape, but nothing useful may come back
            raise LuaError("nil")
    # the runtime still works afterwards
    assert box.run(box.compile("return event.a + 1", "ok"), {"a": 1}) == 2


def test_lua_globals_do_not_leak_between_events():
    box = LuaSandbox()
    fn = box.compile("seen = (seen or 0) + 1 return seen", "leak")
    assert box.run(fn, {}) == 1
    assert box.run(fn, {}) == 1


@pytest.mark.parametrize(
    "expr",
    ["__import__('os').system('true')", "a.__class__", "(1).__class__.__bases__", "open('/etc/passwd')",
     "'x' * 10**9", "[x for x in a]", "lambda: 1", "a; b", "a = 1", "exec('1')"],
)
def test_expression_escape_attempts_fail_cleanly(expr):
    with pytest.raises(ExprError):
        ExprFilterProgram(expr).evaluate({"a": 10, "b": 1})


def test_huge_powers_are_go_infinity_not_work():
    # Go's math.Pow: square-and-multiply over the exponent's bits, so this is ~40 steps, not 10^12.
    assert ExprFilterProgram("a ** 999999999999").evaluate({"a": 10}) == float("inf")


def test_expression_length_is_bounded():
    with pytest.raises(ExprError, match="longer than"):
        ExprFilterProgram("a == 1 || " * 1000 + "a == 1")


def test_jq_time_bound(monkeypatch):
    monkeypatch.setattr(transform_mod, "JQ_TIMEOUT_SECONDS", 0.3)
    slow = Transform(EventDependencyTransformer(jq="[limit(100000000; repeat(1))] | {n: length}"))
    with pytest.raises(TransformError, match="exceeded"):
        slow.apply(ev(data={}))
    # the worker was killed and a new one starts: give it the normal bound (a loaded machine
    # can take longer than 0.3 s just to start a process)
    monkeypatch.setattr(transform_mod, "JQ_TIMEOUT_SECONDS", 30)
    ok = Transform(EventDependencyTransformer(jq="{b: .a}"))
    assert ok.apply(ev(data={"a": 1})).data == {"b": 1}


@pytest.mark.parametrize("prog, message", [(".a", "must be a JSON object"), ("empty", "no output"),
                                           ("error(\"boom\")", "boom")])
def test_jq_output_must_be_an_object(prog, message):
    with pytest.raises(TransformError, match=message):
        Transform(EventDependencyTransformer(jq=prog)).apply(ev(data={"a": 1}))


def test_invalid_jq_program_is_an_error_per_event():
    t = Transform(EventDependencyTransformer(jq="{{{"))
    with pytest.raises(TransformError, match="invalid transform"):
        t.apply(ev(data={}))


@pytest.mark.parametrize("prog", ['{e: env}', '{e: $ENV}', '{e: (env | tostring)}'])
def test_jq_sees_no_environment(monkeypatch, prog):
    # The worker inherits nothing: a secret in our environment must not reach a transform.
    transform_mod._JQ.kill()
    monkeypatch.setenv("PLANTED_SECRET", "hunter2-planted")
    out = Transform(EventDependencyTransformer(jq=prog)).apply(ev(data={})).data
    assert "hunter2-planted" not in str(out)
    assert out["e"] in ({}, "{}")


@pytest.mark.parametrize("prog", ['import "data" as $d; {d: $d}', 'include "lib"; {a: 1}',
                                  '# comment\nimport "x" as x; .'])
def test_jq_modules_are_refused(tmp_path, monkeypatch, prog):
    (tmp_path / "data.json").write_text('{"secret": 1}')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TransformError, match="import/include"):
        Transform(EventDependencyTransformer(jq=prog)).apply(ev(data={}))
