"""Argo's file event source: changes in a local directory.

Payload: ``{"name": "<full path>", "op": <bit mask>, "metadata": {...}}``. Changes are
found by comparing scans of the directory (inode = file id, see ``watcher``), so
renames are told apart from new files. Natively, a scan runs as soon as the OS reports
activity (inotify through ``watchfiles``); with ``polling: true`` (network filesystems)
it runs every second. Files already present at start are not reported (fsnotify's view).
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from typing import Any

from airflow_argo_events.core.sources.base import Source, SourceEvent, with_metadata
from airflow_argo_events.core.sources.watcher import FileInfo, PathMatcher, diff

POLL_SECONDS = 1.0


def scan(directory: str) -> dict[str, FileInfo]:
    out: dict[str, FileInfo] = {}
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return out
    for e in entries:
        try:
            st = e.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            continue
        fid = f"{st.st_dev}:{st.st_ino}"
        out[fid] = FileInfo(fid, e.path, st.st_mtime, st.st_size, stat.S_IMODE(st.st_mode))
    return out


class FileSource(Source):
    type = "file"

    def __init__(self, *args: Any, poll_seconds: float = POLL_SECONDS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        w = self.spec.watch_path_config
        self.directory = w.directory
        self.matcher = PathMatcher(w.directory, w.path, w.path_regexp, self.spec.event_type)
        self.poll_seconds = poll_seconds

    async def events(self) -> AsyncIterator[SourceEvent]:
        known = await asyncio.to_thread(scan, self.directory)
        async for _ in self._ticks():
            current = await asyncio.to_thread(scan, self.directory)
            for change in diff(known, current):
                if self.matcher.matches(change):
                    yield SourceEvent(with_metadata({"name": change.path, "op": change.op}, self))
            known = current

    async def _ticks(self) -> AsyncIterator[None]:
        if self.spec.polling:
            while True:
                await asyncio.sleep(self.poll_seconds)
                yield None
        from watchfiles import awatch

        os.makedirs(self.directory, exist_ok=True)
        async for _ in awatch(self.directory, recursive=False, debounce=50, step=20):
            yield None


SOURCES = {"file": FileSource}
