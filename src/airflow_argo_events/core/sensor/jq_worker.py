"""jq in a child process, so a runaway program can be killed.

The ``jq`` binding holds the GIL while a program runs, so no thread can time it out. A
small worker process (``python -m airflow_argo_events.core.sensor.jq_worker``) runs the
programs instead, with a memory limit; the parent waits with a deadline and kills it on
timeout. One JSON object per line each way.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
from typing import Any

WORKER_MEMORY_BYTES = 1024 * 1024 * 1024


class JqRunError(ValueError):
    """The program failed, produced nothing, or exceeded its time bound."""


class JqProcess:
    """A lazily started worker; ``run(program, data, timeout)`` returns the first output."""

    _lock = threading.Lock()

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        atexit.register(self.kill)

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "airflow_argo_events.core.sensor.jq_worker"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )
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
                prog = compiled[req["p"]] = jq.compile(req["p"])
            reply = {"ok": prog.input_value(req["d"]).first()}
        except StopIteration:
            reply = {"err": "no output"}
        except Exception as err:  # jq raises ValueError; report anything as this event's error
            reply = {"err": str(err)}
        out.write(json.dumps(reply).encode() + b"\n")


if __name__ == "__main__":  # pragma: no cover
    _serve()
