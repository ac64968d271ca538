"""Argo's HDFS event source over WebHDFS (the ``hdfs`` package), polled every ``checkInterval``.

Payload: ``{"name": "<full path>", "op": <bit mask>, "metadata": {...}}``. The directory
is listed recursively (LISTSTATUS) and files are tracked by their HDFS ``fileId`` (see
``watcher``); the first scan reports CREATE for every file already there, as Argo does.
Kerberos uses the ``hdfs`` package's Kerberos extension when krb fields are set.

Failure handling (a namenode may accept connections and never answer):

1. Every WebHDFS request has a connect and a read timeout (``connectTimeout`` /
   ``readTimeout``, extensions; 5 s and 30 s by default), so no request waits forever.
2. ``addresses`` are tried in order; a failed address gets one warning line naming it
   (credentials redacted) and the scan moves to the next one. The address that answered
   stays first for the next scans.
3. When every address failed, the next round waits ``retry_delay``: the check interval,
   doubling per failed round up to ``max(interval, 60 s)``.
4. The ``hdfs`` client is synchronous, so scans run on a daemon thread of their own, not
   on the loop's default executor: cancelling the source returns at once, and neither
   ``asyncio.run`` nor the interpreter waits for a request still in flight at shutdown.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from airflow_argo_events.core.redact import redact_text, redact_url
from airflow_argo_events.core.sources.base import Source, SourceEvent, with_metadata
from airflow_argo_events.core.sources.watcher import FileInfo, PathMatcher, diff

log = logging.getLogger("airflow_argo_events.sources.hdfs")

T = TypeVar("T")

MAX_RETRY_DELAY = 60.0


def retry_delay(interval: float, failed_rounds: int) -> float:
    """Pause after ``failed_rounds`` consecutive rounds in which no namenode answered."""
    return min(interval * 2 ** max(failed_rounds - 1, 0), max(interval, MAX_RETRY_DELAY))


async def in_daemon_thread(fn: Callable[[], T], name: str) -> T:
    """``fn()`` on a daemon thread of its own; awaiting it can be cancelled at once.

    Unlike ``asyncio.to_thread``, a call that is still blocked when the task is cancelled
    or the loop shuts down is abandoned: the default executor's threads are joined by
    ``asyncio.run`` and at interpreter exit, a daemon thread is not.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():  # cancelled meanwhile: nobody waits for this any more
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def work() -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = fn()
        except BaseException as err:  # handed to the awaiting task, which decides
            error = err
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the loop is closed: the caller is gone
            pass

    threading.Thread(target=work, name=name, daemon=True).start()
    return await future


class HDFSSource(Source):
    type = "hdfs"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.matcher = PathMatcher(self.spec.directory, self.spec.path, self.spec.path_regexp, self.spec.type)
        self._clients: list[Any] = []
        self._current = 0
        self._sleep = asyncio.sleep
        self._stopped = threading.Event()
        """Set when the source stops: an abandoned scan thread gives up at its next request."""
        self._shown = [redact_url(a) for a in self.spec.addresses]
        """Addresses as log lines may show them."""

    def _make_clients(self) -> list[Any]:
        spec = self.spec
        urls = [a if "://" in a else f"http://{a}" for a in spec.addresses]
        timeout = spec.timeouts()
        if spec.krb_c_cache_secret or spec.krb_keytab_secret:
            try:
                from hdfs.ext.kerberos import KerberosClient
            except ImportError as err:
                raise RuntimeError(f"{self.label}: Kerberos needs 'hdfs[kerberos]' (requests-kerberos): {err}") from err
            return [KerberosClient(u, timeout=timeout) for u in urls]
        from hdfs import InsecureClient

        return [InsecureClient(u, user=spec.hdfs_user or None, timeout=timeout) for u in urls]

    def _list_recursive(self, client: Any, directory: str) -> dict[str, FileInfo]:
        out: dict[str, FileInfo] = {}
        stack = [directory.rstrip("/") or "/"]
        while stack:
            if self._stopped.is_set():
                raise _Stopped
            d = stack.pop()
            for name, st in client.list(d, status=True):
                full = f"{d.rstrip('/')}/{name}"
                if st.get("type") == "DIRECTORY":
                    stack.append(full)
                    continue
                fid = str(st.get("fileId", full))
                out[fid] = FileInfo(fid, full, float(st.get("modificationTime", 0)), int(st.get("length", 0)),
                                    int(str(st.get("permission", "0")), 8))
        return out

    def scan(self, next_delay: float = 0.0) -> dict[str, FileInfo] | None:
        """One recursive listing, failing over across addresses; None when none answered.

        ``next_delay`` only words the warning of the last address (when the next round is).
        """
        if not self._clients:
            self._clients = self._make_clients()
        n = len(self._clients)
        for i in range(n):
            idx = (self._current + i) % n
            try:
                result = self._list_recursive(self._clients[idx], self.spec.directory)
            except _Stopped:
                return None
            except Exception as err:
                if self._stopped.is_set():
                    return None  # hdfs raises HdfsError and requests errors
                then = (f"trying {self._shown[(idx + 1) % n]}" if i < n - 1
                        else f"no namenode answered; retrying in {next_delay:.1f}s")
                log.warning("hdfs %s: namenode %s failed (%s); %s", self.label, self._shown[idx], _short(err), then)
                continue
            if idx != self._current:
                log.warning("hdfs %s: now using namenode %s", self.label, self._shown[idx])
                self._current = idx
            return result
        return None

    async def events(self) -> AsyncIterator[SourceEvent]:
        known: dict[str, FileInfo] = {}
        interval = self.spec.interval_seconds()
        failed_rounds = 0
        self._stopped.clear()
        try:
            while True:
                delay = retry_delay(interval, failed_rounds + 1)
                current = await in_daemon_thread(functools.partial(self.scan, delay), f"hdfs-scan {self.cfg.name}")
                if current is None:
                    failed_rounds += 1
                    await self._sleep(delay)
                    continue
                failed_rounds = 0
                for change in diff(known, current):
                    if self.matcher.matches(change):
                        yield SourceEvent(with_metadata({"name": change.path, "op": change.op}, self))
                known = current
                await self._sleep(interval)
        finally:
            self._stopped.set()


class _Stopped(Exception):
    """The source stopped while a scan was running on its thread."""


def _short(err: BaseException) -> str:
    """One line: requests' messages are long and may quote URLs (with a delegation token)."""
    text = redact_text(" ".join(str(err).split())) or type(err).__name__
    return f"{type(err).__name__}: {text[:300]}"


SOURCES = {"hdfs": HDFSSource}
