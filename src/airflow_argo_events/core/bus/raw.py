"""Messages for our own inboxes, taken from nats-py's protocol parser as they are read.

nats-py hands every message it reads to ``Client._process_msg``, which parses the header
block into a dict, builds a ``Msg``, queues it for the subscription's task and wakes that
task to await the callback. The live sensor's two inboxes (pull deliveries, the pipeline's
replies) only append each message to a buffer, and that detour was a fair part of what
receiving one cost. A *routed* subscription skips it: its handler is called at once, in the
order the parser read the messages, with the raw subject, reply, payload and header block,
and builds a :class:`RawMsg`, whose headers are parsed only if someone reads them.

Everything else stays nats-py's: other subscriptions, reconnects (which send SUB again with
the same sid, so the route holds), connection stats. What this module relies on of nats-py's
insides (``Client._process_msg`` as the parser calls it, ``Subscription._id``, and for sends
``_send_command``, ``_flush_queue``, ``_flush_pending``, ``_max_payload``, the pending-size
counters) is what tests/unit/test_bus_raw.py and every live-path test exercise.

>>> sub = await nc.subscribe(inbox)                       # doctest: +SKIP
>>> route(nc, sub, lambda subject, reply, data, hdr: ...)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

log = logging.getLogger("airflow_argo_events.bus")

Handler = Callable[[bytes, bytes, bytes, "bytes | None"], None]
"""``(subject, reply, payload, header block or None)``; called synchronously, must not block."""

_HDR_LEN = len(b"NATS/1.0")
_SPACE = re.compile(r"\s")
_NOT_PARSED: Any = object()


def route(nc: Client, sub: NatsSubscription, handler: Handler) -> None:
    """Send ``sub``'s messages to ``handler`` instead of through nats-py's queue and task."""
    routes: dict[int, Handler] | None = getattr(nc, "_argo_routes", None)
    if routes is None:
        if not callable(getattr(type(nc), "_process_msg", None)) or not hasattr(sub, "_id"):
            # a nats-py release that reads messages differently: say so, rather than leave the
            # inbox's messages queued for a callback nobody set
            raise RuntimeError("this nats-py release has no Client._process_msg(sid, subject, reply, data, "
                               "headers) or Subscription._id; the routed inboxes of bus/raw.py need both "
                               "(nats-py 2.9-2.x have them)")
        routes = {}
        _install(nc, routes)
    routes[sub._id] = handler


def unroute(nc: Client, sub: NatsSubscription) -> None:
    routes = getattr(nc, "_argo_routes", None)
    if routes is not None:
        routes.pop(sub._id, None)


def _install(nc: Client, routes: dict[int, Handler]) -> None:
    original = nc._process_msg
    stats = nc.stats

    async def process_msg(sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        handler = routes.get(sid)
        if handler is None:
            await original(sid, subject, reply, data, headers)
            return
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        try:
            handler(subject, reply, data, headers)
        except Exception:  # a bug of ours must not reach the parser (it would drop the connection)
            log.exception("handling a message on %s failed; the message is dropped", subject[:80])

    nc._argo_routes = routes  # type: ignore[attr-defined]
    nc._process_msg = process_msg  # type: ignore[method-assign]


def status_of(block: bytes | None) -> tuple[str, str] | None:
    """The inline status of a header block (``NATS/1.0 408 Request Timeout``): its code and
    description, or None for a message without one (a status is three digits, as the
    server writes them: ``NATS/1.0 4`` or ``NATS/1.0 \r\n`` is none)."""
    if not block or block[8:9] != b" ":
        return None
    line = block[9:].split(b"\r\n", 1)[0]
    code, _, description = line.partition(b" ")
    if len(code) != 3 or not code.isdigit():
        return None
    return code.decode("ascii"), description.strip().decode("utf-8", "replace")


def parse_headers(block: bytes | None) -> dict[str, str] | None:
    """A header block read as nats-py reads it (``Client._process_headers``, without the
    optional ``fast_mail_parser``): ``Status`` and ``Description`` of an inline status, then
    the ``Name: Value`` lines, which win over those two. tests/unit/test_bus_raw.py checks it
    against nats-py on arbitrary blocks."""
    if not block:
        return None
    hdr: dict[str, str] | None = None
    rest = block[_HDR_LEN:]
    if rest[:1] == b" ":  # "NATS/1.0 503\r\n\r\n", "NATS/1.0 100 Idle Heartbeat\r\n...\r\n\r\n"
        line = block[_HDR_LEN + 1:]
        status, desc = line[:3], line[4:len(line) - 4]
        hdr = {}
        code = status.strip().decode("utf-8", "replace")
        if code.isdigit():
            hdr["Status"] = code
        rest = rest[rest.find(b"\r\n") + 2:]
        if desc:
            i = desc.find(b"\r\n")
            if i > 0:
                hdr["Description"] = desc[:i].decode("utf-8", "replace")
                hdr.update(_lines(desc[i + 2:]))
            else:
                hdr["Description"] = desc.decode("utf-8", "replace")
    if len(rest) <= 2:
        return hdr
    parsed = _lines(block[_HDR_LEN + 2:])
    if hdr:
        hdr.update(parsed)
    else:
        hdr = parsed
    return hdr or None


def _lines(raw: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in raw.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        try:
            key = name.strip().decode("ascii")
        except UnicodeDecodeError:
            continue
        if _SPACE.search(key):  # a header name is a token: no whitespace inside
            continue
        out[key] = value.strip().decode("utf-8", "replace")
    return out


class RawMsg(Msg):
    """A ``Msg`` built from a routed message: its header block is parsed when ``headers`` is
    first read (most readers never do), exactly as nats-py would have parsed it."""

    def __init__(self, client: Client, subject: str, reply: str, data: bytes, block: bytes | None,
                 ack: tuple[int, int, int, str] | None = None) -> None:  # not the dataclass __init__
        self.js_fields = ack
        """:func:`ack_fields` of ``reply``, when the receiver read them already."""
        self._client = client
        self.subject = subject
        self.reply = reply
        self.data = data
        self._block = block
        self._headers: dict[str, str] | None = _NOT_PARSED if block else None
        self._metadata = None
        self._ackd = False
        self._sid = None

    @property  # type: ignore[override]
    def headers(self) -> dict[str, str] | None:
        if self._headers is _NOT_PARSED:
            self._headers = parse_headers(self._block)
        return self._headers

    @headers.setter
    def headers(self, value: dict[str, str] | None) -> None:
        self._headers = value

    def may_have_header(self, lowered: bytes) -> bool:
        """False when no header name or value can contain ``lowered`` (ASCII, lower case),
        read off the raw block without parsing it."""
        if self._headers is _NOT_PARSED:
            return lowered in self._block.lower()  # type: ignore[union-attr]
        return self._headers is not None


def ack_fields(reply: str) -> tuple[int, int, int, str] | None:
    """``(stream sequence, consumer sequence, delivery count, consumer)`` of a JetStream
    delivery's ack subject, both layouts nats-py reads (``$JS.ACK.<stream>.<consumer>...``
    and the one with domain and account hash); None for anything else."""
    t = reply.split(".")
    n = len(t)
    if n < 9 or n == 10 or t[0] != "$JS" or t[1] != "ACK":  # 9 tokens, or 11 and more
        return None
    at = 2 if n == 9 else 4  # where the stream's name is
    try:  # every number must read, as nats-py's reader requires (the time and pending included)
        stream_seq, consumer_seq, delivered = int(t[at + 3]), int(t[at + 4]), int(t[at + 2])
        int(t[at + 5]), int(t[at + 6])
    except ValueError:
        return None
    return stream_seq, consumer_seq, delivered, t[at + 1]


# The send side. nats-py's ``publish`` validates, encodes and queues one message per call
# and wakes its flusher each time; the pipeline sends a whole batch, so it encodes each
# message with the same checks and hands the batch to the connection as one write.
_BAD_SUBJECT = re.compile(r"[ \t\r\n]")  # nats-py's: CR/LF would inject protocol commands
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_NEWLINES = str.maketrans({"\r": " ", "\n": " "})
_bad_subject = _BAD_SUBJECT.search
_BLOCKS: dict[tuple[tuple[str, str], ...], bytes] = {}


def encode_pub(nc: Client, subject: str, payload: bytes, reply: str = "",
               headers: dict[str, str] | None = None) -> bytes:
    """One PUB/HPUB command, checked as nats-py's ``publish`` checks it (subject and reply,
    header names, the server's max payload); raises the same nats-py errors."""
    if not subject or _bad_subject(subject) or (reply and _bad_subject(reply)):
        raise nats.errors.BadSubjectError
    if len(payload) > nc._max_payload:
        raise nats.errors.MaxPayloadError
    if headers is None:
        return b"PUB %b %b %d\r\n%b\r\n" % (subject.encode(), reply.encode(), len(payload), payload)
    hdr = _header_block(headers)
    if len(hdr) + len(payload) > nc._max_payload:
        # Stricter than nats-py, which checks the payload alone: the server counts the headers
        # too, and answers an oversized HPUB by closing the connection (every request in
        # flight lost with it). This one fails alone instead.
        raise nats.errors.MaxPayloadError
    return b"HPUB %b %b %d %d\r\n%b%b\r\n" % (subject.encode(), reply.encode(), len(hdr), len(hdr) + len(payload),
                                              hdr, payload)


def _header_block(headers: dict[str, str]) -> bytes:
    """``NATS/1.0`` and the headers, as nats-py writes them; the last few blocks are kept
    (a sensor writes the same one or two again and again: a create's, a delete marker's)."""
    items = tuple(headers.items())
    hdr = _BLOCKS.get(items)
    if hdr is not None:
        return hdr
    block = [b"NATS/1.0\r\n"]
    for k, v in items:
        name = k.strip()
        if not name:
            continue
        if not _HEADER_NAME.fullmatch(name):
            raise nats.errors.BadHeaderError(name)
        block.append(b"%b: %b\r\n" % (name.encode(), v.strip().translate(_NEWLINES).encode()))
    block.append(b"\r\n")
    hdr = b"".join(block)
    if len(_BLOCKS) >= 256:  # entries' expected revisions vary: keep the table small
        _BLOCKS.clear()
    _BLOCKS[items] = hdr
    return hdr


async def send_encoded(nc: Client, commands: list[bytes], payload_bytes: int) -> None:
    """Queue commands from :func:`encode_pub` on the connection as one write and wake its
    flusher, as ``publish`` does for one; raises what ``publish`` raises for a closed or
    draining connection, or a full reconnect buffer."""
    if not commands:
        return
    if nc.is_closed:
        raise nats.errors.ConnectionClosedError
    if nc.is_draining_pubs:
        raise nats.errors.ConnectionDrainingError
    data = commands[0] if len(commands) == 1 else b"".join(commands)
    if not nc.is_connected and (nc._max_pending_size <= 0
                                or len(data) + nc._pending_data_size > nc._max_pending_size):
        raise nats.errors.OutboundBufferLimitError
    nc.stats["out_msgs"] += len(commands)
    nc.stats["out_bytes"] += payload_bytes
    await nc._send_command(data)
    if nc._flush_queue is not None and nc._flush_queue.empty():
        await nc._flush_pending()
