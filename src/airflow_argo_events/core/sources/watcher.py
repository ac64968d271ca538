"""Argo's naive watcher (``pkg/eventsources/common/naivewatcher``), shared by the file and HDFS sources.

Files are tracked by a stable id (an inode, an HDFS fileId). Comparing two scans:

- a new id -> CREATE (so the first HDFS scan reports every file already there);
- the same id at a new path -> RENAME;
- a new modification time or size -> WRITE; a new mode -> CHMOD;
- an id gone -> REMOVE.

Ops are Argo's fsnotify bit mask: CREATE 1, WRITE 2, REMOVE 4, RENAME 8, CHMOD 16.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

OPS = {"CREATE": 1, "WRITE": 2, "REMOVE": 4, "RENAME": 8, "CHMOD": 16}


def op_mask(text: str) -> int:
    mask = 0
    for part in text.split("|"):
        part = part.strip().upper()
        if part:
            mask |= OPS[part]
    return mask


@dataclass(frozen=True)
class FileInfo:
    id: str
    path: str
    mtime: float
    size: int
    mode: int


@dataclass(frozen=True)
class Change:
    op: int
    path: str


def diff(old: dict[str, FileInfo], new: dict[str, FileInfo]) -> list[Change]:
    changes: list[Change] = []
    for fid, info in new.items():
        before = old.get(fid)
        if before is None:
            changes.append(Change(OPS["CREATE"], info.path))
            continue
        if before.path != info.path:
            changes.append(Change(OPS["RENAME"], info.path))
        if before.mtime != info.mtime or before.size != info.size:
            changes.append(Change(OPS["WRITE"], info.path))
        if before.mode != info.mode:
            changes.append(Change(OPS["CHMOD"], info.path))
    for fid, info in old.items():
        if fid not in new:
            changes.append(Change(OPS["REMOVE"], info.path))
    return changes


class PathMatcher:
    """``path`` (exact, relative to the directory) or ``pathRegexp``, plus the op mask."""

    def __init__(self, directory: str, path: str, regexp: str, ops: str) -> None:
        self.directory = directory.rstrip("/") + "/" if directory != "/" else "/"
        self.path = path
        self.regexp = re.compile(regexp) if regexp else None
        self.mask = op_mask(ops)

    def relative(self, full: str) -> str:
        return full[len(self.directory):] if full.startswith(self.directory) else full

    def matches(self, change: Change) -> bool:
        if not change.op & self.mask:
            return False
        rel = self.relative(change.path)
        if self.path:
            return rel == self.path
        return bool(self.regexp and self.regexp.search(rel))
