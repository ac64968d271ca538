"""HDFS source against a namenode that accepts TCP connections and never answers.

The hung namenode is a local socket server that accepts and then stays silent; the second
address is the WebHDFS fake from tests/support.py. Finding 16: without timeouts the source
hung forever on the first address, never failed over, logged nothing, and a SIGTERMed
process stayed up for minutes waiting on the worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from airflow_argo_events.core.sources.hdfs import HDFSSource, retry_delay
from airflow_argo_events.core.spec.loader import load_text

from ..support import FakeWebHDFS

pytestmark = pytest.mark.timeout(90)

CLI = str(Path(sys.executable).parent / "argo-events")


class BlackHole:
    """Accepts every connection and never sends a byte (a hung namenode)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> BlackHole:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(5)
        for conn in self.accepted:
            conn.close()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted.append(conn)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_accepted(self, n: int = 1, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while len(self.accepted) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"no connection to the hung namenode within {timeout}s")
            time.sleep(0.02)


def hdfs_source(addresses: list[str], **extra: str) -> HDFSSource:
    (es,) = load_text(yaml.safe_dump({"apiVersion": "argoproj.io/v1alpha1", "kind": "EventSource",
                                      "metadata": {"name": "hdfs"}, "spec": {"hdfs": {"example": {
                                          "directory": "/tmp/", "type": "CREATE", "pathRegexp": ".*",
                                          "addresses": addresses, "hdfsUser": "root", "checkInterval": "100ms",
                                          **extra}}}}))
    (cfg,) = es.events()
    return HDFSSource(cfg)


async def test_hung_namenode_fails_over_to_the_next_address(caplog):
    caplog.set_level(logging.WARNING, logger="airflow_argo_events")
    namenode = FakeWebHDFS().start()
    namenode.put("/tmp/already.txt")
    try:
        with BlackHole() as hung:
            # credentials in the address must not reach the log line that names it
            source = hdfs_source([f"http://nn:hdfspw@{hung.address}", namenode.address],
                                 connectTimeout="1s", readTimeout="500ms")
            events = source.events()
            try:
                first = await asyncio.wait_for(anext(events), 30)
                namenode.put("/tmp/new.txt")
                second = await asyncio.wait_for(anext(events), 30)
            finally:
                await events.aclose()
    finally:
        namenode.stop()
    assert first.payload["name"] == "/tmp/already.txt"
    assert second.payload["name"] == "/tmp/new.txt"
    failures = [r.getMessage() for r in caplog.records if "http://nn:***@" + hung.address in r.getMessage()]
    assert failures, caplog.text
    assert all("\n" not in line for line in failures)
    assert "hdfspw" not in caplog.text


async def test_only_a_hung_namenode_logs_each_failure_and_backs_off(caplog, monkeypatch):
    caplog.set_level(logging.WARNING, logger="airflow_argo_events")
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def record(seconds: float) -> None:
        delays.append(seconds)
        await real_sleep(0)

    with BlackHole() as hung:
        source = hdfs_source([hung.address], readTimeout="200ms")
        monkeypatch.setattr(source, "_sleep", record)
        task = asyncio.create_task(anext(source.events()))
        while len(delays) < 3:
            await real_sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert delays[:3] == [retry_delay(0.1, 1), retry_delay(0.1, 2), retry_delay(0.1, 3)]
    assert delays[0] < delays[1] < delays[2]
    lines = [r.getMessage() for r in caplog.records if hung.address in r.getMessage()]
    assert len(lines) >= 3 and all("retrying" in line for line in lines), lines


def test_retry_delay_grows_to_a_cap():
    assert [retry_delay(1.0, n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert retry_delay(1.0, 100) == 60.0
    assert retry_delay(300.0, 5) == 300.0  # never faster than the check interval


async def test_cancellation_returns_at_once_while_a_request_hangs():
    namenode = FakeWebHDFS().start()
    try:
        with BlackHole() as hung:
            source = hdfs_source([hung.address, namenode.address], readTimeout="10m")
            task = asyncio.create_task(anext(source.events()))
            while not hung.accepted:
                await asyncio.sleep(0.02)
            task.cancel()
            # generous bound: only detects a hang on the worker thread
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)
        assert task.cancelled()
        # The hung request ends (the namenode closed); the abandoned scan gives up instead of
        # going on to the next address.
        for thread in threading.enumerate():
            if thread.name.startswith("hdfs-scan"):
                thread.join(10)
        assert namenode.server.requests == []
    finally:
        namenode.stop()


def test_sigterm_ends_eventsource_run_while_a_request_hangs(private_nats, tmp_path):
    """The process must not wait for the hung worker thread at shutdown."""
    server = private_nats()
    with BlackHole() as hung:
        manifest = tmp_path / "hdfs.yaml"
        manifest.write_text(yaml.safe_dump({"apiVersion": "argoproj.io/v1alpha1", "kind": "EventSource",
                                            "metadata": {"name": "hdfs"}, "spec": {"hdfs": {"example": {
                                                "directory": "/tmp/", "type": "CREATE", "pathRegexp": ".*",
                                                "addresses": [hung.address], "hdfsUser": "root",
                                                "readTimeout": "10m"}}}}))
        env = {k: v for k, v in os.environ.items() if k != "ARGO_EVENTS_NATS_URL"}
        proc = subprocess.Popen([CLI, "eventsource", "run", "-f", str(manifest), "--nats", server.url],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        try:
            hung.wait_accepted()
            proc.send_signal(signal.SIGTERM)
            try:
                _, err = proc.communicate(timeout=15)  # generous: before the fix it waited for the request
            except subprocess.TimeoutExpired:
                pytest.fail("eventsource run still running 15 s after SIGTERM")
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err


@pytest.mark.parametrize("field", ["readTimeout", "connectTimeout"])
def test_bad_timeouts_are_refused_at_load(field):
    from airflow_argo_events.core.exceptions import SpecError

    with pytest.raises(SpecError, match=field):
        hdfs_source(["127.0.0.1:1"], **{field: "soon"})
    with pytest.raises(SpecError, match=field):
        hdfs_source(["127.0.0.1:1"], **{field: "0s"})
    assert hdfs_source(["127.0.0.1:1"], **{field: "2s"}).spec.timeouts() != (5.0, 30.0)
