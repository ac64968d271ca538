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
import os
import re
import select
import subprocess
import sys
import tempfile
import threading
from typing import Any

WORKER_MEMORY_BYTES = 1024 * 1024 * 1024
"""Address-space limit of the worker (RLIMIT_AS): a runaway program dies, the sensor does not."""

# os.environ.clear(): Python itself sets LC_CTYPE (PEP 538 locale coercion) in an empty environment.
_BOOT = ("import os, sys, json; os.environ.clear(); sys.path[:0] = json.loads(sys.stdin.buffer.readline()); "
         "from airflow_argo_events.core.sensor.jq_worker import _serve; _serve()")
_MODULE_DIRECTIVE = re.compile(r'(?:^|[;\s])(?:import|include)\s*"')


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
                prog = compiled[req["p"]] = jq.compile(req["p"])
            reply = {"ok": prog.input_value(req["d"]).first()}
        except StopIteration:
            reply = {"err": "no output"}
        except Exception as err:  # jq raises ValueError; report anything as this event's error
            reply = {"err": str(err)}
        out.write(json.dumps(reply).encode() + b"\n")


if __name__ == "__main__":  # pragma: no cover
    _serve()
