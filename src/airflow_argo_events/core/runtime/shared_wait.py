"""Shared waiting: the sensors of one process wait for new events through one NATS subscription.

A triggerer may hold 10,000 ``SensorTrigger``\\ s. Each keeps its own durable pull consumer
per dependency: that consumer is the trigger's position on the stream, and the runtime acks a
message on it only after the trigger's state is stored. What each trigger no longer does is
keep a pull request waiting on the server, renewed every ``idle_poll`` seconds (10,000 idle
triggers made 1,000 expiring requests a second, each answered by a status message the client
parses). The waiting is shared; the consuming is not:

- One :class:`WaitHub` per NATS connection (so per event loop and settings: one per triggerer
  process) holds one core NATS subscription per event source its sensors listen to
  (``<stream>.<eventSourceName>.>``). A message published there only *rings*: the hub sets an
  ``asyncio.Event`` (the doorbell) of every subscription whose filter matches the subject. It
  never reads, keeps or acks a message for anybody.
- :class:`SharedWaitSubscription` is the runtime's :class:`Subscription` with another way to
  wait. While *cold* its ``fetch`` waits for the doorbell instead of a pull request, then pulls
  from its own durable consumer. Its first pull, and every pull for ``2 * ack_wait + 1`` seconds
  after one that returned messages, after a ring or after a reconnect, is *hot*: a long poll
  exactly as before, so a steady stream pays no extra round trip, a server slow to hand over
  an event it rang for is waited for, and a redelivery of an unacked message is fetched in time.

Why no guarantee is weakened:

1. Messages reach a sensor only through its own consumer, acked there by its own runtime after
   its own state is stored. A slow or cancelled trigger neither holds back nor loses another's
   messages; a trigger cancelled mid-batch leaves its unacked messages to be redelivered to its
   consumer; a trigger Airflow moves to another triggerer, or that restarts after a crash,
   resumes from its consumer's position. The hub keeps nothing a crash could lose.
2. No wake-up is lost: the doorbell is a level, cleared *before* each pull, so a message arriving
   during a pull rings again. The hub's interest is confirmed by the server (flush) before a
   subscription's first pull returns, and that first pull is hot, so whatever was stored before
   is fetched then; a pull that reports more pending on the consumer (a backlog) rings its own
   doorbell, so a backlog is read to the end even when back-pressure outlasts the hot window.
3. What a doorbell cannot see only waits longer, it is never lost (it stays on the consumer):
   after a reconnect every subscription rings (events published while the connection was down)
   and long-polls for the hot window (messages in flight when it dropped come back after
   ``ack_wait``), and a cold subscription still pulls once every ``SAFETY_POLL`` seconds
   (messages that enter the stream without a publish on its subject, from a mirror or a
   source stream).
4. A hot pull the server forgot (its consumer's leader died with it, in a cluster) would wait
   out its expiry: a doorbell that rings while the pull stays silent for ``SUSPECT_GRACE``
   seconds makes the subscription ask again (``Subscription.suspect``). The live sensor of
   ``sensor run`` asks for idle heartbeats instead; 10,000 triggers cannot afford them.

Costs: an event reaches the process twice (the doorbell copy and the pull); the first event
after a quiet spell waits one more round trip. ``ARGO_EVENTS_SHARED_WAIT=0`` turns the shared
wait off (every subscription long-polls its own consumer), e.g. for a stream fed by mirroring.

Starting 10,000 sensors at once would also block the event loop for seconds (parsing) and send
tens of thousands of stream, consumer and KV requests to the JetStream API together, which times
them out. :class:`SensorBus` checks the stream once per process (not once per sensor), and
:func:`start_slot` lets a few sensors start at a time.

>>> release = await start_slot()                               # doctest: +SKIP
>>> async with SensorBus(settings, stream) as bus:            # doctest: +SKIP
...     runtime = SensorRuntime(sensor, bus, execute)
...     bus.release_after(len(runtime.engine.listens_to()), release)
...     await runtime.start()
...     await runtime.run(stop)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.js import JetStreamContext

from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings
from airflow_argo_events.core.bus.consumer import DeliverFrom, Delivery, Subscription
from airflow_argo_events.core.bus.kv import translated
from airflow_argo_events.core.bus.stream import ensure_stream
from airflow_argo_events.core.exceptions import EventBusError

log = logging.getLogger(__name__)

ENV = "ARGO_EVENTS_SHARED_WAIT"
SAFETY_POLL = 300.0
"""Seconds between two pulls of a cold subscription that heard no doorbell (with jitter). Each
costs a pull request and its expiry on both sides: at 60 s, 10,000 idle triggers spent 11% of
a core on them (and the server as much); redeliveries after an outage are covered otherwise
(a reconnect makes every subscription hot), so this is only a last resort."""
BELL_PULL = 2.0
"""Seconds the safety pull of a cold subscription waits (nothing rang: most likely nothing is there)."""
HOT_MIN = 5.0
"""Seconds a subscription long-polls after it started or last received, at least (else 2 * ack_wait + 1)."""
START_SLOTS = 32
START_HOLD = 30.0
"""At most START_SLOTS sensors start together; a slot frees itself after START_HOLD seconds (a
start that failed, or hangs on an unreachable server, holds nobody up for long)."""
STREAM_CHECK_TTL = 60.0
"""Seconds a successful stream check is reused by the next sensor starting in the process."""
RECONNECT_CHECK = 1.0


def enabled() -> bool:
    """Shared waiting is on unless ``ARGO_EVENTS_SHARED_WAIT`` is 0/false/no/off."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` one or more."""
    want, got = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(got) > i
        if i >= len(got) or (token != "*" and token != got[i]):
            return False
    return len(got) == len(want)


def group_subject(pattern: str) -> str:
    """The hub subscription covering ``pattern``: ``<stream>.<source>.>``, or ``<stream>.>``
    when the event source is a wildcard (one subscription per event source keeps the server
    filtering, while a thousand sensors on one source share it)."""
    tokens = pattern.split(".")
    if len(tokens) >= 3 and not {"*", ">"} & set(tokens[:2]):
        return f"{tokens[0]}.{tokens[1]}.>"
    return f"{tokens[0]}.>"


class Doorbell:
    """A level a hub sets and a subscription clears; waiting on it costs one timer, no task.
    ``on_ring`` hears every ring (the subscription's check that its open pull is still held)."""

    __slots__ = ("rang", "_waiter", "_on_ring")

    def __init__(self, on_ring: Callable[[], None] | None = None) -> None:
        self.rang = False
        self._waiter: asyncio.Future[bool] | None = None
        self._on_ring = on_ring

    def ring(self) -> None:
        self.rang = True
        if self._on_ring is not None:
            self._on_ring()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    async def wait(self, timeout: float) -> bool:
        """True once rung, False after ``timeout`` seconds without."""
        if self.rang:
            return True
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(max(0.0, timeout), _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        return self.rang


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


@dataclass(eq=False)
class _Group:
    """One hub subscription and the doorbells it rings."""

    subject: str
    ready: asyncio.Future[None] | None = None
    sub: NatsSubscription | None = None
    exact: dict[str, set[Doorbell]] = field(default_factory=dict)
    wild: dict[str, set[Doorbell]] = field(default_factory=dict)
    members: int = 0

    def add(self, pattern: str, bell: Doorbell) -> None:
        where = self.wild if ("*" in pattern or ">" in pattern) else self.exact
        bells = where.setdefault(pattern, set())
        if bell not in bells:
            bells.add(bell)
            self.members += 1

    def remove(self, pattern: str, bell: Doorbell) -> None:
        where = self.wild if ("*" in pattern or ">" in pattern) else self.exact
        bells = where.get(pattern)
        if bells is not None and bell in bells:
            bells.discard(bell)
            self.members -= 1
            if not bells:
                del where[pattern]

    def ring(self, subject: str) -> None:
        for bell in self.exact.get(subject, ()):
            bell.ring()
        for pattern, bells in self.wild.items():
            if subject_matches(pattern, subject):
                for bell in bells:
                    bell.ring()

    def ring_all(self) -> None:
        for bells in (*self.exact.values(), *self.wild.values()):
            for bell in bells:
                bell.ring()


_HUBS: weakref.WeakKeyDictionary[Client, WaitHub] = weakref.WeakKeyDictionary()
_NATS_ERRORS = (nats.errors.Error, asyncio.TimeoutError, TimeoutError, ConnectionError)


def _quiet(fut: asyncio.Future[Any]) -> None:
    """Done callback: mark a shared future's exception as seen (its awaiters, if any, raise it)."""
    if not fut.cancelled():
        fut.exception()


_START_SLOTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = \
    weakref.WeakKeyDictionary()


async def start_slot() -> Callable[[], None]:
    """Wait for one of the event loop's START_SLOTS start slots; returns its release.

    Call it before a sensor's start (parsing, state, consumers) and the release once its
    consumers exist (:meth:`SensorBus.release_after`); a slot not released within START_HOLD
    seconds frees itself. Starting 10,000 sensors at once would block the event loop for seconds
    and flood the JetStream API until it times out.
    """
    loop = asyncio.get_running_loop()
    slots = _START_SLOTS.get(loop)
    if slots is None:
        slots = _START_SLOTS[loop] = asyncio.Semaphore(START_SLOTS)
    await slots.acquire()
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            timer.cancel()
            slots.release()

    timer = loop.call_later(START_HOLD, release)
    return release


class WaitHub:
    """The doorbells of one NATS connection (see the module docstring).

    >>> hub = WaitHub.of(bus.nc)                                   # doctest: +SKIP
    >>> await hub.join("default.shop.order", bell)                 # doctest: +SKIP
    """

    def __init__(self, nc: Client) -> None:
        self._nc = weakref.ref(nc)  # the hub lives as long as its connection, never longer
        self._groups: dict[str, _Group] = {}
        self._reconnects = nc.stats.get("reconnects", 0)
        self._watcher: asyncio.Task[None] | None = None
        self._streams: dict[StreamSettings, tuple[float, asyncio.Future[None]]] = {}
        self.rings = 0
        """Doorbell messages received (for tests and the benchmark)."""

    @classmethod
    def of(cls, nc: Client) -> WaitHub:
        """The hub of this connection, created on first use."""
        hub = _HUBS.get(nc)
        if hub is None:
            hub = _HUBS[nc] = cls(nc)
        return hub

    @property
    def nc(self) -> Client:
        nc = self._nc()
        if nc is None or nc.is_closed:
            raise EventBusError("the NATS connection of this process is closed")
        return nc

    @property
    def subscriptions(self) -> int:
        """Core NATS subscriptions the hub holds (one per event source in use)."""
        return len(self._groups)

    async def join(self, pattern: str, bell: Doorbell) -> None:
        """Ring ``bell`` for every message published on a subject ``pattern`` matches. Returns
        once the server has the hub's interest, so every later publish rings it."""
        key = group_subject(pattern)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(key)
            # A task of the hub's own: a joiner cancelled meanwhile does not cancel the others'.
            group.ready = asyncio.ensure_future(self._subscribe(group))
            group.ready.add_done_callback(_quiet)
        group.add(pattern, bell)  # before waiting: a message from now on rings it
        assert group.ready is not None
        try:
            await asyncio.shield(group.ready)
        except BaseException:
            self.leave(pattern, bell)
            raise
        self._watch_reconnects()

    async def _subscribe(self, group: _Group) -> None:
        try:
            nc = self.nc
            group.sub = await nc.subscribe(group.subject, cb=self._ringer(group))
            await nc.flush(timeout=10)
        except BaseException as err:
            self._drop(group)
            if isinstance(err, _NATS_ERRORS):
                raise EventBusError(f"subscribe to {group.subject}: {type(err).__name__}: {err}".rstrip(": ")) \
                    from err
            raise
        if group.members == 0:  # every joiner left while it subscribed
            self._drop(group)

    def leave(self, pattern: str, bell: Doorbell) -> None:
        """Stop ringing ``bell``; the last member of a subscription unsubscribes it."""
        group = self._groups.get(group_subject(pattern))
        if group is None:
            return
        group.remove(pattern, bell)
        if group.members == 0 and group.ready is not None and group.ready.done():
            self._drop(group)

    def _drop(self, group: _Group) -> None:
        if self._groups.get(group.subject) is group:
            del self._groups[group.subject]
        if group.sub is not None:
            sub, group.sub = group.sub, None
            asyncio.ensure_future(self._unsubscribe(sub)).add_done_callback(_quiet)
        if not self._groups and self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

    @staticmethod
    async def _unsubscribe(sub: NatsSubscription) -> None:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()

    def _ringer(self, group: _Group) -> Callable[[Msg], Awaitable[None]]:
        async def ring(msg: Msg) -> None:
            self.rings += 1
            group.ring(msg.subject)

        return ring

    def ring_all(self) -> None:
        for group in list(self._groups.values()):
            group.ring_all()

    def _watch_reconnects(self) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.ensure_future(self._reconnect_watch())
            self._watcher.add_done_callback(_quiet)

    async def _reconnect_watch(self) -> None:
        """Events published while the connection was down rang nobody: ring everyone once
        it is back (nats-py subscribes the hub's subscriptions again by itself)."""
        while True:
            await asyncio.sleep(RECONNECT_CHECK)
            nc = self._nc()
            if nc is None or nc.is_closed:
                return
            count = nc.stats.get("reconnects", 0)
            if count != self._reconnects and nc.is_connected:
                self._reconnects = count
                log.info("NATS reconnected: every waiting sensor of this process pulls once")
                self.ring_all()

    async def ensure_stream(self, js: JetStreamContext, stream: StreamSettings) -> None:
        """``ensure_stream`` once for all the sensors starting within STREAM_CHECK_TTL seconds."""
        now = time.monotonic()
        known = self._streams.get(stream)
        if known is None or (known[1].done() and (known[1].cancelled() or known[1].exception() is not None
                                                  or now - known[0] >= STREAM_CHECK_TTL)):
            check = asyncio.ensure_future(translated(ensure_stream(js, stream), f"stream {stream.name}"))
            check.add_done_callback(_quiet)
            known = self._streams[stream] = (now, check)
        await asyncio.shield(known[1])


class SharedWaitSubscription(Subscription):
    """A durable pull consumer that waits for its hub's doorbell while cold (module docstring).

    Fetching, acking and consumer info are :class:`Subscription`'s own.
    """

    def __init__(self, hub: WaitHub, js: JetStreamContext, stream: str, subject: str, durable: str,
                 deliver: DeliverFrom = "new", ack_wait: float = 30.0, max_ack_pending: int = 1000,
                 batch: int = 64, **kwargs: Any) -> None:
        # kwargs: Subscription's other options (``nc``, ``prefetch``: the live sensor's)
        super().__init__(js, stream, subject, durable, deliver=deliver, ack_wait=ack_wait,
                         max_ack_pending=max_ack_pending, batch=batch, **kwargs)
        self._hub = hub
        # A ring while a hot pull is open and silent means the server may have forgotten the
        # pull (its consumer's leader died): Subscription.suspect asks again if nothing comes.
        self._bell = Doorbell(on_ring=self.suspect)
        self._joined = False
        self._hot_for = max(HOT_MIN, 2 * ack_wait + 1)
        self._hot_until: float | None = None  # None: the first pull is still to come (hot)
        self._epoch_seen = self._reconnects()
        self.pulls = 0
        """Pull requests sent (for tests and the benchmark)."""

    @property
    def hot(self) -> bool:
        """The next fetch long-polls (it started or received lately) instead of waiting to ring."""
        return self._hot_until is None or time.monotonic() < self._hot_until

    async def fetch(self, batch: int | None = None, timeout: float = 5.0) -> list[Delivery]:
        """Up to ``batch`` deliveries; hot, an empty list when none arrived within ``timeout``.

        Cold, it first waits for its doorbell, or SAFETY_POLL seconds when nothing rings (longer
        than ``timeout``: a cold wait costs nothing, waking every ``timeout`` would not, at
        10,000 sensors). A ring makes it hot (a long poll for the hot window); the safety pull
        waits at most BELL_PULL seconds.
        """
        if not self._joined:
            await self._hub.join(self.subject, self._bell)
            self._joined = True
        now = time.monotonic()
        if self._hot_until is None:
            self._hot_until = now + self._hot_for
        hot = now < self._hot_until
        if not hot and not self._bell.rang:
            await self._bell.wait(SAFETY_POLL * random.uniform(0.8, 1.2))  # rung, or the safety pull
        now = time.monotonic()
        epoch = self._reconnects()
        if epoch != self._epoch_seen or self._bell.rang:
            # Reconnected (the hub rang every bell): what was in flight when the connection
            # dropped comes back after ack_wait, and rings nobody. Or an event was published for
            # this consumer: it may take the server a while to hand it over (10,000 rang at once
            # kept it busy past a short pull, and the triggers slept until the safety pull).
            # Either way, long-poll for the hot window.
            self._epoch_seen = epoch
            self._hot_until = max(self._hot_until, now + self._hot_for)
            hot = True
        self._bell.rang = False  # before the pull: a message arriving during it rings again
        self.pulls += 1
        try:
            got = await super().fetch(batch, timeout=timeout if hot else min(timeout, BELL_PULL))
        except BaseException:
            # A failed pull used the ring up without pulling, and may have lost messages the
            # server handed over (they come back after ack_wait, ringing nobody): as after a
            # reconnect, the next pull is hot for the whole window. Without this, a run of
            # failures longer than the window left a stored event waiting for the safety pull.
            self._bell.rang = True
            self._hot_until = time.monotonic() + self._hot_for
            raise
        if got:
            self._hot_until = time.monotonic() + self._hot_for
            if got[-1].msg.metadata.num_pending:
                # More is waiting on the consumer (a backlog, published before anything rang): pull
                # again without a doorbell, even if back-pressure outlasts the hot window.
                self._bell.rang = True
        return got

    async def unsubscribe(self) -> None:
        if self._joined:
            self._joined = False
            self._hub.leave(self.subject, self._bell)
        await super().unsubscribe()


def _transient(err: EventBusError) -> bool:
    """A timeout or a lost connection (worth retrying), not a refusal."""
    cause = err.__cause__
    return isinstance(cause, (asyncio.TimeoutError, TimeoutError, ConnectionError, nats.errors.TimeoutError,
                              nats.errors.ConnectionClosedError, nats.errors.NoRespondersError,
                              nats.js.errors.ServiceUnavailableError))


class SensorBus(EventBus):
    """The EventBus of a sensor that shares its process with many others (the triggerer):
    subscriptions wait through the connection's :class:`WaitHub`, and the stream is checked once
    for all.

    :param shared_wait: default ``ARGO_EVENTS_SHARED_WAIT`` (on).
    """

    def __init__(self, settings: NatsSettings, stream: StreamSettings | None = None, *,
                 shared_wait: bool | None = None) -> None:
        super().__init__(settings, stream, ensure=False)
        self.shared_wait = enabled() if shared_wait is None else shared_wait
        self._hub: WaitHub | None = None
        self._release: tuple[int, Callable[[], None]] | None = None

    def release_after(self, subscriptions: int, release: Callable[[], None]) -> None:
        """Call ``release`` (a :func:`start_slot`'s) once ``subscriptions`` consumers exist: what
        a start does after that (waiting for a dead process's unacked messages to come back, up
        to ``ack_wait``) sends nothing to the JetStream API and need not hold the next one up."""
        self._release = (subscriptions, release)
        self._released()

    def _released(self) -> None:
        if self._release is not None and len(self._subs) >= self._release[0]:
            release, self._release = self._release[1], None
            release()

    async def __aenter__(self) -> SensorBus:
        await super().__aenter__()
        try:
            self._hub = WaitHub.of(self.nc)
            pause = 0.1
            while True:
                try:
                    await self._hub.ensure_stream(self.js, self.stream)
                    break
                except EventBusError as err:
                    if not _transient(err):
                        raise
                    log.warning("stream %s: check failed (%s); retrying in %.1fs", self.stream.name, err, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
        except BaseException:
            await self.close()
            raise
        return self

    @property
    def hub(self) -> WaitHub:
        if self._hub is None:
            raise EventBusError("SensorBus used outside 'async with'")
        return self._hub

    async def subscribe(self, durable: str, event_source: str = "*", event_name: str = "*",
                        deliver: DeliverFrom = "new", **kwargs: object) -> Subscription:
        sub: Subscription
        # No idle heartbeats here: 10,000 long pulls would bring 10,000 status messages a second
        # (measured: the event loop saturated and starting the triggers crawled). A pull the
        # server forgot is noticed by its doorbell instead (SharedWaitSubscription), or, with
        # shared waiting off, when it expires (idle_poll).
        kwargs.setdefault("heartbeat", None)
        if not self.shared_wait:
            sub = await super().subscribe(durable, event_source, event_name, deliver=deliver, **kwargs)
        else:
            sub = SharedWaitSubscription(self.hub, self.js, self.stream.name,
                                         self.stream.subject(event_source, event_name), durable,
                                         deliver=deliver, nc=self.nc, **kwargs)  # type: ignore[arg-type]
            await sub.start()
            self._subs.append(sub)
        self._released()
        return sub
