"""Argo's sftp event source (asyncssh): poll a remote directory for files created or removed.

Payload, as Argo's: ``{"name": "<file name>", "op": <bit mask>, "metadata": {...}}``. The
name is the file's name in the directory, not a full path (Argo reports what the SFTP
listing gives), and ``op`` is the file source's bit mask (CREATE 1, REMOVE 4).

As in Argo, each poll lists the directory (not recursively, files only) and compares it
with the previous listing by name: a new name, or a known name with a new size or
modification time, is CREATE; a name gone is REMOVE. ``address``, ``username``,
``password`` and ``sshKeySecret`` are secrets; with ``sshKeySecret`` the server's host
key must be the public key stored in that secret next to the private key, with a password
the host key is not checked (Argo's choices).

Unlike Argo, nothing is lost or repeated across a restart:

1. The listing the last events were computed from is kept in the EventSource's KV bucket,
   written only once the bus has acknowledged every event of that poll; a restart compares
   the server's directory with it, so a file created while the source was down is reported.
   Argo starts from the directory as it finds it. The first start ever reports nothing, as
   in Argo.
2. Event ids derive from the source, the file, the change and a generation counter kept
   with the listing: a poll redone after a crash (events published, listing not yet
   stored) gives the same ids, which the bus drops as duplicates.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import stat
from collections.abc import AsyncIterator
from typing import Any

from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.secrets import SecretNotFound
from airflow_argo_events.core.sources.base import Source, SourceEvent, with_metadata
from airflow_argo_events.core.sources.queues import Backoff
from airflow_argo_events.core.sources.watcher import OPS, Change, FileInfo, PathMatcher, diff

log = logging.getLogger("airflow_argo_events.sources")

CONNECT_TIMEOUT = 30.0
MAX_STATE_FILES = 20_000
"""Listings longer than this are not kept (the KV value would pass NATS's 1 MiB); such a
source starts from the directory as it finds it, as Argo does, and says so once."""


def listing_state(target: str, generation: int, files: dict[str, FileInfo]) -> dict[str, Any]:
    return {"target": target, "generation": generation, "files": {n: [f.size, f.mtime] for n, f in files.items()}}


def listing_from_state(saved: Any, target: str) -> tuple[int, dict[str, FileInfo]] | None:
    """(generation, files) kept for this server, user and directory; None for anything else."""
    if not isinstance(saved, dict) or saved.get("target") != target or not isinstance(saved.get("files"), dict):
        return None
    files = {n: FileInfo(n, n, float(m), int(s), 0) for n, (s, m) in saved["files"].items()}
    return int(saved.get("generation", 0)), files


def argo_changes(old: dict[str, FileInfo], new: dict[str, FileInfo]) -> list[Change]:
    """Argo's sftp diff: removals first, then new or changed files, both as CREATE."""
    changes = diff(old, new)
    removed = [c for c in changes if c.op == OPS["REMOVE"]]
    created = [Change(OPS["CREATE"], c.path) for c in changes if c.op in (OPS["CREATE"], OPS["WRITE"])]
    return removed + created


class SFTPSource(Source):
    type = "sftp"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        w = self.spec.watch_path_config
        self.matcher = PathMatcher(w.directory, w.path, w.path_regexp, self.spec.event_type)
        self.interval = self.spec.poll_interval_seconds()
        self._too_big_said = False

    @property
    def where(self) -> str:
        return f"spec.sftp.{self.cfg.name}"

    def _state_key(self) -> str:
        return f"sftp.{self.cfg.name}"

    def _connect_args(self) -> dict[str, Any]:
        """asyncssh.connect keyword arguments from the secrets; a missing or unusable one ends the run."""
        import asyncssh

        s, where = self.spec, self.where
        try:
            address = self.ctx.secrets.get(s.address, f"{where}.address").strip()
            args: dict[str, Any] = {"username": self.ctx.secrets.get(s.username, f"{where}.username").strip()}
            if s.ssh_key_secret is not None:
                text = self.ctx.secrets.get(s.ssh_key_secret, f"{where}.sshKeySecret")
            else:
                args["password"] = self.ctx.secrets.get(s.password, f"{where}.password")
                args["known_hosts"] = None  # Argo: ssh.InsecureIgnoreHostKey() with a password
        except SecretNotFound as err:
            raise SpecError([("", str(err))], source=self.cfg.source) from None
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise SpecError([(f"{where}.address", "the secret must hold host:port")], source=self.cfg.source)
        args["host"], args["port"] = host.strip("[]"), int(port)
        if s.ssh_key_secret is not None:
            try:
                args["client_keys"] = [asyncssh.import_private_key(text)]
                host_keys = [asyncssh.import_public_key(line) for line in text.splitlines()
                             if line.strip().startswith(("ssh-", "ecdsa-", "sk-"))]
            except (asyncssh.KeyImportError, ValueError) as err:
                raise SpecError([(f"{where}.sshKeySecret", f"unusable key: {err}")], source=self.cfg.source) from None
            if not host_keys:
                raise SpecError([(f"{where}.sshKeySecret", "holds no public key line: Argo reads the server's host "
                                                           "key there, after the private key")], source=self.cfg.source)
            args["known_hosts"] = (host_keys, [], [])
        return args

    async def _list(self, sftp: Any) -> dict[str, FileInfo]:
        out: dict[str, FileInfo] = {}
        for entry in await sftp.readdir(self.spec.watch_path_config.directory):
            a = entry.attrs
            if entry.filename in (".", "..") or (a.permissions is not None and stat.S_ISDIR(a.permissions)):
                continue
            out[entry.filename] = FileInfo(entry.filename, entry.filename, float(a.mtime or 0), int(a.size or 0), 0)
        return out

    async def events(self) -> AsyncIterator[SourceEvent]:
        import asyncssh

        saved = await self.ctx.state_get(self._state_key()) if self.ctx.state_get is not None else None
        known: dict[str, FileInfo] | None = None
        generation = 0
        backoff = Backoff()
        while True:
            try:
                args = self._connect_args()
                if saved is not None:  # a listing of another server or directory (the manifest changed) is not used
                    restored = listing_from_state(saved, self._target(args))
                    generation, known = restored if restored else (0, None)
                    saved = None
                conn = await asyncssh.connect(**args, connect_timeout=CONNECT_TIMEOUT)
                try:
                    sftp = await conn.start_sftp_client()
                    current = await self._list(sftp)
                    backoff.reset()
                    if known is None:  # the first start ever: what is there is not reported (Argo)
                        known = current
                        await self._save(args, generation, known)
                    while True:
                        if current != known:
                            handed: list[asyncio.Future[bool]] = []
                            for ev in self._report(known, current, generation):
                                yield ev
                                assert ev.published is not None
                                handed.append(ev.published)
                            # the whole poll is in the runtime's hands: now wait for the bus
                            results = await asyncio.gather(*handed, return_exceptions=True)
                            if any(r is False for r in results):  # stopping before the bus had them: redo
                                return                              # this poll from the stored listing
                            generation += 1
                            known = current
                            await self._save(args, generation, known)
                        await asyncio.sleep(self.interval)
                        current = await self._list(sftp)
                finally:
                    # disconnect without waiting for the server's answer: a server that never
                    # answers must not hold up a reconnect or the runtime's shutdown
                    conn.close()
            except asyncio.CancelledError:
                raise
            except SpecError:
                raise
            except (asyncssh.Error, OSError, asyncio.TimeoutError) as err:
                await backoff.wait(self.label, err)

    def _report(self, known: dict[str, FileInfo], current: dict[str, FileInfo], generation: int) -> list[SourceEvent]:
        """The poll's events; an exception from the bus (never storable) is logged by the runtime."""
        out = []
        for change in argo_changes(known, current):
            if not self.matcher.matches(change):
                continue
            info = current.get(change.path) or known[change.path]
            key = f"{self.cfg.source}/{self.cfg.name}/{generation}/{change.op}/{change.path}/{info.size}/{info.mtime}"
            out.append(SourceEvent(with_metadata({"name": change.path, "op": change.op}, self),
                                   id=hashlib.sha256(key.encode()).hexdigest()[:32]).expect_ack())
        return out

    def _target(self, args: dict[str, Any]) -> str:
        """What a kept listing is a listing of: server, user and directory (hashed: the address is a secret)."""
        text = f"{args['host']}:{args['port']}/{args['username']}/{self.spec.watch_path_config.directory}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    async def _save(self, args: dict[str, Any], generation: int, files: dict[str, FileInfo]) -> None:
        if self.ctx.state_put is None:
            return
        if len(files) > MAX_STATE_FILES:
            if not self._too_big_said:
                log.warning("%s: %d files in the directory, more than the %d whose listing is kept; a restart "
                            "starts from the directory as it finds it", self.label, len(files), MAX_STATE_FILES)
                self._too_big_said = True
            return
        try:
            await self.ctx.state_put(self._state_key(), listing_state(self._target(args), generation, files))
        except Exception as err:  # noqa: BLE001 - the bus is away: the next change writes it again
            log.warning("%s: could not store the listing (%s); a restart now may report these changes again",
                        self.label, err)


SOURCES = {"sftp": SFTPSource}
