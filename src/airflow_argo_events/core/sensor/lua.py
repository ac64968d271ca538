"""Lua for script filters and transforms, sandboxed (Argo runs gopher-lua).

Scripts see a global ``event`` (the event data as a table) and the safe standard
library: ``string``, ``table``, ``math``, ``utf8``, ``pairs``, ``ipairs``, ``tostring``,
``tonumber``, ``type``, ``select``, ``next``, ``pcall``, ``error``, ``assert``,
``unpack``. There is no ``os``, ``io``, ``require``, ``load``, ``dofile``, ``debug``
or ``python``. Each run is bounded in instructions (a count hook) and the runtime in
memory (lupa's ``max_memory``); exceeding either is an error for that event only.
"""

from __future__ import annotations

import math
from typing import Any

try:
    from lupa import lua54 as _lupa
except ImportError:  # pragma: no cover - the 'lua' extra is missing
    _lupa = None

DEFAULT_MAX_INSTRUCTIONS = 1_000_000
DEFAULT_MAX_MEMORY = 64 * 1024 * 1024


class LuaError(ValueError):
    """A Lua script failed to compile or run (including hitting a sandbox limit)."""


_SETUP = """
local sethook, setupvalue = debug.sethook, debug.setupvalue
local load, setmetatable, pcall, error = load, setmetatable, pcall, error
local safe = {
  assert=assert, error=error, ipairs=ipairs, next=next, pairs=pairs, pcall=pcall, select=select,
  tonumber=tonumber, tostring=tostring, type=type, unpack=table.unpack, xpcall=xpcall,
  rawequal=rawequal, rawget=rawget, rawlen=rawlen, rawset=rawset,
  string={}, table={}, math={}, utf8={},
}
for _, lib in ipairs({"string", "table", "math", "utf8"}) do
  for k, v in pairs(_G[lib]) do safe[lib][k] = v end
end
safe.string.dump = nil
safe.math.randomseed = nil
local limit = ...
local function compile(source, name)
  local fn, err = load(source, "=" .. name, "t", {})
  return fn, err
end
local function run(fn, event)
  local env = setmetatable({event = event}, {__index = safe})
  setupvalue(fn, 1, env)
  sethook(function() error("instruction limit exceeded", 2) end, "", limit)
  local ok, result = pcall(fn)
  sethook()
  if not ok then error(result, 0) end
  return result
end
-- nothing but these two functions escapes; strip the globals scripts could reach
for _, k in ipairs({"debug", "io", "os", "package", "require", "dofile", "loadfile", "load", "python",
                    "collectgarbage", "print", "warn"}) do _G[k] = nil end
return compile, run
"""


class LuaSandbox:
    """One Lua runtime; compile scripts once, run them many times.

    >>> box = LuaSandbox()                                     # doctest: +SKIP
    >>> box.run(box.compile("return event.n + 1", "t"), {"n": 1})   # doctest: +SKIP
    2
    """

    def __init__(self, max_instructions: int = DEFAULT_MAX_INSTRUCTIONS,
                 max_memory: int = DEFAULT_MAX_MEMORY) -> None:
        if _lupa is None:
            raise LuaError("Lua scripts need the 'lua' extra: pip install 'airflow-argo-events[lua]'")
        self._rt = _lupa.LuaRuntime(
            register_eval=False, register_builtins=False, unpack_returned_tuples=False, max_memory=max_memory,
        )
        self._compile, self._run = self._rt.execute(_SETUP, max_instructions)

    def compile(self, source: str, name: str = "script") -> Any:
        fn, err = self._compile(source, name)
        if fn is None:
            raise LuaError(str(err or f"{name}: does not compile"))
        return fn

    def run(self, fn: Any, event: Any) -> Any:
        """Run a compiled script with ``event``; returns its result as Python values."""
        try:
            result = self._run(fn, self._to_lua(event))
        except _lupa.LuaMemoryError as err:
            raise LuaError(f"memory limit exceeded: {err}") from None
        except _lupa.LuaError as err:
            raise LuaError(str(err)) from None
        return from_lua(result)

    def _to_lua(self, value: Any) -> Any:
        if isinstance(value, (dict, list)):
            return self._rt.table_from(value, recursive=True)
        return value


def from_lua(value: Any) -> Any:
    """Lua values to JSON-like Python: integral floats become ints (Go marshals float64 11 as 11)."""
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
            return [from_lua(v) for _, v in sorted(items, key=lambda kv: kv[0])]
        # Go marshals maps with sorted keys; so do we, for the same bytes as Argo.
        return {str(from_lua(k)): from_lua(v) for k, v in sorted(items, key=lambda kv: str(kv[0]))}
    return str(value)
