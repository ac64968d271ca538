"""The generic event source against a real gRPC server in the test process.

The server encodes and decodes the protocol's two messages by hand, from Argo's field
numbers and types (``name = 1`` string, ``config``/``payload = 2`` bytes), not with the
source's descriptors, so a wrong field number on either side fails these tests.
"""

from __future__ import annotations

import asyncio
import datetime
import queue
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import pytest

from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.runtime.eventsource_runtime import EventSourceRuntime
from airflow_argo_events.testing.plugin import unique_name

from .test_sources import Running, manifest

grpc = pytest.importorskip("grpc")

pytestmark = pytest.mark.timeout(90)

END = object()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def encode_event(name: str, payload: bytes) -> bytes:
    """``generic.Event{name = 1; payload = 2}`` in protobuf's wire format (proto3: empty fields left out)."""
    out = b""
    for number, value in ((1, name.encode()), (2, payload)):
        if value:
            out += _varint(number << 3 | 2) + _varint(len(value)) + value
    return out


def decode_request(data: bytes) -> dict[int, bytes]:
    """``generic.EventSource{name = 1; config = 2}`` from the wire: {field number: bytes}."""
    fields, i = {}, 0
    while i < len(data):
        key, shift = 0, 0
        while True:
            b = data[i]
            i += 1
            key |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        assert key & 7 == 2, f"field {key >> 3} is not length-delimited"
        n, shift = 0, 0
        while True:
            b = data[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        fields[key >> 3] = data[i:i + n]
        i += n
    return fields


@dataclass
class Call:
    name: str
    config: str
    authorization: str | None


@dataclass
class GenericServer:
    """A gRPC server implementing Argo's ``generic.Eventing/StartEventSource`` on a fixed port.

    Each call's stream sends what ``send(config, payload)`` queues for that call's config;
    ``end(config)`` ends the stream. ``token`` per config makes the server require it.
    """

    port: int = field(default_factory=free_port)
    tls: tuple[bytes, bytes] | None = None
    calls: list[Call] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)
    _boxes: dict[str, queue.Queue] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: Any = None

    def box(self, config: str) -> queue.Queue:
        with self._lock:
            return self._boxes.setdefault(config, queue.Queue())

    def send(self, config: str, payload: bytes, name: str = "ignored") -> None:
        self.box(config).put((name, payload))

    def end(self, config: str) -> None:
        self.box(config).put(END)

    def _stream(self, request: bytes, context: Any):  # noqa: ANN202 - a generator of Event bytes
        fields = decode_request(request)
        config = fields.get(2, b"").decode()
        auth = dict(context.invocation_metadata()).get("authorization")
        self.calls.append(Call(fields.get(1, b"").decode(), config, auth))
        if config in self.tokens and auth != f"Bearer {self.tokens[config]}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad token")
        box = self.box(config)
        while context.is_active():
            try:
                item = box.get(timeout=0.05)
            except queue.Empty:
                continue
            if item is END:
                return
            yield encode_event(*item)

    def start(self) -> GenericServer:
        handler = grpc.method_handlers_generic_handler("generic.Eventing", {
            "StartEventSource": grpc.unary_stream_rpc_method_handler(self._stream)})
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), handlers=[handler])
        address = f"127.0.0.1:{self.port}" if self.tls is None else f"localhost:{self.port}"
        if self.tls is None:
            server.add_insecure_port(address)
        else:
            server.add_secure_port(address, grpc.ssl_server_credentials([self.tls]))
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait(10)
            self._server = None

    async def wait_calls(self, config: str, n: int, timeout: float = 30) -> list[Call]:
        deadline = time.monotonic() + timeout
        while len(mine := [c for c in self.calls if c.config == config]) < n:
            assert time.monotonic() < deadline, f"{len(mine)} calls for {config!r}, expected {n}"
            await asyncio.sleep(0.02)
        return mine


@pytest.fixture(scope="session")
def generic_server() -> GenericServer:
    server = GenericServer().start()
    yield server
    server.stop()


def generic_event(server: GenericServer, config: str, **extra: Any) -> dict[str, Any]:
    return {"url": f"127.0.0.1:{server.port}", "insecure": True, "config": config, **extra}


async def test_events_as_argo_emits_them(bus, generic_server):
    config = f"queue: {unique_name('q')}\nkey: value"
    es = manifest(unique_name("gen"), {"generic": {"ev": generic_event(generic_server, config,
                                                                        metadata={"team": "data"})}})
    async with Running(es, bus) as r:
        (call,) = await generic_server.wait_calls(config, 1)
        assert (call.name, call.config, call.authorization) == ("ev", config, None)
        generic_server.send(config, b"\x00\x01 raw")
        (ev,) = await r.events(1)
    assert (ev.source, ev.subject, ev.type) == (es.metadata.name, "ev", "generic")
    assert ev.data == {"body": "AAEgcmF3", "metadata": {"team": "data"}}


async def test_json_body_and_a_payload_that_is_not_json(bus, generic_server, caplog):
    config = unique_name("json")
    es = manifest(unique_name("gen"), {"generic": {"ev": generic_event(generic_server, config, jsonBody=True)}})
    async with Running(es, bus) as r:
        await generic_server.wait_calls(config, 1)
        for payload in (b'{"a": 1}', b"not json", b'{"b": [2]}'):
            generic_server.send(config, payload)
        events = await r.events(2)
    assert [e.data for e in events] == [{"body": {"a": 1}}, {"body": {"b": [2]}}]
    assert "is not JSON (jsonBody)" in caplog.text


async def test_auth_secret_is_a_bearer_token(bus, generic_server, monkeypatch):
    monkeypatch.setenv("ARGO_EVENTS_SECRET_GRPC_TOKEN", "t0ken")
    config = unique_name("auth")
    generic_server.tokens[config] = "t0ken"
    es = manifest(unique_name("gen"), {"generic": {"ev": generic_event(
        generic_server, config, authSecret={"name": "grpc", "key": "token"})}})
    async with Running(es, bus) as r:
        (call,) = await generic_server.wait_calls(config, 1)
        generic_server.send(config, b"x")
        (ev,) = await r.events(1)
    assert call.authorization == "Bearer t0ken" and ev.data == {"body": "eA=="}


async def test_a_refused_token_is_retried_not_fatal(generic_server, monkeypatch, caplog):
    monkeypatch.setenv("ARGO_EVENTS_SECRET_GRPC_TOKEN", "wrong")
    config = unique_name("refused")
    generic_server.tokens[config] = "right"
    es = manifest(unique_name("gen"), {"generic": {"ev": generic_event(
        generic_server, config, authSecret={"name": "grpc", "key": "token"})}})
    caplog.set_level("WARNING", "airflow_argo_events.sources")
    rt = EventSourceRuntime(es, None)
    stop = asyncio.Event()
    task = asyncio.create_task(rt.run(stop))
    await generic_server.wait_calls(config, 2)  # refused, then called again
    stop.set()
    await asyncio.wait_for(task, 20)
    assert "UNAUTHENTICATED: bad token" in caplog.text and "wrong" not in caplog.text


async def test_stream_ended_and_server_restarted(bus, generic_server):
    config = unique_name("restart")
    es = manifest(unique_name("gen"), {"generic": {"ev": generic_event(generic_server, config, jsonBody=True)}})
    async with Running(es, bus) as r:
        await generic_server.wait_calls(config, 1)
        generic_server.send(config, b'{"n": 1}')
        generic_server.end(config)
        await generic_server.wait_calls(config, 2)  # the source called again
        generic_server.send(config, b'{"n": 2}')
        events = await r.events(2, timeout=30)
        generic_server.stop()
        generic_server.start()
        await generic_server.wait_calls(config, 3)  # and again once the server was back
        generic_server.send(config, b'{"n": 3}')
        events += await r.events(1, timeout=30)
    assert [e.data["body"]["n"] for e in events] == [1, 2, 3]


async def test_a_missing_auth_secret_ends_the_run_with_one_line(bus, generic_server):
    es = manifest(unique_name("gen"), {"generic": {"ev": generic_event(
        generic_server, "c", authSecret={"name": "nogrpc", "key": "token"})}})
    with pytest.raises(SpecError, match=r"spec.generic.ev.authSecret: secret nogrpc/token not found") as err:
        await asyncio.wait_for(EventSourceRuntime(es, bus).run(), 30)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("block, message", [
    ({"config": "c"}, "spec.generic.ev.url: must not be empty"),
    ({"url": "h:1"}, "spec.generic.ev.config: must not be empty"),
])
def test_bad_configuration_names_the_field(block, message):
    with pytest.raises(SpecError) as err:
        manifest("bad", {"generic": {"ev": block}})
    assert message in str(err.value)


async def test_runs_under_the_event_source_trigger(generic_server):
    from airflow_argo_events.triggers import EventSourceTrigger

    config = unique_name("trig")
    doc = {"apiVersion": "argoproj.io/v1alpha1", "kind": "EventSource", "metadata": {"name": unique_name("gen")},
           "spec": {"generic": {"ev": generic_event(generic_server, config, jsonBody=True)}}}
    gen = EventSourceTrigger(eventsource=doc, event_name="ev", nats_conn_id=None).run()
    try:
        first = asyncio.ensure_future(anext(gen))
        await generic_server.wait_calls(config, 1)
        generic_server.send(config, b'{"via": "trigger"}')
        event = await asyncio.wait_for(first, 40)
    finally:
        await gen.aclose()
    assert event.payload["data"] == {"body": {"via": "trigger"}} and event.payload["type"] == "generic"


def self_signed(tmp_path) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def test_cli_eventsource_run_over_tls(nats_url, tmp_path, monkeypatch):
    """``insecure: false`` is TLS (Argo's client would refuse to dial without credentials); the
    child process trusts the test's certificate through gRPC's roots variable."""
    from .test_kafka import cli_run_one

    key, cert = self_signed(tmp_path)
    (tmp_path / "ca.pem").write_bytes(cert)
    monkeypatch.setenv("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", str(tmp_path / "ca.pem"))
    server = GenericServer(tls=(key, cert)).start()
    try:
        config = unique_name("tls")
        spec = {"generic": {"ev": {"url": f"localhost:{server.port}", "config": config, "jsonBody": True}}}

        def stimulus() -> None:
            asyncio.run(server.wait_calls(config, 1, timeout=60))
            server.send(config, b'{"over": "tls"}')

        event = cli_run_one(nats_url, tmp_path, unique_name("cligen"), spec, stimulus)
    finally:
        server.stop()
    assert event["data"] == {"body": {"over": "tls"}}
