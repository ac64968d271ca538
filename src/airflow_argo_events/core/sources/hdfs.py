"""Argo's HDFS event source over WebHDFS (the ``hdfs`` package), polled every ``checkInterval``.

Payload: ``{"name": "<full path>", "op": <bit mask>, "metadata": {...}}``. The directory
is listed recursively (LISTSTATUS) and files are tracked by their HDFS ``fileId`` (see
``watcher``); the first scan reports CREATE for every file already there, as Argo does.
``addresses`` are namenode HTTP addresses tried in order (fail-over on errors). Kerberos
uses the ``hdfs`` package's Kerberos extension when krb fields are set. The ``hdfs``
client is synchronous, so every call runs on a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from airflow_argo_events.core.sources.base import Source, SourceEvent, with_metadata
from airflow_argo_events.core.sources.watcher import FileInfo, PathMatcher, diff

log = logging.getLogger("airflow_argo_events.sources.hdfs")


class HDFSSource(Source):
    type = "hdfs"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.matcher = PathMatcher(self.spec.directory, self.spec.path, self.spec.path_regexp, self.spec.type)
        self._clients: list[Any] = []
        self._current = 0

    def _make_clients(self) -> list[Any]:
        spec = self.spec
        urls = [a if "://" in a else f"http://{a}" for a in spec.addresses]
        if spec.krb_c_cache_secret or spec.krb_keytab_secret:
            try:
                from hdfs.ext.kerberos import KerberosClient
            except ImportError as err:
                raise RuntimeError(f"{self.label}: Kerberos needs 'hdfs[kerberos]' (requests-kerberos): {err}") from err
            return [KerberosClient(u) for u in urls]
        from hdfs import InsecureClient

        return [InsecureClient(u, user=spec.hdfs_user or None) for u in urls]

    def _list_recursive(self, client: Any, directory: str) -> dict[str, FileInfo]:
        out: dict[str, FileInfo] = {}
        stack = [directory.rstrip("/") or "/"]
        while stack:
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

    def scan(self) -> dict[str, FileInfo]:
        """One recursive listing, failing over across addresses."""
        if not self._clients:
            self._clients = self._make_clients()
        errors = []
        for i in range(len(self._clients)):
            idx = (self._current + i) % len(self._clients)
            try:
                result = self._list_recursive(self._clients[idx], self.spec.directory)
            except Exception as err:  # hdfs raises HdfsError and requests errors
                errors.append(f"{self.spec.addresses[idx]}: {err}")
                continue
            if idx != self._current:
                log.warning("hdfs %s: failed over to %s", self.label, self.spec.addresses[idx])
                self._current = idx
            return result
        raise ConnectionError(f"hdfs {self.label}: no namenode answered: {'; '.join(errors)}")

    async def events(self) -> AsyncIterator[SourceEvent]:
        known: dict[str, FileInfo] = {}
        interval = self.spec.interval_seconds()
        while True:
            try:
                current = await asyncio.to_thread(self.scan)
            except ConnectionError as err:
                log.warning("%s; retrying in %.0fs", err, interval)
                await asyncio.sleep(interval)
                continue
            for change in diff(known, current):
                if self.matcher.matches(change):
                    yield SourceEvent(with_metadata({"name": change.path, "op": change.op}, self))
            known = current
            await asyncio.sleep(interval)


SOURCES = {"hdfs": HDFSSource}
