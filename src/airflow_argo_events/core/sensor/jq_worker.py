"""jq in a child process, so a runaway program can be killed.

The ``jq`` binding holds the GIL while a program runs, so no thread can time it out. A
small worker process runs the programs instead, with a memory limit; the parent waits
with a deadline and kills it on timeout. One JSON object per line each way.

The worker sees nothing of ours: it starts with an **empty environment** (jq's ``env``
and ``$ENV`` would otherwise hand any secret in it, such as a NATS URL with its password,
to whoever writes the transform), in an empty temporary directory, and refuses jq's
``import``/``include`` (which read ``.jq``/``.json`` files; Argo's gojq has no module
loader either). Its import path comes on stdin, not from the environment or argv.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import re
import select
import subprocess
import sys
import tempfile
import threading
from typing import Any

from airflow_argo_events.core.sensor.paths import go_json_number

WORKER_MEMORY_BYTES = 1024 * 1024 * 1024
"""Address-space limit of the worker (RLIMIT_AS): a runaway program dies, the sensor does not."""

# os.environ.clear(): Python itself sets LC_CTYPE (PEP 538 locale coercion) in an empty environment.
_BOOT = ("import os, sys, json; os.environ.clear(); sys.path[:0] = json.loads(sys.stdin.buffer.readline()); "
         "from airflow_argo_events.core.sensor.jq_worker import _serve; _serve()")
_MODULE_DIRECTIVE = re.compile(r'(?:^|[;\s])(?:import|include)\s*"')


# Argo runs gojq on the event as Go decodes it, and json.Marshal on the result. libjq differs
# in ways this prelude and ``go_decoded`` even out (each `def` below shadows the builtin):
# - every input number is a float64 (see ``go_decoded``);
# - gojq objects are Go maps: keys come in sorted order (input keys are sorted before
#   sending; `to_entries`/`keys_unsorted` sort);
# - `tostring`/`tojson` print numbers as gojq's encoder does (Go's 'f' format from 1e-6 to
#   1e21, else 'e' with a short exponent: `1.5e-7`, `1e+21`) and objects with sorted keys;
# - NaN and infinities in the result are errors, as in json.Marshal (NaN here, infinities
#   in transform.py).
PRELUDE = r"""
def _argo_btostring: tostring;
def _argo_btojson: tojson;
def _argo_zeros($n): if $n <= 0 then "" else "0" * $n end;
def _argo_nan: if any(..; . != .) then error("json: unsupported value: NaN") else . end;
def _argo_numstr:
  if isnan then "null"
  elif . >= 1.7976931348623157e308 then "1.7976931348623157e+308"
  elif . <= -1.7976931348623157e308 then "-1.7976931348623157e+308"
  else (. * 1 | _argo_btostring) as $s
  | if . == 0 then (if $s | startswith("-") then "-0" else "0" end)
    else ($s | ltrimstr("-") | ascii_downcase | split("e")) as $p
    | (($p[1] // "0") | ltrimstr("+") | tonumber) as $e
    | ($p[0] | split(".")) as $m
    | ($m[0] + ($m[1] // "")) as $d0
    | ($d0 | sub("^0+"; "")) as $d1
    | (($m[0] | length) + $e - (($d0 | length) - ($d1 | length))) as $pt
    | ($d1 | sub("0+$"; "")) as $d
    | fabs as $x
    | (if $x < 1e-6 or $x >= 1e21 then
         ($pt - 1) as $x10
         | $d[0:1] + (if ($d | length) > 1 then "." + $d[1:] else "" end) + "e"
           + (if $x10 < 0 then "-" + ((- $x10) | _argo_btostring)
              else "+" + (if $x10 < 10 then "0" else "" end) + ($x10 | _argo_btostring) end)
       elif $pt <= 0 then "0." + _argo_zeros(- $pt) + $d
       elif $pt >= ($d | length) then $d + _argo_zeros($pt - ($d | length))
       else $d[0:$pt] + "." + $d[$pt:] end)
    | if $s | startswith("-") then "-" + . else . end
    end
  end;
def _argo_json: if type == "number" then _argo_numstr
  elif type == "object" then "{" + (to_entries | sort_by(.key)
    | map((.key | _argo_btojson) + ":" + (.value | _argo_json)) | join(",")) + "}"
  elif type == "array" then "[" + (map(_argo_json) | join(",")) + "]"
  else _argo_btojson end;
def tojson: _argo_json;
def tostring: if type == "string" then . elif type == "number" then _argo_numstr else _argo_json end;
def to_entries: [keys[] as $k | {key: $k, value: .[$k]}];
def keys_unsorted: keys;
"""


# Only these can make a NaN (which libjq's tojson writes as null): other programs skip the
# walk that looks for one. Infinities come out as +-1.7976931348623157e+308 (see transform).
_NAN_MAKERS = re.compile(r"nan|infinite|sqrt|log|pow|exp|acos|asin|atan|fmod|gamma|significand|drem|ldexp|"
                         r"frexp|tonumber|fromjson|/|%")


def wrap(program: str) -> str:
    """The program as the worker runs it: Go-decoded input, the prelude's builtins, a
    json.Marshal-able result, as JSON text: libjq writes an integer literal of the program
    in full (``.big = 12345678901234567890``, exact in gojq too), where a conversion to a
    Python value would go through a double. The newline ends a trailing ``#`` comment."""
    check = " | _argo_nan" if _NAN_MAKERS.search(program) else ""
    return f"{PRELUDE}({program}\n){check} | _argo_btojson"


def go_decoded(value: Any) -> Any:
    """The input as Go decodes it for gojq, in the JSON text libjq reads: objects with their
    keys sorted at every level (gojq iterates a Go map in key order) and every number a
    float64. jq 1.7 prints a number it has not computed on with its literal text, so an
    integral float below 1e21 goes as the integer Go writes for it (``21.0`` as ``21``,
    ``12345678901234567890`` as ``12345678901234567000``): the same double, Go's text."""
    if isinstance(value, dict):
        return {k: go_decoded(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [go_decoded(v) for v in value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if isinstance(value, int):
        if -2**53 < value < 2**53:
            return value
        try:
            value = float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if value == 0 and math.copysign(1.0, value) < 0:
        return value  # -0 stays a float
    return go_json_number(value)


class JqRunError(ValueError):
    """The program failed, produced nothing, or exceeded its time bound."""


class JqProcess:
    """A lazily started worker; ``run(program, data, timeout)`` returns the first output."""

    _lock = threading.Lock()

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._cwd: tempfile.TemporaryDirectory[str] | None = None
        atexit.register(self.kill)

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            if self._cwd is None:
                self._cwd = tempfile.TemporaryDirectory(prefix="argo-events-jq-")
            # -I: ignore PYTHON* variables and the user site; env={}: nothing to leak.
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOT], env={}, cwd=self._cwd.name, close_fds=True,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )
            assert self._proc.stdin is not None
            self._proc.stdin.write(json.dumps([p or os.getcwd() for p in sys.path]).encode() + b"\n")
            self._proc.stdin.flush()
        return self._proc

    def run(self, program: str, data: Any, timeout: float) -> Any:
        with self._lock:
            proc = self._start()
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps({"p": program, "d": data}).encode() + b"\n")
            proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], timeout)
            if not ready:
                self.kill()
                raise JqRunError(f"exceeded {timeout:g}s")
            line = proc.stdout.readline()
            if not line:
                self.kill()
                raise JqRunError("jq worker died (memory limit?)")
        reply = json.loads(line)
        if "err" in reply:
            raise JqRunError(reply["err"])
        return reply["ok"]

    def kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()


def check_program(program: str) -> None:
    """Refuse jq module directives (``import``/``include``): they read files."""
    if _MODULE_DIRECTIVE.search(program):
        raise ValueError("jq import/include is not supported in transforms")


def _serve() -> None:  # pragma: no cover - runs in the child process
    import resource

    import jq

    resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    compiled: dict[str, Any] = {}
    out = os.fdopen(sys.stdout.fileno(), "wb", buffering=0)
    for line in sys.stdin.buffer:
        req = json.loads(line)
        try:
            prog = compiled.get(req["p"])
            if prog is None:
                check_program(req["p"])
                jq.compile(req["p"])  # valid on its own, not only inside the wrapper
                if len(compiled) >= 256:
                    compiled.clear()
                prog = compiled[req["p"]] = jq.compile(wrap(req["p"]))
            text = prog.input_value(go_decoded(req["d"])).first()
        except StopIteration:
            reply = {"err": "no output"}
        except Exception as err:  # jq raises ValueError; report anything as this event's error
            reply = {"err": str(err)}
        else:
            out.write(b'{"ok":' + text.encode() + b"}\n")
            continue
        out.write(json.dumps(reply).encode() + b"\n")


if __name__ == "__main__":  # pragma: no cover
    _serve()
