"""One shared NATS connection per process, event loop and settings.

A triggerer may run 1,000 of our triggers; they must share one socket. ``shared_connection``
hands out the same client to every user with equal settings and closes it when the last
user leaves. Reconnects are nats-py's job; we log them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import nats
import nats.errors
from nats.aio.client import Client

from airflow_argo_events.core.bus.settings import NatsSettings
from airflow_argo_events.core.exceptions import BusUnavailableError
from airflow_argo_events.core.redact import redact_text, redact_url

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    client: Client | None
    users: int
    ready: asyncio.Future[Client]


_POOL: dict[tuple[int, NatsSettings], _Entry] = {}


async def connect(settings: NatsSettings, initial_attempts: int = 3) -> Client:
    """A new, unshared client; errors name the servers and say what to check.

    The first connection gives up after ``initial_attempts`` rounds over the servers (so a
    wrong password fails fast); once connected, the client reconnects forever.
    """
    where = settings.describe()  # redacted: every line below may reach a log
    last_error: list[BaseException] = []

    async def on_error(err: Exception) -> None:
        last_error[:] = [err]
        log.warning("NATS %s: %s", where, redact_text(str(err)) or type(err).__name__)

    async def on_disconnected() -> None:
        log.info("NATS %s: disconnected", where)

    async def on_reconnected() -> None:
        log.info("NATS %s: reconnected", where)

    try:
        client = await nats.connect(
            **settings.connect_kwargs(),
            error_cb=on_error,
            disconnected_cb=on_disconnected,
            reconnected_cb=on_reconnected,
            max_reconnect_attempts=initial_attempts,
            reconnect_time_wait=0.5,
            allow_reconnect=True,
        )
    except (OSError, asyncio.TimeoutError, nats.errors.Error) as err:
        cause = last_error[0] if last_error else err
        text = redact_text(str(cause)) or type(cause).__name__
        if "authorization" in text.lower() or "authentication" in text.lower():
            raise BusUnavailableError(f"NATS {where}: credentials refused ({text})") from err
        raise BusUnavailableError(
            f"NATS {where}: cannot connect to {', '.join(redact_url(s) for s in settings.servers)} ({text})"
        ) from err
    # nats-py reads this option on every reconnect: from now on, never give up.
    client.options["max_reconnect_attempts"] = -1
    return client


@contextlib.asynccontextmanager
async def shared_connection(settings: NatsSettings) -> AsyncIterator[Client]:
    """Borrow the process-wide client for ``settings`` in this event loop."""
    loop = asyncio.get_running_loop()
    key = (id(loop), settings)
    entry = _POOL.get(key)
    if entry is None:
        entry = _POOL[key] = _Entry(None, 0, loop.create_future())
        try:
            entry.client = await connect(settings)
        except BaseException as err:
            del _POOL[key]
            if isinstance(err, Exception):
                entry.ready.set_exception(err)
                entry.ready.exception()  # waiters still see it; silences "never retrieved"
            else:
                entry.ready.cancel()
            raise
        entry.ready.set_result(entry.client)
    entry.users += 1
    try:
        await asyncio.shield(entry.ready)
    except BaseException:
        entry.users -= 1
        raise
    try:
        yield entry.ready.result()
    finally:
        entry.users -= 1
        if entry.users == 0 and _POOL.get(key) is entry:
            del _POOL[key]
            if entry.client is not None and not entry.client.is_closed:
                # Flush what we wrote (acks), then close: drain() would wait up to 30 s for
                # pull subscriptions, which makes a cancelled trigger slow to go away.
                with contextlib.suppress(Exception):
                    await entry.client.flush(timeout=2)
                with contextlib.suppress(Exception):
                    await entry.client.close()


def pool_size() -> int:
    """Open shared connections (for tests and the capacity benchmark)."""
    return len(_POOL)
