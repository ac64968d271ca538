"""Durable pull consumers with explicit ack: one per (sensor, trigger, dependency), as Argo."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.js import JetStreamContext, api

from airflow_argo_events.core.bus.pipeline import Pipeline
from airflow_argo_events.core.bus.raw import RawMsg, ack_fields, route, status_of, unroute
from airflow_argo_events.core.events import Event, decode_keeping
from airflow_argo_events.core.exceptions import EventBusError, EventDecodeError

log = logging.getLogger("airflow_argo_events.bus")

DeliverFrom = Literal["new", "all"] | datetime
MAX_CONSUMERS_REACHED = 10026
"""JetStream's error code for "maximum consumers limit reached"."""
HEARTBEAT = 1.0
"""Seconds between the server's idle heartbeats on a long pull request (one of 4 s or more)
of a subscription that asks for them (``heartbeat=``; ``EventBus.subscribe`` does). A request
the server forgot (the consumer's leader died with it, in a cluster) shows as two missed
heartbeats and is asked again, instead of waiting out its expiry (10 s idle)."""
SUSPECT_GRACE = 2.0
"""Seconds a pull request may stay silent after ``suspect()`` (a message was published on its
subject) before it counts as forgotten by the server: the heartbeat-free check of the
triggerer's shared wait, where 10,000 heartbeats a second would cost more than they save."""


def durable_name(*parts: str) -> str:
    """Argo's durable naming: ``group-<hash>`` of the sensor, trigger and dependency."""
    digest = hashlib.sha256("-".join(parts).encode()).hexdigest()[:20]
    return f"group-{digest}"


@dataclass(slots=True)
class Delivery:
    """One message: the decoded event, or ``error`` if it was not a CloudEvent.

    The JetStream metadata the live path reads several times per message (sequences,
    delivery count, consumer) is read once here.
    """

    msg: Msg
    event: Event | None
    error: str | None = None
    stream_seq: int = field(init=False)
    num_delivered: int = field(init=False)
    consumer_seq: int = field(init=False)
    """The consumer's delivery count at this delivery (redeliveries count too): a gap means
    a delivery that went elsewhere or was lost on the way."""
    consumer: str = field(init=False)
    """The durable consumer that delivered it."""
    received: float = field(default_factory=time.monotonic)
    """When it arrived (``time.monotonic()``): a copy held past ack_wait may have been sent
    again, and handled, elsewhere."""
    raw: bytes | None = None
    """The payload, when it reads back as ``event`` exactly (``decode_keeping``): stored as it
    came, not serialized again."""

    def __post_init__(self) -> None:
        fields = getattr(self.msg, "js_fields", None) or ack_fields(self.msg.reply or "")
        if fields is None:  # not a JetStream delivery: nats-py's reader says why
            meta = self.msg.metadata
            fields = (meta.sequence.stream, meta.sequence.consumer, meta.num_delivered, meta.consumer or "")
        self.stream_seq, self.consumer_seq, self.num_delivered, self.consumer = fields

    async def ack(self, wait: bool = True) -> None:
        """Ack; with ``wait`` (default) until the server recorded it, as Argo's AckSync.

        ``wait=False`` sends the ack without waiting: faster, and safe wherever a lost ack
        only causes a redelivery that de-duplication absorbs.
        """
        await _bus(self.msg.ack_sync() if wait else self.msg.ack(), "ack")

    async def nak(self, delay: float | None = None) -> None:
        await _bus(self.msg.nak(delay=delay), "nak")

    async def in_progress(self) -> None:
        await _bus(self.msg.in_progress(), "in-progress")

    async def term(self) -> None:
        await _bus(self.msg.term(), "term")


_NATS_ERRORS = (nats.errors.Error, nats.js.errors.APIError, ConnectionError, asyncio.TimeoutError, TimeoutError)


async def _bus(aw: Awaitable[object], what: str) -> None:
    """Await a NATS call; client errors become EventBusError (translated at the bus seam)."""
    try:
        await aw
    except _NATS_ERRORS as err:
        raise EventBusError(f"{what} failed: {type(err).__name__}: {err}".rstrip(": ")) from err


class Subscription:
    """A durable pull consumer on one subject; iterate it for Deliveries.

    ``deliver`` chooses where a *new* durable starts: ``"new"`` (Argo's DeliverNew),
    ``"all"``, or a datetime (DeliverByStartTime). An existing durable resumes where it
    stopped whatever ``deliver`` says. ``prefetch`` keeps the next batch on its way while
    the caller works on this one (the live sensor's loop).
    """

    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        subject: str,
        durable: str,
        deliver: DeliverFrom = "new",
        ack_wait: float = 30.0,
        max_ack_pending: int = 1000,
        batch: int = 64,
        nc: Client | None = None,
        prefetch: bool = False,
        heartbeat: float | None = None,
    ) -> None:
        self._js = js
        self.stream = stream
        self.subject = subject
        self.durable = durable
        self._deliver = deliver
        self._ack_wait = ack_wait
        self._max_ack_pending = max_ack_pending
        self._batch = batch
        # the inbox lives on the JetStream context's connection (EventBus passes it)
        self._nc: Client = nc if nc is not None else js._nc
        self._max_ask = 0
        self._ahead = 2 if prefetch else 1  # batches requested or buffered (see "How a fetch works")
        self._inbox = ""
        self._isub: NatsSubscription | None = None
        self._buf: deque[tuple[Msg, float]] = deque()  # delivered, not fetched yet: (message, when it came)
        self._asked: deque[list[float]] = deque()  # open pull requests, oldest first: [still due, expires at]
        self._arrived = asyncio.Event()
        self._failed: str | None = None  # a status that ends the consumer (deleted...): raised by fetch
        self._epoch = 0
        self._heartbeat = heartbeat
        self._heard = 0.0  # when the inbox last heard from the server (a message or a status)
        self._hb_asked = 0.0  # when the newest request with a heartbeat was sent (0: none open)
        self._suspect_at = 0.0  # when suspect() was told of a message none has come for yet
        self._hb_misses = 0  # requests given up as lost in a row (each waits twice as long)
        self.lost_requests = 0
        """Pull requests given up as lost (no heartbeat) and asked again (for tests and status)."""
        self.heartbeats = 0
        """Idle heartbeats the server sent on our long pull requests."""
        self.foreign = 0
        """Messages on our inbox that were not JetStream deliveries (ignored)."""

    def _reconnects(self) -> int:
        return int(self._nc.stats.get("reconnects", 0))

    def _config(self) -> api.ConsumerConfig:
        cfg = api.ConsumerConfig(
            durable_name=self.durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self._ack_wait,
            max_ack_pending=self._max_ack_pending,
            filter_subject=self.subject,
        )
        if isinstance(self._deliver, datetime):
            cfg.deliver_policy = api.DeliverPolicy.BY_START_TIME
            cfg.opt_start_time = self._deliver.isoformat().replace("+00:00", "Z")
        elif self._deliver == "all":
            cfg.deliver_policy = api.DeliverPolicy.ALL
        else:
            cfg.deliver_policy = api.DeliverPolicy.NEW
        return cfg

    async def start(self) -> Subscription:
        """Create the durable consumer if it is missing (an existing one keeps its config and
        position) and subscribe to the inbox its messages come to."""
        try:
            try:
                info = await self._js.consumer_info(self.stream, self.durable)
            except nats.js.errors.NotFoundError:
                info = await self._js.add_consumer(self.stream, config=self._config())
            # a pull request for more than max_ack_pending is refused (409): ask within it
            self._max_ask = (info.config.max_ack_pending or 0) if info.config else 0
            self._inbox = self._nc.new_inbox()
            self._isub = await self._nc.subscribe(self._inbox)
            route(self._nc, self._isub, self._on_raw)
        except _NATS_ERRORS as err:
            if getattr(err, "err_code", None) == MAX_CONSUMERS_REACHED:
                raise EventBusError(
                    f"consumer {self.durable} on {self.subject}: stream {self.stream} allows no more consumers "
                    "(NATS 2.15+ allows 1,000 per stream unless its max_consumers is set; every sensor dependency "
                    f"is one): raise it, e.g. 'nats stream edit {self.stream} --max-consumers 20000'") from err
            raise EventBusError(f"consumer {self.durable} on {self.subject}: {type(err).__name__}: {err}") from err
        self._epoch = self._reconnects()
        return self

    # How a fetch works. A pull request asks the server for up to n messages and stays open
    # until n were sent or it expires; they arrive on our inbox whenever the server has them,
    # into ``_buf``. ``fetch`` returns as soon as one is there (with whatever else came, up
    # to ``batch``), so a trickle never waits for a full batch. Without ``prefetch`` nothing
    # is asked for between two fetches (a request may still be open, as with nats-py: what it
    # brings waits in ``_buf`` for the next fetch). With ``prefetch`` it keeps a second batch
    # requested, which the server sends while the caller processes this one (never past the
    # consumer's max_ack_pending; messages that wait longer than ack_wait come twice, and the
    # sensor's redelivery check absorbs the second copy). Requests are tracked oldest first, as the
    # server fills them: a message counts against the oldest, an end-of-request status (408
    # expired, 409 ...) closes the oldest, and one past its expiry or a reconnect forgets
    # them all (asking twice is harmless; never asking is not).

    def _on_raw(self, subject: bytes, reply: bytes, data: bytes, block: bytes | None) -> None:
        """Our inbox's messages, as the parser reads them (``raw.py``): deliveries go to
        ``_buf``; a status (heartbeat, request expired, consumer deleted...) is handled here."""
        self._heard = now = time.monotonic()
        self._hb_misses = 0
        self._suspect_at = 0.0
        status = status_of(block)
        if status is not None and reply and not reply.startswith(b"$JS.ACK."):
            status = None  # the server's statuses come without a reply: this one is no status (foreign)
        if status is None or reply.startswith(b"$JS.ACK."):
            text = reply.decode("utf-8", "replace")
            fields = ack_fields(text)
            if fields is None:  # not a JetStream delivery: someone published to our inbox
                self.foreign += 1
                if self.foreign == 1:
                    log.warning("consumer %s: a message that is not a JetStream delivery came to its inbox "
                                "(reply %r); ignored, as are any more", self.durable, text[:80])
                return
            self._buf.append((RawMsg(self._nc, subject.decode("utf-8", "replace"), text, data, block, fields), now))
            if self._asked:
                left = self._asked[0][0] - 1
                if left > 0:
                    self._asked[0][0] = left
                else:
                    self._asked.popleft()
        elif status[0] == "100":  # an idle heartbeat: the request is alive (``_heard``), nothing else to do
            self.heartbeats += 1
            return
        else:
            code, description = status
            if self._asked:
                self._asked.popleft()
            if code == "409" and ("Deleted" in description or "push" in description):
                self._failed = f"{code} {description}"
            elif code not in ("404", "408", "409"):
                self._failed = f"{code} {description}".strip()
        self._arrived.set()

    def _ask(self, want: int, timeout: float) -> int:
        """How many more to request so that buffered + requested reaches one batch (two with
        ``prefetch``); 0 when at least one batch is still due."""
        now = time.monotonic()
        epoch = self._reconnects()
        if epoch != self._epoch:  # requests sent before a reconnect may be gone with it
            self._epoch = epoch
            self._asked.clear()
        while self._asked and self._asked[0][1] <= now:
            self._asked.popleft()
        due = sum(n for n, _ in self._asked) + len(self._buf)
        if due >= want:
            return 0
        n = self._ahead * want - due
        if self._max_ask > 0:
            n = min(n, self._max_ask)
        self._asked.append([n, now + timeout])
        return n

    async def _pull(self, want: int, timeout: float) -> None:
        """Ask for what is missing to reach ``want`` (``_ask``) and send the request. A request
        that could not be sent is not counted as asked: counted, it stopped every fetch from
        asking again until its expiry (up to ``idle_poll``), with messages waiting."""
        n = self._ask(want, timeout)
        if not n:
            return
        asked = self._asked[-1]
        try:
            await self._request(n, timeout)
        except BaseException:
            with contextlib.suppress(ValueError):  # an equal entry is the same request: either goes
                self._asked.remove(asked)
            raise

    async def _request(self, n: int, timeout: float) -> None:
        expires = max(int(timeout * 1e9) - 100_000, 1_000_000)
        hb = self._heartbeat
        if hb and timeout >= 4 * hb:
            req = b'{"batch":%d,"expires":%d,"idle_heartbeat":%d}' % (n, expires, int(hb * 1e9))
            self._hb_asked = time.monotonic()
        else:
            req = b'{"batch":%d,"expires":%d}' % (n, expires)
            self._hb_asked = 0.0
        await self._nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.durable}", req, reply=self._inbox)

    async def fetch(self, batch: int | None = None, timeout: float = 5.0) -> list[Delivery]:
        """Up to ``batch`` deliveries; an empty list when none arrived within ``timeout``."""
        if self._isub is None:
            raise EventBusError(f"consumer {self.durable}: fetch before start() or after unsubscribe()")
        want = batch or self._batch
        try:
            if not self._buf:
                self._check_failed()
                await self._pull(want, timeout)
                deadline = time.monotonic() + timeout
                while not self._buf:
                    self._arrived.clear()
                    now = time.monotonic()
                    left = deadline - now
                    if left <= 0:
                        return []
                    lost_at = self._lost_at()
                    try:
                        await asyncio.wait_for(self._arrived.wait(),
                                               left if lost_at is None else min(left, max(lost_at - now, 0.05)))
                    except (asyncio.TimeoutError, TimeoutError):
                        now = time.monotonic()
                        if now >= deadline:
                            return []
                        lost_at = self._lost_at()  # heartbeats heard meanwhile move it on
                        if lost_at is not None and now >= lost_at:
                            self._forget_lost_requests()
                            await self._pull(want, deadline - now)
                        continue
                    self._check_failed()
                    if not self._buf and not self._asked:  # the request ended empty: ask again
                        await self._pull(want, max(deadline - time.monotonic(), 0.01))
            buf = self._buf
            take = [buf.popleft() for _ in range(min(want, len(buf)))]
        except (nats.errors.Error, nats.js.errors.APIError, ConnectionError) as err:
            raise EventBusError(f"fetch from {self.subject} ({self.durable}): {type(err).__name__}: {err}") from err
        if self._ahead > 1:  # prefetch: the next batch comes while the caller works on this one
            # A failed request here must not cost the batch in hand (it would come back only
            # after ack_wait): the next fetch asks again, and meets the error itself.
            with contextlib.suppress(nats.errors.Error, nats.js.errors.APIError, ConnectionError):
                await self._pull(want, timeout)
        return [to_delivery(m, at) for m, at in take]

    def suspect(self) -> None:
        """A message was published on this subscription's subject: if an open pull request
        stays silent for SUSPECT_GRACE seconds after this, the server forgot it; ask again."""
        if self._asked and not self._suspect_at:
            self._suspect_at = time.monotonic()
            self._arrived.set()  # a waiting fetch looks at its deadline again

    def _lost_at(self) -> float | None:
        """When the open requests count as lost if the server stays silent (None: no sign to
        go by): two missed heartbeats, or SUSPECT_GRACE after ``suspect()``; doubled for each
        loss in a row, so a stalled server is not sent a new request every two seconds."""
        if not self._asked:
            return None
        backoff = 2 ** min(self._hb_misses, 4)
        at = None
        if self._hb_asked and self._heartbeat:
            at = max(self._heard, self._hb_asked) + 2 * self._heartbeat * backoff + 0.5
        if self._suspect_at:
            suspect = self._suspect_at + SUSPECT_GRACE * backoff
            at = suspect if at is None else min(at, suspect)
        return at

    def _forget_lost_requests(self) -> None:
        """No sign of life: the server no longer holds our requests (its consumer leader changed)."""
        self._asked.clear()
        self._hb_asked = 0.0
        self._suspect_at = 0.0
        self._hb_misses += 1
        self.lost_requests += 1

    def _check_failed(self) -> None:
        if self._failed is not None:
            why, self._failed = self._failed, None
            raise EventBusError(f"fetch from {self.subject} ({self.durable}): {why}")

    async def info(self) -> api.ConsumerInfo:
        """The server's view of this consumer (pending, ack pending, last delivery)."""
        try:
            return await self._js.consumer_info(self.stream, self.durable)
        except _NATS_ERRORS as err:
            raise EventBusError(f"consumer {self.durable}: {type(err).__name__}: {err}") from err

    async def __aiter__(self) -> AsyncIterator[Delivery]:
        while True:
            for d in await self.fetch():
                yield d

    async def unsubscribe(self) -> None:
        """Stop reading; the durable consumer stays on the server and keeps its position.
        Messages delivered but not fetched yet are given back (nak) for the next reader."""
        if self._isub is not None:
            isub, self._isub = self._isub, None
            self._asked.clear()
            unroute(self._nc, isub)
            try:
                await isub.unsubscribe()
            except (nats.errors.ConnectionClosedError, nats.errors.BadSubscriptionError):
                pass
            # Delivered to us but never handed out: give them back now rather than after ack_wait.
            left, self._buf = list(self._buf), deque()
            for msg, _ in left:
                with contextlib.suppress(*_NATS_ERRORS):
                    await msg.nak()

    async def delete(self) -> None:
        """Remove the durable consumer from the server."""
        await self.unsubscribe()
        try:
            await self._js.delete_consumer(self.stream, self.durable)
        except nats.js.errors.NotFoundError:
            pass


async def ack_many(deliveries: Sequence[Delivery], pipeline: Pipeline, timeout: float = 1.0) -> list[BaseException | None]:
    """Ack every delivery and wait until the server recorded each one, as ``AckSync`` does
    (the server answers each ack), sent and awaited together: None or the error per delivery."""
    return await (await send_acks(deliveries, pipeline, timeout))


async def send_acks(deliveries: Sequence[Delivery], pipeline: Pipeline,
                    timeout: float = 1.0) -> Coroutine[Any, Any, list[BaseException | None]]:
    """Send the acks of :func:`ack_many` now; the coroutine returned waits for the server's
    answers (None or the error per delivery)."""
    replies = await pipeline.submit([(d.msg.reply, b"", None) for d in deliveries], timeout)

    async def confirmed() -> list[BaseException | None]:
        return [r if isinstance(r, BaseException) else None for r in await replies]

    return confirmed()


async def send_acks_unconfirmed(deliveries: Sequence[Delivery], pipeline: Pipeline) -> BaseException | None:
    """Ack every delivery without asking for the server's answers (as ``Msg.ack``): for a
    reader that learns what is settled from its consumer's ack floor instead. None, or the
    error of the first ack that could not be sent (it and the rest are then redelivered)."""
    return await pipeline.send_only([(d.msg.reply, b"", None) for d in deliveries])


def to_delivery(msg: Msg, received: float | None = None) -> Delivery:
    at = time.monotonic() if received is None else received
    # binary mode needs a ce-id header: a block without the text has none, and stays unparsed
    headers = None if isinstance(msg, RawMsg) and not msg.may_have_header(b"ce-id") else msg.headers
    try:
        event, raw = decode_keeping(msg.data, headers)
        return Delivery(msg, event, received=at, raw=raw)
    except EventDecodeError as err:
        return Delivery(msg, None, str(err), received=at)
