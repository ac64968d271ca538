"""Lua for script filters and transforms, sandboxed. Argo runs gopher-lua, a Lua 5.1; so do we.

Lua 5.1 (lupa's ``lua51``) gives gopher-lua's semantics: every number is a double, no
``//``, no integer subtype, no ``goto``/``utf8``. Around it, what Argo's Go code does:
the event table is built like Argo's ``mapToTable`` (``null`` members dropped, arrays
keep objects, numbers, strings and booleans only), the result is the *last* value the
script returns, ``tostring`` prints numbers as Go does, and a returned table becomes
JSON as ``toGoValue`` + ``json.Marshal`` make it (see ``from_lua``).

Scripts see a global ``event`` and the safe standard library: ``string``, ``table``,
``math``, ``pairs``, ``ipairs``, ``tostring``, ``tonumber``, ``type``, ``select``,
``next``, ``pcall``, ``xpcall``, ``error``, ``assert``, ``unpack``, ``setmetatable``,
``getmetatable``, ``rawget``/``rawset``/``rawequal``, ``_G``. There is no ``os``, ``io``,
``require``, ``load``/``loadstring``, ``dofile``, ``debug``, ``getfenv``/``setfenv``,
``coroutine`` or ``python``.

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
run gets a new global table, and ``string``/``table``/``math`` are per-run tables that
read through to the library, so a script redefining ``string.upper`` changes it for
itself only. Method calls on strings (``s:upper()``) use the library, never a script's
replacement. Every shared metatable is protected (``__metatable``), so ``getmetatable``
cannot reach it.
"""

from __future__ import annotations

import math
from typing import Any

from airflow_argo_events.core.limits import MAX_JSON_DEPTH
from airflow_argo_events.core.sensor import lua_patterns
from airflow_argo_events.core.sensor.gotemplate import go_lower, go_upper
from airflow_argo_events.core.sensor.paths import format_float_v, go_json_number

try:
    from lupa import lua51 as _lupa
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
local sethook, clock, rawgetmetatable = debug.sethook, os.clock, debug.getmetatable
local loadstring, setfenv, setmetatable, getmetatable, rawpcall, rawxpcall, error, type, next, rawset, rawget =
  loadstring, setfenv, setmetatable, getmetatable, pcall, xpcall, error, type, next, rawset, rawget
local select, tostring, tonumber, pairs, ipairs, floor, ceil = select, tostring, tonumber, pairs, ipairs,
  math.floor, math.ceil
local unpack, s_find, s_match, s_gmatch, s_gsub, s_byte, s_upper, s_lower = unpack, string.find, string.match,
  string.gmatch, string.gsub, string.byte, string.upper, string.lower
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
local function xpcall(f, h)
  if type(h) ~= "function" then return rawxpcall(f, h) end
  return after(rawxpcall(f, function(e) if tripped then return e end return h(e) end))
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
local function results(r)
  if r == nil then return nil end
  if type(r) == "string" then error(r, 3) end
  return unpack(r, 1, r.n)
end
-- Lua coerces numbers to strings and numeric strings to integers (truncating, as the C API
-- does); do the same first, so that no argument form reaches the C matcher unchecked.
-- Arguments that do not convert go to the C function, which raises its usual error.
local function int_arg(v)
  if v == nil then return nil, true end
  local n = tonumber(v)
  if n == nil or n ~= n then return nil, false end
  return (n >= 0 and floor(n) or ceil(n)), true
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
    return results(py.find(s, p, init, "plain"))
  end
  if cheap(s, p, true) then return s_find(s, p, init) end
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
  return results(py.find(s, p, init, "match"))
end
local function gmatch(s, p)
  s, p = str_arg(s), str_arg(p)
  if type(s) ~= "string" or type(p) ~= "string" then
    return s_gmatch(s, p)
  end
  if cheap(s, p, false) then return s_gmatch(s, p) end
  local it = py.gmatch(s, p, nil)
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
  return results(py.gsub(s, p, repl, n))
end

-- gopher-lua's upper/lower are Go's strings.ToUpper/ToLower (Unicode); C's are byte-wise:
-- text beyond ASCII goes to Python
local function upper(s)
  s = str_arg(s)
  if type(s) == "string" and s_find(s, "[\\128-\\255]") then return py.upper(s) end
  return s_upper(s)
end
local function lower(s)
  s = str_arg(s)
  if type(s) == "string" and s_find(s, "[\\128-\\255]") then return py.lower(s) end
  return s_lower(s)
end

-- gopher-lua prints numbers with Go's fmt: integers in full (2^53 is 9007199254740992),
-- others in the shortest form that reads back (0.1 + 0.2 is 0.30000000000000004).
local gonum = py.gonum
local function gotostring(v)
  if type(v) == "number" then return gonum(v) end
  return tostring(v)
end

-- the library scripts see: copies, so nothing of ours can be changed
local libs = {}
for _, name in ipairs({"string", "table", "math"}) do
  local copy = {}
  for k, v in pairs(_G[name]) do copy[k] = v end
  libs[name] = copy
end
libs.string.dump, libs.string.gfind, libs.math.randomseed = nil, nil, nil
libs.string.find, libs.string.match, libs.string.gmatch, libs.string.gsub = find, match, gmatch, gsub
libs.string.upper, libs.string.lower = upper, lower
libs.table.setn, libs.table.foreach, libs.table.foreachi = nil, nil, nil
-- s:method() goes through the string metatable: point it at the guarded copy, and hide
-- that metatable (shared by every run) from scripts
local string_mt = getmetatable("")
string_mt.__index = libs.string
string_mt.__metatable = false
local base = {
  assert=assert, error=error, ipairs=ipairs, next=next, pairs=pairs, pcall=pcall, select=select,
  tonumber=tonumber, tostring=gotostring, type=type, unpack=unpack, xpcall=xpcall,
  rawequal=rawequal, rawget=rawget, rawset=rawset, setmetatable=setmetatable, getmetatable=getmetatable,
  _VERSION="Lua 5.1",
}
-- 3. per run: a fresh global table and fresh library tables reading through to the copies.
-- Every shared metatable is protected (__metatable), so a script cannot reach or change it.
local lib_mt = {}
for name, lib in pairs(libs) do
  lib_mt[name] = {
    __index = lib,
    __metatable = false,
  }
end
-- Library tables are made on first use in a run (most filters never touch them).
local base_mt = {__index = function(env, k)
  if k == "_G" then rawset(env, k, env) return env end
  local mt = lib_mt[k]
  if mt == nil then return base[k] end
  local lib = setmetatable({}, mt)
  rawset(env, k, lib)
  return lib
end, __metatable = false}
local function compile(source, name)
  local fn, err = loadstring(source, "=" .. name)
  return fn, err
end
-- Argo reads the last value the chunk returns (gopher-lua's L.Get(-1)); nil when none.
local function last(ok, ...)
  local n = select("#", ...)
  if n == 0 then return ok, nil end
  return ok, (select(n, ...))
end
local function run(fn, event, filter)
  local env = setmetatable({event = event}, base_mt)
  setfenv(fn, env)
  steps, tripped, deadline = 0, nil, nil
  sethook(hook, "", step)
  local ok, result = last(rawpcall(fn))
  sethook()
  tripped = nil
  setfenv(fn, {})
  if not ok then error(result, 0) end
  if filter then
    local kind = type(result)
    if kind == "table" or kind == "function" or kind == "userdata" then return result == true, kind end
    return result == true, nil, result
  end
  return result
end
-- __is_array: gopher-lua's toGoValue reads the raw metatable (Argo's way to force an array)
local function is_array(t)
  local mt = rawgetmetatable(t)
  return type(mt) == "table" and rawget(mt, "__is_array") == true
end
-- nothing but these functions escapes; strip the globals scripts could reach
for _, k in ipairs({"debug", "io", "os", "package", "require", "dofile", "loadfile", "load", "loadstring",
                    "python", "collectgarbage", "print", "getfenv", "setfenv", "newproxy", "gcinfo", "module",
                    "coroutine"}) do _G[k] = nil end
return compile, run, is_array
"""


class LuaSandbox:
    """One Lua 5.1 runtime; compile scripts once, run them many times, each run in a fresh environment.

    ``run`` gives the script's result as Argo's Go code reads it (the last value returned;
    a table becomes a JSON object or array as ``toGoValue`` decides); ``passes`` gives a
    script filter's verdict (that last value is ``true``).

    >>> box = LuaSandbox()                                     # doctest: +SKIP
    >>> box.run(box.compile("return event.n + 1", "t"), {"n": 1})   # doctest: +SKIP
    2
    """

    def __init__(self, max_instructions: int = DEFAULT_MAX_INSTRUCTIONS,
                 max_memory: int = DEFAULT_MAX_MEMORY, max_seconds: float = DEFAULT_MAX_SECONDS) -> None:
        if _lupa is None:
            raise LuaError("Lua scripts need the 'lua' extra: pip install 'airflow-argo-events[lua]'")
        # encoding=None: Lua strings are bytes both ways, as in Lua (a script may build any
        # byte string; Go's json.Marshal turns invalid UTF-8 into U+FFFD, so do we).
        self._rt = _lupa.LuaRuntime(
            register_eval=False, register_builtins=False, unpack_returned_tuples=False, max_memory=max_memory,
            encoding=None,
        )
        self._max_memory = max_memory
        self._tostring = self._rt.eval("tostring")
        py = self._rt.table_from({
            b"variable_items": lua_patterns.variable_items,
            b"find": self._find, b"gmatch": self._gmatch, b"gsub": self._gsub,
            b"gonum": lambda n: go_number(n).encode(),
            b"upper": lambda b: go_upper(b.decode("utf-8", "replace")).encode(),
            b"lower": lambda b: go_lower(b.decode("utf-8", "replace")).encode(),
        })
        self._compile, self._run, self._is_array = self._rt.execute(
            _SETUP, max_instructions, HOOK_STEP, max_seconds, LUA_PATTERN_BUDGET, py)

    def compile(self, source: str, name: str = "script") -> Any:
        fn, err = self._compile(source.encode(), name.encode())
        if fn is None:
            raise LuaError(_text(err) or f"{name}: does not compile")
        return fn

    def run(self, fn: Any, event: Any) -> Any:
        """Run a compiled script with ``event``; returns its last result as JSON-like Python values."""
        result = self._call(fn, event, False)
        try:
            return from_lua(result, is_array=self._is_array)
        except _lupa.LuaError as err:
            raise LuaError(_text(err)) from None

    def passes(self, fn: Any, event: Any) -> bool:
        """A script filter: whether the last value the script returns is ``true``."""
        return self.verdict(fn, event)[0]

    def verdict(self, fn: Any, event: Any) -> tuple[bool, str]:
        """``passes``, with what the script returned, for the explanation (``False``, ``1``, ``a table``)."""
        passed, kind, value = (*self._call(fn, event, True), None, None)[:3]
        if kind is not None:
            return passed, f"a {_text(kind)}"
        return passed, repr(_text(value) if isinstance(value, bytes) else value)

    def _call(self, fn: Any, event: Any, filter_mode: bool) -> Any:
        try:
            return self._run(fn, self._rt.table_from(to_lua(event), recursive=True), filter_mode)
        except _lupa.LuaMemoryError as err:
            raise LuaError(f"memory limit exceeded: {_text(err)}") from None
        except _lupa.LuaError as err:
            raise LuaError(_text(err)) from None

    # ------------------------------------------------------------ RE2-backed string functions

    def _pack(self, values: list[Any] | None) -> Any:
        if values is None:
            return None
        table = self._rt.table_from(values)
        table[b"n"] = len(values)
        return table

    def _find(self, src: bytes, pat: bytes, init: int | None, mode: bytes) -> Any:
        try:
            if mode == b"plain":
                start = lua_patterns._start(init, len(src))
                at = src.find(pat, start) if start <= len(src) else -1
                return self._pack(None if at < 0 else [at + 1, at + len(pat)])
            return self._pack(lua_patterns.find(src, pat, init, want_span=mode == b"find"))
        except lua_patterns.Untranslatable:
            return f"{mode.decode()}: pattern too costly for a {len(src)}-byte string".encode()

    def _gmatch(self, src: bytes, pat: bytes, init: int | None) -> Any:
        try:
            step = lua_patterns.gmatch(src, pat, init)
        except lua_patterns.Untranslatable:
            return f"gmatch: pattern too costly for a {len(src)}-byte string".encode()
        return lambda: self._pack(step())

    def _gsub(self, src: bytes, pat: bytes, repl: Any, n: int | None) -> Any:
        try:
            out, count = lua_patterns.gsub(src, pat, repl, n, self._repl, self._to_bytes, self._max_memory)
        except lua_patterns.Untranslatable:
            return f"gsub: pattern too costly for a {len(src)}-byte string".encode()
        except (ValueError, MemoryError) as err:
            return f"gsub: {err}".encode()
        except _lupa.LuaError as err:  # the replacement function failed (or a limit tripped in it)
            return _text(err).encode()
        return self._pack([out, count])

    def _repl(self, repl: Any, captures: list[Any]) -> Any:
        if _lupa.lua_type(repl) == "table":
            return repl[captures[0]]
        out = repl(*captures)
        return out[0] if isinstance(out, tuple) else out

    def _to_bytes(self, value: Any) -> bytes | None:
        if value is None or value is False:
            return None
        if isinstance(value, bytes):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return bytes(self._tostring(value))
        kind = "boolean" if value is True else (_lupa.lua_type(value) or type(value).__name__)
        raise ValueError(f"invalid replacement value (a {kind})")


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value) if value is not None else ""


def go_number(n: float) -> str:
    """A number as gopher-lua prints it (``tostring``): Go's ``fmt.Sprint`` of an int64 when
    the float is one, else of the float64 (``2^53`` -> ``9007199254740992``, ``1e21`` ->
    ``1e+21``, ``0.1 + 0.2`` -> ``0.30000000000000004``)."""
    f = float(n)
    if f.is_integer() and -2**63 <= f < 2**63:
        return str(int(f))
    return format_float_v(f)


def to_lua(data: dict[str, Any]) -> dict[bytes, Any]:
    """Argo's ``mapToTable``: the event as gopher-lua sees it. Numbers are float64, ``null``
    members are dropped, and arrays keep only objects, numbers, strings and booleans."""
    out: dict[bytes, Any] = {}
    for k, v in data.items():
        if v is None:
            continue
        if isinstance(v, str):
            v = v.encode()
        elif isinstance(v, dict):
            v = to_lua(v)
        elif isinstance(v, list):
            v = [_item(x) for x in v if x is not None and not isinstance(x, list)]
        elif isinstance(v, int) and not isinstance(v, bool):
            v = _float(v)
        out[k.encode()] = v
    return out


def _item(x: Any) -> Any:
    if isinstance(x, str):
        return x.encode()
    if isinstance(x, dict):
        return to_lua(x)
    if isinstance(x, int) and not isinstance(x, bool):
        return _float(x)
    return x


def _float(n: int) -> float:
    try:
        return float(n)
    except OverflowError:
        return math.inf if n > 0 else -math.inf


_MAX_ARRAY_INDEX = 67108864
"""gopher-lua keeps integer keys 1..MaxArrayIndex-1 in a table's array part (``MaxN``)."""


def from_lua(value: Any, depth: int = 0, is_array: Any = None) -> Any:
    """A Lua result as Argo's ``toGoValue`` + ``json.Marshal`` turn it into JSON.

    A table whose array part is not empty (``MaxN``: the largest positive integer key) is an
    array of 1..MaxN, holes as ``null`` and other keys dropped; so is a table whose
    metatable has ``__is_array = true``. Any other table is an object, keys as ``tostring``
    prints them, sorted. Numbers are float64 (integral ones come back as ints here, Go
    prints them without a fraction); NaN and infinities are errors, as in ``json.Marshal``.
    Tables nested deeper than ``MAX_JSON_DEPTH`` (or containing themselves) are refused:
    the result must be something the bus and the state store can carry."""
    if depth > MAX_JSON_DEPTH:
        raise LuaError(f"script returned a table nested deeper than {MAX_JSON_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        if isinstance(value, float):
            if not math.isfinite(value):
                raise LuaError(f"json: unsupported value: {format_float_v(value)}")
            return go_json_number(value)
        if value >= 2**53 or value <= -2**53:
            return go_json_number(float(value))
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    kind = _lupa.lua_type(value) if _lupa is not None else None
    if kind != "table":
        raise LuaError(f"json: unsupported type: {kind or type(value).__name__}")
    items = dict(value.items())
    maxn = 0
    for k in items:
        if isinstance(k, (int, float)) and not isinstance(k, bool) and maxn < k < _MAX_ARRAY_INDEX \
                and float(k).is_integer():
            maxn = int(k)
    if maxn or (is_array is not None and is_array(value)):
        return [from_lua(items.get(i), depth + 1, is_array) for i in range(1, maxn + 1)]
    out = {_key(k): from_lua(v, depth + 1, is_array) for k, v in items.items()}
    # Go marshals maps with sorted keys; so do we, for the same bytes as Argo.
    return {k: out[k] for k in sorted(out)}


def _key(k: Any) -> str:
    if isinstance(k, bytes):
        return k.decode("utf-8", "replace")
    if isinstance(k, bool):
        return "true" if k else "false"
    if isinstance(k, (int, float)):
        return go_number(k)
    return str(k)
