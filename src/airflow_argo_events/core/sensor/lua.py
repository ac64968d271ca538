"""Lua for script filters and transforms, sandboxed (Argo runs gopher-lua).

Scripts see a global ``event`` (the event data as a table) and the safe standard
library: ``string``, ``table``, ``math``, ``utf8``, ``pairs``, ``ipairs``, ``tostring``,
``tonumber``, ``type``, ``select``, ``next``, ``pcall``, ``error``, ``assert``,
``unpack``. There is no ``os``, ``io``, ``require``, ``load``, ``dofile``, ``debug``
or ``python``.

Bounds, each an error for that event only:

1. Instructions and time: a count hook runs every ``HOOK_STEP`` instructions and fails
   the run past ``max_instructions`` or ``max_seconds``. Once tripped it stays tripped
   for the rest of the run: the hook raises again, and ``pcall``/``xpcall`` re-raise it,
   so ``while true do pcall(function() while true do end end) end`` ends.
2. String patterns: ``find/match/gmatch/gsub`` run in C where no hook reaches. When the
   backtracking worst case (``len(pattern) * len(subject) ** k``, k the variable-length
   items, see ``lua_patterns``) exceeds ``LUA_PATTERN_BUDGET`` they run on RE2 instead
   (linear time, same results); patterns RE2 cannot express are refused at that size.
3. Memory: lupa's ``max_memory`` for the whole runtime.

Nothing carries over between runs (Argo gives every event a new ``lua.NewState()``): each
run gets a new global table, and ``string``/``table``/``math``/``utf8`` are per-run
tables that read through to the library, so a script redefining ``string.upper`` changes
it for itself only. Method calls on strings (``s:upper()``) use the library, never a
script's replacement.
"""

from __future__ import annotations

import math
from typing import Any

from airflow_argo_events.core.limits import MAX_JSON_DEPTH
from airflow_argo_events.core.sensor import lua_patterns

try:
    from lupa import lua54 as _lupa
except ImportError:  # pragma: no cover - the 'lua' extra is missing
    _lupa = None

DEFAULT_MAX_INSTRUCTIONS = 1_000_000
"""Per run. A filter or transform is a few hundred instructions; a million is ~20 ms."""

DEFAULT_MAX_SECONDS = 1.0
"""Per run, CPU time from the first limit check on. Catches what the instruction count does not see
(time spent in library calls in C)."""

DEFAULT_MAX_MEMORY = 64 * 1024 * 1024
"""Per runtime (shared by a sensor's scripts, freed between runs by the collector)."""

HOOK_STEP = 1000
"""Instructions between checks of the limits: small enough to stop promptly, large enough to cost nothing."""

LUA_PATTERN_BUDGET = 10_000_000
"""Worst-case steps allowed to Lua's C pattern matcher (about 0.1 s); beyond, RE2 runs the pattern."""


class LuaError(ValueError):
    """A Lua script failed to compile or run (including hitting a sandbox limit)."""


_SETUP = """
local sethook, setupvalue, clock = debug.sethook, debug.setupvalue, os.clock
local load, setmetatable, rawpcall, rawxpcall, error, type, next, rawset = load, setmetatable, pcall, xpcall,
  error, type, next, rawset
local select, tostring, tonumber, pairs, ipairs, tointeger = select, tostring, tonumber, pairs, ipairs, math.tointeger
local tunpack, s_find, s_match, s_gmatch, s_gsub, s_byte, u_len = table.unpack, string.find, string.match,
  string.gmatch, string.gsub, string.byte, utf8.len
local max_instructions, step, max_seconds, budget, py = ...

-- 1. limits: once tripped, every hook call and every pcall/xpcall return raises again
-- The deadline starts at the first hook call (HOOK_STEP instructions in): most runs end
-- before it and never pay for reading the clock.
local steps, deadline, tripped = 0, nil, nil
local function hook()
  steps = steps + step
  if not tripped then
    local now = clock()
    deadline = deadline or now + max_seconds
    if steps >= max_instructions then tripped = "instruction limit exceeded"
    elseif now > deadline then tripped = "time limit exceeded" end
  end
  if tripped then error(tripped, 2) end
end
local function after(ok, ...)
  if tripped then error(tripped, 0) end
  return ok, ...
end
local function pcall(f, ...) return after(rawpcall(f, ...)) end
-- A message handler runs where the error was raised; for our own error that is inside
-- the hook, where hooks are off, so a looping handler would never be stopped. It is
-- therefore skipped once the limit has tripped.
local function xpcall(f, h, ...)
  if type(h) ~= "function" then return rawxpcall(f, h, ...) end
  return after(rawxpcall(f, function(e) if tripped then return e end return h(e) end, ...))
end

-- 2. string patterns: Lua's matcher while its worst case is small, RE2 (in Python) beyond
local kcache, kcount = {}, 0
local function cheap(s, p, anchorable)
  local k = kcache[p]
  if k == nil then
    k = py.variable_items(p)
    if kcount >= 512 then kcache, kcount = {}, 0 end
    kcache[p], kcount = k, kcount + 1
  end
  local e = k + ((anchorable and s_byte(p, 1) == 94) and 0 or 1)
  return (#p + 1) * (#s + 1) ^ e <= budget
end
local function strings(...)
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if type(v) == "string" and not u_len(v) then return false end
  end
  return true
end
local function results(r, name)
  if r == nil then return nil end
  if type(r) == "string" then error(r, 3) end
  return tunpack(r, 1, r.n)
end
local function refuse(name, s)
  error(name .. ": pattern too costly for a " .. #s .. "-byte string", 3)
end
-- Lua coerces numbers to strings and numeric strings/integral floats to integers; do the
-- same first, so that no argument form reaches the C matcher unchecked. Arguments that do
-- not convert go to the C function, which raises its usual error before matching anything.
local function int_arg(v)
  if v == nil then return nil, true end
  local n = tonumber(v)
  n = n and tointeger(n)
  return n, n ~= nil
end
local function str_arg(v)
  if type(v) == "number" then return tostring(v) end
  return v
end
local function find(s, p, init, plain)
  s, p = str_arg(s), str_arg(p)
  local i, ok = int_arg(init)
  if type(s) ~= "string" or type(p) ~= "string" or not ok then
    return s_find(s, p, init, plain)
  end
  init = i
  if plain then
    if (#p + 1) * (#s + 1) <= budget then return s_find(s, p, init, true) end
    if not strings(s, p) then refuse("find", s) end
    return results(py.find(s, p, init, "plain"))
  end
  if cheap(s, p, true) then return s_find(s, p, init) end
  if not strings(s, p) then refuse("find", s) end
  return results(py.find(s, p, init, "find"))
end
local function match(s, p, init)
  s, p = str_arg(s), str_arg(p)
  local i, ok = int_arg(init)
  if type(s) ~= "string" or type(p) ~= "string" or not ok then
    return s_match(s, p, init)
  end
  init = i
  if cheap(s, p, true) then return s_match(s, p, init) end
  if not strings(s, p) then refuse("match", s) end
  return results(py.find(s, p, init, "match"))
end
local function gmatch(s, p, init)
  s, p = str_arg(s), str_arg(p)
  local i, ok = int_arg(init)
  if type(s) ~= "string" or type(p) ~= "string" or not ok then
    return s_gmatch(s, p, init)
  end
  init = i
  if cheap(s, p, false) then return s_gmatch(s, p, init) end
  if not strings(s, p) then refuse("gmatch", s) end
  local it = py.gmatch(s, p, init)
  if type(it) == "string" then error(it, 2) end
  return function() return results(it()) end
end
local function gsub(s, p, repl, n)
  s, p, repl = str_arg(s), str_arg(p), str_arg(repl)
  local tr = type(repl)
  local i, ok = int_arg(n)
  if type(s) ~= "string" or type(p) ~= "string" or not ok
     or (tr ~= "string" and tr ~= "table" and tr ~= "function") then
    return s_gsub(s, p, repl, n)
  end
  n = i
  if cheap(s, p, true) then return s_gsub(s, p, repl, n) end
  if not strings(s, p, repl) then refuse("gsub", s) end
  return results(py.gsub(s, p, repl, n))
end

-- the library scripts see: copies, so nothing of ours can be changed
local libs = {}
for _, name in ipairs({"string", "table", "math", "utf8"}) do
  local copy = {}
  for k, v in pairs(_G[name]) do copy[k] = v end
  libs[name] = copy
end
libs.string.dump, libs.math.randomseed = nil, nil
libs.string.find, libs.string.match, libs.string.gmatch, libs.string.gsub = find, match, gmatch, gsub
-- s:method() goes through the string metatable: point it at the guarded copy
getmetatable("").__index = libs.string
local base = {
  assert=assert, error=error, ipairs=ipairs, next=next, pairs=pairs, pcall=pcall, select=select,
  tonumber=tonumber, tostring=tostring, type=type, unpack=table.unpack, xpcall=xpcall,
  rawequal=rawequal, rawget=rawget, rawlen=rawlen, rawset=rawset,
}
-- 3. per run: a fresh global table and fresh library tables reading through to the copies
local lib_mt = {}
for name, lib in pairs(libs) do
  lib_mt[name] = {
    __index = lib,
    __pairs = function(t)
      local all = {}
      for k, v in next, lib do all[k] = v end
      for k, v in next, t do all[k] = v end
      return next, all, nil
    end,
  }
end
-- Library tables are made on first use in a run (most filters never touch them).
local base_mt = {__index = function(env, k)
  local mt = lib_mt[k]
  if mt == nil then return base[k] end
  local lib = setmetatable({}, mt)
  rawset(env, k, lib)
  return lib
end}
local function compile(source, name)
  local fn, err = load(source, "=" .. name, "t", {})
  return fn, err
end
local function run(fn, event)
  local env = setmetatable({event = event}, base_mt)
  setupvalue(fn, 1, env)
  steps, tripped, deadline = 0, nil, nil
  sethook(hook, "", step)
  local ok, result = rawpcall(fn)
  sethook()
  tripped = nil
  if not ok then error(result, 0) end
  return result
end
-- nothing but these two functions escapes; strip the globals scripts could reach
for _, k in ipairs({"debug", "io", "os", "package", "require", "dofile", "loadfile", "load", "python",
                    "collectgarbage", "print", "warn"}) do _G[k] = nil end
return compile, run
"""


class LuaSandbox:
    """One Lua runtime; compile scripts once, run them many times, each run in a fresh environment.

    >>> box = LuaSandbox()                                     # doctest: +SKIP
    >>> box.run(box.compile("return event.n + 1", "t"), {"n": 1})   # doctest: +SKIP
    2
    """

    def __init__(self, max_instructions: int = DEFAULT_MAX_INSTRUCTIONS,
                 max_memory: int = DEFAULT_MAX_MEMORY, max_seconds: float = DEFAULT_MAX_SECONDS) -> None:
        if _lupa is None:
            raise LuaError("Lua scripts need the 'lua' extra: pip install 'airflow-argo-events[lua]'")
        self._rt = _lupa.LuaRuntime(
            register_eval=False, register_builtins=False, unpack_returned_tuples=False, max_memory=max_memory,
        )
        self._max_memory = max_memory
        self._tostring = self._rt.eval("tostring")
        py = self._rt.table_from({
            "variable_items": lambda p: lua_patterns.variable_items(p.encode()),
            "find": self._find, "gmatch": self._gmatch, "gsub": self._gsub,
        })
        self._compile, self._run = self._rt.execute(
            _SETUP, max_instructions, HOOK_STEP, max_seconds, LUA_PATTERN_BUDGET, py)

    def compile(self, source: str, name: str = "script") -> Any:
        fn, err = self._compile(source, name)
        if fn is None:
            raise LuaError(str(err or f"{name}: does not compile"))
        return fn

    def run(self, fn: Any, event: Any) -> Any:
        """Run a compiled script with ``event``; returns its result as Python values."""
        try:
            result = self._run(fn, self._to_lua(event))
            return from_lua(result)
        except _lupa.LuaMemoryError as err:
            raise LuaError(f"memory limit exceeded: {err}") from None
        except _lupa.LuaError as err:
            raise LuaError(str(err)) from None
        except UnicodeDecodeError:
            raise LuaError("script returned a string that is not UTF-8") from None

    def _to_lua(self, value: Any) -> Any:
        if isinstance(value, (dict, list)):
            return self._rt.table_from(value, recursive=True)
        return value

    # ------------------------------------------------------------ RE2-backed string functions

    def _pack(self, values: list[Any] | None) -> Any:
        if values is None:
            return None
        table = self._rt.table_from(values)
        table["n"] = len(values)
        return table

    def _find(self, s: str, p: str, init: int | None, mode: str) -> Any:
        src, pat = s.encode(), p.encode()
        try:
            if mode == "plain":
                start = lua_patterns._start(init, len(src))
                at = src.find(pat, start) if start <= len(src) else -1
                return self._pack(None if at < 0 else [at + 1, at + len(pat)])
            return self._pack(lua_patterns.find(src, pat, init, want_span=mode == "find"))
        except lua_patterns.Untranslatable:
            return f"{mode}: pattern too costly for a {len(src)}-byte string"

    def _gmatch(self, s: str, p: str, init: int | None) -> Any:
        try:
            step = lua_patterns.gmatch(s.encode(), p.encode(), init)
        except lua_patterns.Untranslatable:
            return f"gmatch: pattern too costly for a {len(s.encode())}-byte string"
        return lambda: self._pack(step())

    def _gsub(self, s: str, p: str, repl: Any, n: int | None) -> Any:
        src = s.encode()
        if isinstance(repl, str):
            repl = repl.encode()
        try:
            out, count = lua_patterns.gsub(src, p.encode(), repl, n, self._call, self._to_bytes,
                                           self._max_memory)
        except lua_patterns.Untranslatable:
            return f"gsub: pattern too costly for a {len(src)}-byte string"
        except (ValueError, MemoryError) as err:
            return f"gsub: {err}"
        except _lupa.LuaError as err:  # the replacement function failed (or a limit tripped in it)
            return str(err)
        return self._pack([out, count])

    def _call(self, repl: Any, captures: list[Any]) -> Any:
        if _lupa.lua_type(repl) == "table":
            return repl[captures[0]]
        out = repl(*captures)
        return out[0] if isinstance(out, tuple) else out

    def _to_bytes(self, value: Any) -> bytes | None:
        if value is None or value is False:
            return None
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            return value.encode()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(self._tostring(value)).encode()
        kind = "boolean" if value is True else (_lupa.lua_type(value) or type(value).__name__)
        raise ValueError(f"invalid replacement value (a {kind})")


def from_lua(value: Any, depth: int = 0) -> Any:
    """Lua values to JSON-like Python: integral floats become ints (Go marshals float64 11 as 11).

    Tables nested deeper than ``MAX_JSON_DEPTH`` (or containing themselves) are refused:
    the result must be something the bus and the state store can carry."""
    if depth > MAX_JSON_DEPTH:
        raise LuaError(f"script returned a table nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else value
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if _lupa is not None and _lupa.lua_type(value) == "table":
        items = list(value.items())
        keys = [k for k, _ in items]
        if keys and all(isinstance(k, int) for k in keys) and sorted(keys) == list(range(1, len(keys) + 1)):
            return [from_lua(v, depth + 1) for _, v in sorted(items, key=lambda kv: kv[0])]
        # Go marshals maps with sorted keys; so do we, for the same bytes as Argo.
        return {str(from_lua(k, depth + 1)): from_lua(v, depth + 1)
                for k, v in sorted(items, key=lambda kv: str(kv[0]))}
    return str(value)
