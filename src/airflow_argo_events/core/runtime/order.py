"""Keep the stream's order when messages in flight to a sensor were lost.

A message the server delivered to a process that then died, or sent while the connection
was dropping, stays pending on the server and comes back only when its ``ack_wait`` runs
out, behind everything newer. Argo's "latest wins" pairing would then follow the order of
arrival instead of the stream's: after one lost message every later pair shifts by one.

The gate closes after a start, after every reconnect, after a failed fetch, and when a
consumer's delivery sequence skips (a delivery this process never saw: e.g. the stream's
leader died with it on the wire, which the client does not notice as a reconnect). While
it is closed, it compares each consumer's ack-pending count on the server with the messages
this process holds; everything fetched meanwhile is held back (kept alive with in-progress
acks) and released in stream order once the missing messages are back. It waits at most
``2 * ack_wait + 2`` seconds: beyond that the messages are held by someone else (another
replica of the sensor), and the order between two processes was never defined; skips alone
then stop closing the gate for ``SHARED_QUIET`` seconds, since another reader explains them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from airflow_argo_events.core.bus import Delivery, Subscription
from airflow_argo_events.core.exceptions import EventBusError

log = logging.getLogger("airflow_argo_events.sensor")

POLL = 0.5
"""Seconds between two looks at the consumers while messages are missing (one consumer-info
request each, and only for consumers that still miss some)."""
SHARED_QUIET = 300.0
"""Seconds during which delivery-sequence skips are ignored after the missing messages never
came back (another process reads the same consumer: skips are normal then)."""


class OrderGate:
    """Holds fetched deliveries back while messages pending for this process's consumers
    are missing, then releases them sorted by stream sequence.

    >>> gate = OrderGate(subs, ack_wait=5.0, reconnects=lambda: bus.reconnects, name="s")  # doctest: +SKIP
    >>> if not gate.took(batch, epoch): await queue.put(batch)                          # doctest: +SKIP
    """

    def __init__(self, subs: Iterable[Subscription], *, ack_wait: float, reconnects: Callable[[], int],
                 name: str) -> None:
        self._subs = {sub.durable: sub for sub in subs}
        self._ack_wait = ack_wait
        self._reconnects = reconnects
        self._epoch = reconnects()
        self._name = name
        self._ours: dict[str, set[int]] = {durable: set() for durable in self._subs}  # taken, not yet settled
        self._held: dict[int, Delivery] = {}  # stream seq -> the latest copy delivered
        self._last: dict[str, int] = {}  # consumer -> the last delivery sequence seen
        self._shared_until = 0.0  # skips are ignored until then (another reader shares a consumer)
        self._closed = asyncio.Event()
        self._closed.set()  # at start: a previous process may have left messages pending
        self.lock = asyncio.Lock()
        """Taken by whoever puts deliveries in the sensor's queue, so nothing fetched after the
        gate opened overtakes what it releases."""
        self.stats = {"closed": 0, "held": 0, "gave_up": 0, "skips": 0}

    @property
    def epoch(self) -> int:
        """The connection's reconnect count now: a fetch passes the value from before it."""
        return self._reconnects()

    def close(self) -> None:
        """Something may have been lost in flight (a fetch failed): check before going on."""
        self._closed.set()

    def took(self, batch: list[Delivery], epoch: int) -> bool:
        """Record a fetched batch; True when the gate keeps it (it comes out of ``run``)."""
        skipped = False
        for d in batch:
            consumer = d.consumer
            self._ours.setdefault(consumer, set()).add(d.stream_seq)
            last = self._last.get(consumer)
            dseq = d.consumer_seq
            if last is not None and dseq != last + 1:
                skipped = True
            self._last[consumer] = dseq  # a step back too: the server's count is the truth
        if skipped and time.monotonic() >= self._shared_until:
            self.stats["skips"] += 1
            self._closed.set()
        now = self._reconnects()
        if now != self._epoch or epoch != now:  # reconnected before or during this fetch
            self._epoch = now
            self._closed.set()
        if not self._closed.is_set():
            return False
        for d in batch:
            self._held[d.stream_seq] = d  # a redelivery replaces the copy held before
        return True

    def settled(self, batch: Iterable[Delivery]) -> None:
        """These were acked or terminated (or the ack failed: then they come back and count)."""
        for d in batch:
            ours = self._ours.get(d.consumer)
            if ours is not None:
                ours.discard(d.stream_seq)

    async def run(self, release: Callable[[list[Delivery]], Awaitable[None]]) -> None:
        """Forever: whenever the gate is closed, wait for the missing messages, then open it
        and pass what was held to ``release`` in stream order (under ``lock``)."""
        while True:
            await self._closed.wait()
            self.stats["closed"] += 1
            await self._wait_for_missing()
            async with self.lock:
                held = sorted(self._held.values(), key=lambda d: d.stream_seq)
                self._held.clear()
                self._closed.clear()
                if held:
                    self.stats["held"] += len(held)
                    await release(held)

    async def _wait_for_missing(self) -> None:
        start = last_progress = time.monotonic()
        deadline = start + 2 * self._ack_wait + 2
        check = list(self._subs)
        told = False
        while check:
            missing: dict[str, int] = {}
            for durable in check:
                try:
                    info = await self._subs[durable].info()
                except EventBusError:  # the bus is away: ask again (the fetchers wait for it too)
                    missing[durable] = -1
                    continue
                n = info.num_ack_pending - len(self._ours.get(durable, ()))
                if n > 0:
                    missing[durable] = n
            if not missing:
                if told:
                    log.info("sensor %s: the messages left pending are back; going on in stream order", self._name)
                return
            now = time.monotonic()
            if self._reconnects() != self._epoch:  # dropped again meanwhile: start over
                self._epoch = self._reconnects()
                deadline = now + 2 * self._ack_wait + 2
                missing = dict.fromkeys(self._subs, -1)
            if now >= deadline:
                self.stats["gave_up"] += 1
                self._shared_until = now + SHARED_QUIET
                log.warning("sensor %s: %d message(s) still pending on %s after %.0fs (another process of this "
                            "sensor may hold them); going on without them", self._name,
                            sum(n for n in missing.values() if n > 0), ", ".join(sorted(missing)), now - start)
                return
            if not told and any(n > 0 for n in missing.values()):
                told = True
                log.info("sensor %s: %d message(s) delivered earlier were not acked (a crash or a dropped "
                         "connection); holding newer ones until they come back (at most %.0fs)", self._name,
                         sum(n for n in missing.values() if n > 0), deadline - now)
            if self._held and now - last_progress > self._ack_wait / 3:
                last_progress = now  # what is held must not run out of ack_wait meanwhile
                for d in list(self._held.values()):
                    with contextlib.suppress(EventBusError):
                        await d.in_progress()
            check = list(missing)
            await asyncio.sleep(POLL)
