"""A TCP proxy for the NATS client protocol that loses replies: the server acted, the client never hears.

A request to NATS (a KV put, a JetStream API call, an ``AckSync``) is a ``PUB``/``HPUB`` with
a reply subject; the server acts on it, then sends the answer as a ``MSG``/``HMSG`` to that
subject. When the answer is lost (a connection dropped after the server acted, a stall
longer than the client's timeout), the client sees a timeout and cannot tell it from a
request that never arrived. tests/faults/test_lost_replies.py fakes this inside the process
(by wrapping ``StateStore``); this proxy does it on the wire, so it works on any client,
including a SensorTrigger in a real Airflow triggerer::

    client ──► proxy ──────────────────────► nats-server      PUB $KV.b.k _INBOX.x.7 2
                  (remembers _INBOX.x.7: a "kv" request)         (stored)
    client ◄─✕─ proxy ◄───────────────────── nats-server      MSG _INBOX.x.7 1 43  (PubAck)
                  (dropped at the seeded rate: the client times out and retries)

Both directions are parsed into protocol frames (``INFO``, ``CONNECT``, ``PUB``, ``HPUB``,
``MSG`` and ``HMSG`` by their byte counts, ``SUB``, ``UNSUB``, ``PING``, ``PONG``, ``+OK``,
``-ERR``), whatever the TCP reads cut them into. The client's bytes go to the server
unchanged, after the parser has noted the reply subjects of requests to watched subjects.
The server's frames go to the client as they came, except the replies chosen to be lost
and ``INFO``, whose ``connect_urls`` are removed, so that a client never discovers the
server's own address and leaves the proxy (a clustered server advertises its peers there).
A server that requires TLS cannot be proxied this way (the proxy would see ciphertext): it
is refused with an error, never passed through.

Kinds of requests (:data:`KINDS`): ``kv`` (puts and deletes, ``$KV.<bucket>.>``), ``js_api``
(``$JS.API.>``: purges, reads, stream and consumer calls) and ``js_ack`` (``$JS.ACK.>``, acks
sent with a reply, as ``AckSync`` does). Every kind is counted; only those given a rate lose
replies, and only while the proxy is :attr:`NatsProxy.armed`.

>>> with running_proxy("nats://127.0.0.1:4222", rates={"kv": 0.15}, seed=7) as proxy:   # doctest: +SKIP
...     proxy.armed = True                # connect clients to proxy.url (only that server)
...     ...
...     print(proxy.dropped)              # Counter({'kv': 3})
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

KINDS: dict[str, bytes] = {"kv": b"$KV.", "js_api": b"$JS.API.", "js_ack": b"$JS.ACK."}
"""Kind of request -> the subject prefix that makes it one. A pull request
(``$JS.API.CONSUMER.MSG.NEXT``) is a ``js_api`` request too: its first delivered message is
its reply, so losing it is a lost delivery (redelivered after the consumer's ack wait)."""

MAX_CONTROL_LINE = 1 << 20
"""Longer than any control line a server or client sends (an INFO with many URLs is a few KB)."""

_WITH_PAYLOAD = {b"MSG": (3, 4), b"HMSG": (4, 5), b"PUB": (2, 3), b"HPUB": (3, 4)}
"""Operation -> the argument counts it may have (without and with a reply subject)."""
_LINE_ONLY = {b"INFO", b"CONNECT", b"PING", b"PONG", b"+OK", b"-ERR", b"SUB", b"UNSUB"}


class ProtocolError(ValueError):
    """Bytes that are not the NATS client protocol (or a frame whose sizes do not add up)."""


@dataclass(frozen=True)
class Frame:
    """One protocol frame, with the exact bytes it was read from (``raw``, CRLFs included)."""

    op: str
    """Upper case: ``MSG``, ``HMSG``, ``PUB``, ``HPUB``, ``INFO``, ``PING``, ``+OK``, ..."""
    raw: bytes
    args: tuple[bytes, ...] = ()
    """The control line's arguments after the operation (for ``INFO``/``CONNECT``/``-ERR``: the rest of the line)."""
    subject: bytes = b""
    reply: bytes = b""
    """The reply subject of a ``MSG``/``HMSG``/``PUB``/``HPUB`` (empty if none)."""
    headers: bytes | None = None
    """The header block of ``HMSG``/``HPUB`` (``NATS/1.0...\\r\\n\\r\\n``)."""
    payload: bytes = b""


class FrameParser:
    """Incremental parser: :meth:`feed` any slice of the stream, get back the frames it completed.

    The same grammar serves both directions (a server sends ``MSG``/``HMSG``, a client
    ``PUB``/``HPUB``); operations are case-insensitive, arguments are separated by spaces or
    tabs, and a payload must be followed by CRLF exactly where its byte count says.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        pos = 0
        buf = self._buf
        while True:
            end = buf.find(b"\r\n", pos)
            if end < 0:
                if len(buf) - pos > MAX_CONTROL_LINE:
                    raise ProtocolError(f"no CRLF in {len(buf) - pos} bytes: {bytes(buf[pos:pos + 60])!r}...")
                break
            line = bytes(buf[pos:end])
            if not line.strip():
                raise ProtocolError(f"an empty control line at byte {pos}")
            op, *tail = line.split(None, 1)  # spaces or tabs
            rest = tail[0] if tail else b""
            op_name = op.upper()
            if op_name in _WITH_PAYLOAD:
                args = tuple(rest.split())
                counts = _WITH_PAYLOAD[op_name]
                if len(args) not in counts:
                    raise ProtocolError(f"{op_name.decode()} with {len(args)} arguments: {line[:200]!r}")
                with_reply = len(args) == counts[1]
                try:
                    if op_name in (b"HMSG", b"HPUB"):
                        hdr_len, total = int(args[-2]), int(args[-1])
                    else:
                        hdr_len, total = 0, int(args[-1])
                except ValueError:
                    raise ProtocolError(f"byte counts that are not numbers: {line[:200]!r}") from None
                if not 0 <= hdr_len <= total:
                    raise ProtocolError(f"header bytes {hdr_len} outside 0..{total}: {line[:200]!r}")
                body = end + 2
                if len(buf) < body + total + 2:
                    break  # the payload is still on its way
                if buf[body + total:body + total + 2] != b"\r\n":
                    raise ProtocolError(f"{total} payload bytes not followed by CRLF: {line[:200]!r}")
                block = bytes(buf[body:body + total])
                is_msg = op_name in (b"MSG", b"HMSG")
                reply_at = 2 if is_msg else 1
                frames.append(Frame(
                    op=op_name.decode(), raw=bytes(buf[pos:body + total + 2]), args=args, subject=args[0],
                    reply=args[reply_at] if with_reply else b"",
                    headers=block[:hdr_len] if op_name in (b"HMSG", b"HPUB") else None, payload=block[hdr_len:]))
                pos = body + total + 2
            elif op_name in _LINE_ONLY:
                frames.append(Frame(op=op_name.decode(), raw=bytes(buf[pos:end + 2]),
                                    args=(rest,) if op_name in (b"INFO", b"CONNECT", b"-ERR") else tuple(rest.split())))
                pos = end + 2
            else:
                raise ProtocolError(f"unknown operation {op[:20]!r} in {line[:200]!r}")
        del buf[:pos]
        return frames


def kind_of(subject: bytes, kv_buckets: frozenset[bytes] | None = None) -> str | None:
    """The kind of request (:data:`KINDS`) a subject makes, or None; ``kv_buckets`` limits ``kv``."""
    for kind, prefix in KINDS.items():
        if subject.startswith(prefix):
            if kind == "kv" and kv_buckets is not None and subject[len(prefix):].split(b".", 1)[0] not in kv_buckets:
                return None
            return kind
    return None


def _what(subject: bytes, kind: str) -> str:
    """A request's subject without its key or names: what :attr:`NatsProxy.subjects` counts."""
    tokens = subject.decode(errors="replace").split(".")
    if kind == "js_api":
        # $JS.API.CONSUMER.INFO.<stream>.<consumer>, $JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>
        return ".".join(tokens[:5] if tokens[3:5] == ["MSG", "NEXT"] or tokens[2:4] == ["DIRECT", "GET"]
                        else tokens[:4])
    return ".".join(tokens[:3])


def without_connect_urls(frame: Frame) -> bytes:
    """The INFO frame's bytes with ``connect_urls`` and ``ws_connect_urls`` removed."""
    info = json.loads(frame.args[0])
    if info.get("tls_required"):
        raise ProtocolError("the server requires TLS: the proxy reads the protocol in clear text and cannot "
                            "carry it (use a server without TLS for lost-reply tests)")
    if "connect_urls" not in info and "ws_connect_urls" not in info:
        return frame.raw
    info.pop("connect_urls", None)
    info.pop("ws_connect_urls", None)
    return b"INFO " + json.dumps(info, separators=(",", ":")).encode() + b"\r\n"


def _address(upstream: str | tuple[str, int]) -> tuple[str, int]:
    if isinstance(upstream, tuple):
        return upstream
    parts = urlsplit(upstream if "://" in upstream else "nats://" + upstream)
    if parts.scheme not in ("nats", ""):
        raise ValueError(f"upstream {upstream!r}: only nats:// (no TLS) can be proxied")
    return parts.hostname or "127.0.0.1", parts.port or 4222


class NatsProxy:
    """Listens on ``host:port`` (0: a free one) and forwards every connection to ``upstream``.

    :param upstream: ``nats://host:port`` or ``(host, port)`` of the real server.
    :param rates: kind (:data:`KINDS`) -> the share of its replies to lose, while :attr:`armed`.
    :param seed: seeds the one random generator that picks the lost replies.
    :param kv_buckets: only these buckets' requests are of kind ``kv`` (default: every bucket).
    """

    PENDING_CAP = 100_000
    """Reply subjects remembered per connection (a request whose reply never comes is forgotten)."""

    def __init__(self, upstream: str | tuple[str, int], rates: Mapping[str, float] | None = None, seed: int = 0,
                 kv_buckets: list[str] | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        unknown = set(rates or ()) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown kinds {sorted(unknown)}; the kinds are {sorted(KINDS)}")
        self.upstream = _address(upstream)
        self.rates = dict(rates or {})
        self.rng = random.Random(seed)
        self.kv_buckets = frozenset(b.encode() for b in kv_buckets) if kv_buckets is not None else None
        self.host, self.port = host, port
        self.armed = False
        """Replies are lost only while this is true (set it from any thread)."""
        self.requests: Counter[str] = Counter()
        """Requests seen with a reply subject, by kind (armed or not)."""
        self.subjects: Counter[str] = Counter()
        """The same by what they asked: ``$KV.<bucket>.<first key token>``, ``$JS.API.CONSUMER.INFO``,
        ``$JS.ACK.<stream>``."""
        self.dropped: Counter[str] = Counter()
        """Replies lost, by kind."""
        self.lost: list[tuple[str, str]] = []
        """``(kind, request subject)`` of each reply lost, in order (the first 10,000)."""
        self.connections = 0
        """Client connections accepted so far."""
        self.errors: list[str] = []
        """Protocol errors and refused servers; each closed the connection it happened on."""
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._pumps: set[asyncio.Future[None]] = set()

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    async def start(self) -> NatsProxy:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for pump in list(self._pumps):  # each connection's handler then closes both ends and returns
            pump.cancel()
        while self._handlers:
            await asyncio.wait(list(self._handlers))
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> NatsProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def counts(self) -> dict[str, dict[str, int]]:
        """``{"requests": {...}, "dropped": {...}, "subjects": {...}}``: a copy, safe to take from another thread."""
        return {"requests": dict(self.requests), "dropped": dict(self.dropped), "subjects": dict(self.subjects)}

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        self._writers.add(client_w)
        self.connections += 1
        server_w: asyncio.StreamWriter | None = None
        try:
            try:
                server_r, server_w = await asyncio.open_connection(*self.upstream)
            except OSError:  # the server is down (killed by a fault test): the client retries
                return
            self._writers.add(server_w)
            pending: OrderedDict[bytes, str] = OrderedDict()
            pumps = [asyncio.ensure_future(self._from_client(client_r, server_w, pending)),
                     asyncio.ensure_future(self._from_server(server_r, client_w, pending))]
            self._pumps.update(pumps)
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)  # a reset connection is an end like EOF
            self._pumps.difference_update(pumps)
        finally:
            for writer in (client_w, server_w):
                if writer is not None:
                    self._writers.discard(writer)
                    writer.close()
            self._handlers.discard(handler)

    async def _from_client(self, reader: asyncio.StreamReader, server: asyncio.StreamWriter,
                           pending: OrderedDict[bytes, str]) -> None:
        parser = FrameParser()
        while data := await reader.read(65536):
            try:
                frames = parser.feed(data)
            except ProtocolError as err:
                self.errors.append(f"client: {err}")
                return
            for frame in frames:  # noted before the server can answer
                if frame.reply and frame.op in ("PUB", "HPUB"):
                    kind = kind_of(frame.subject, self.kv_buckets)
                    if kind is not None:
                        self.requests[kind] += 1
                        self.subjects[_what(frame.subject, kind)] += 1
                        pending[frame.reply] = kind
                        if len(pending) > self.PENDING_CAP:
                            pending.popitem(last=False)
            server.write(data)
            await server.drain()

    async def _from_server(self, reader: asyncio.StreamReader, client: asyncio.StreamWriter,
                           pending: OrderedDict[bytes, str]) -> None:
        parser = FrameParser()
        while data := await reader.read(65536):
            try:
                out = [self._pass(frame, pending) for frame in parser.feed(data)]
            except ProtocolError as err:
                self.errors.append(f"server: {err}")
                return
            client.write(b"".join(out))
            await client.drain()

    def _pass(self, frame: Frame, pending: OrderedDict[bytes, str]) -> bytes:
        """The bytes to send the client for this frame: none for a reply chosen to be lost."""
        if frame.op == "INFO":
            return without_connect_urls(frame)
        if frame.op in ("MSG", "HMSG"):
            kind = pending.pop(frame.subject, None)
            rate = self.rates.get(kind, 0.0) if kind is not None and self.armed else 0.0
            # one draw per reply of an armed kind only: the n-th such reply is lost or not by the
            # seed alone, however other replies interleave with it
            if rate > 0 and self.rng.random() < rate:
                self.dropped[kind] += 1
                if len(self.lost) < 10_000:
                    self.lost.append((kind, frame.subject.decode(errors="replace")))
                return b""
        return frame.raw


@contextlib.contextmanager
def running_proxy(upstream: str | tuple[str, int], **kwargs: object) -> Iterator[NatsProxy]:
    """A :class:`NatsProxy` on an event loop of its own in a daemon thread, for sync code and
    for clients in other processes (an Airflow triggerer); stopped on exit."""
    proxy = NatsProxy(upstream, **kwargs)  # type: ignore[arg-type]
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(proxy.start())
        except BaseException as err:
            failed.append(err)
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(proxy.stop())
        loop.close()

    thread = threading.Thread(target=run, name=f"nats-proxy-{proxy.upstream[1]}", daemon=True)
    thread.start()
    ready.wait(30)
    if failed:
        raise failed[0]
    try:
        yield proxy
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
