"""A sensor's durable state: many small KV entries, each written only when it changes.

Layout of the sensor's bucket (keys are NATS KV keys; names that are not key-safe are
replaced by ``=`` and a hash)::

    meta                    who owns the bucket: sensor, stream, consumers, definition hash
    s.<trigger>.<corr>      saved events of one stateful trigger and one correlation key:
                            {"trigger", "corr", "deps": {dep: ref}, "applied": {dep: [stream seqs]},
                            "clock", "counted": {dep: [[event id, time], ...]} (thresholds only),
                            "batches": [chunk names], "firings": [firing, ...] (the entry's own
                            journal: firings as in a chunk, see below)}.
                            ``<corr>`` is ``_`` for a trigger without correlation keys; for a key
                            value it is ``k<value>`` when the value is key-safe, else ``=`` and
                            32 hex of its sha256 (the value itself is in ``corr``).
    j.b.<instance>.<n>      one journal chunk: the firings of one batch not yet finished (several
                            chunks when they are large), {"batch", "firings": [{"id", "trigger",
                            "corr", "events": {dep: ref}, "created"} (+ "key", "counted" for a
                            correlated firing), ...]}. A firing in it counts only when the entry
                            of its trigger (and key) names the chunk in ``batches``.
    j.<firing id>           the journal of layout 2 before chunks (one entry per firing), still
                            read at start; delete markers of it are erased at their age
    e.<blob id>             one event too large to inline (compressed when large)

A ref is ``{"id", "seq", "ev": <event>}`` for an event up to INLINE_MAX bytes, else
``{"id", "seq", "blob": <key>}``. Each blob has exactly one owner at a time: the saved
slot that stored it, then the journal entry of the firing that consumed it; it is erased
when its owner lets go. So nothing grows with the size of events (an entry holds at most
one small event per dependency) or with the backlog (a firing is one entry, and the
runtime stops fetching when too many are pending).

Why ``applied``: a redelivered message (a crash or a stall between "stored" and "acked")
must not be applied twice. The entry it changed records its stream sequence in the same
write that applied it, and keeps it until the server says the message is settled: its
consumer's ack floor (sampled) has passed it, and that for ACKED_GRACE seconds, for a
redelivery already on its way. The acks themselves are sent unconfirmed: an ack this
process sent proves nothing (it may be lost, above all when a cluster's leader moves).
The check is exact membership, never an inference from order, because a restarted sensor
may see newer messages before the redelivered ones.
Every trigger has an entry, a trigger without saved events too: its compare-and-set is
the claim on the messages it applied, against a replica that got them redelivered (the
loser reloads and finds them applied). So a finished firing leaves nothing behind: a
redelivered message that caused it is recognised by ``applied``, and a copy older than what
``applied`` keeps is found acked on the server (the runtime asks the ack floors for every
redelivered copy).

Why a batch's firings may live in their entry: most batches fire one trigger, whose entry is
written anyway, to record what it applied. Its firings then go into that write
(``firings``): one write, atomic with what caused them, nothing to name. A finished
firing leaves the entry at the entry's next write (the next batch that touches it, or a pass
of the processing loop a moment later: the loop is the only writer, so no compare-and-set
races it). A batch whose firings belong to several entries, or would make the entry larger
than ENTRY_JOURNAL_MAX, goes to chunks, and so do the firings of correlation keys: a status
page reads the entries of triggers without keys to find firings, never every key's.

Why chunks, and why the entries name them: one write journals a whole batch's firings (the
per-firing create and delete marker were a third of a busy sensor's cost). A chunk is
created before the entries that name it are written; a crash in between, or a
compare-and-set lost to a replica, leaves it unnamed, and its firings must not run (the
messages come again and are decided afresh). So at start a firing runs only if its own
entry names its chunk. A finished chunk is erased, and the names of erased chunks are
dropped from an entry at its next write; a name whose chunk is gone means nothing.

Correlated triggers (an extension) have one entry per pending key, so 100,000 pending keys
are 100,000 small entries and a batch writes only the keys it touched. A key whose partial
match fired, expired or was evicted keeps its (empty) entry while the stream sequences it
applied are unsettled, for the redelivery check, and is then removed without a marker.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

from airflow_argo_events.core.bus.kv import StateStore
from airflow_argo_events.core.events import Event, event_from_json, format_time
from airflow_argo_events.core.limits import dumps_compact, loads_strict

log = logging.getLogger("airflow_argo_events.sensor")

LAYOUT_VERSION = 2
INLINE_MAX = 4096
"""Events up to this size (compact JSON) live inside the entry that refers to them: one write."""
COMPRESS_OVER = 16 * 1024
"""Blobs above this are zlib-compressed: JSON shrinks 3-10x, and a 1 MB event then fits
NATS's default max payload with room for the KV headers."""
APPLIED_CAP = 256
"""Applied sequences an entry keeps per dependency before it drops those the newest ack floor
sample has passed, without waiting ACKED_GRACE (a busy trigger applies thousands a second;
a copy of a dropped one that still comes is found acked on the server, as every redelivered
copy is checked so)."""
APPLIED_HARD_CAP = 20_000
"""Past this many in an entry, shared by its dependencies (the ack floors cannot be asked: the
bus is away, or one consumer's floor is stuck), the oldest go anyway: about 200 KB at most."""
ACKED_GRACE = 30.0
"""Seconds an applied sequence is kept after its ack was confirmed: a redelivery the server
sent before it received the ack (ack_wait ran out during a stall) is still recognised."""
TOMBSTONE_AGE = 3600.0
"""Seconds a delete marker of the per-firing journal (before chunks) is kept after an upgrade."""
CHUNK_BYTES = 256 * 1024
"""A journal chunk takes firings until it is this large (NATS's max payload is 1 MB)."""
ENTRY_JOURNAL_MAX = 64 * 1024
"""Bytes of firings an entry may hold itself; a batch that would pass it goes to a chunk. Every
write of the entry carries its unfinished firings: about two batches of small firings fit,
and slow actions do not make each write of a busy trigger large."""
ORPHAN_AGE = 60.0
"""Seconds after which a chunk no entry names is erased at start: a younger one may be a
replica's, between its create and the entries' write that names it."""
NO_CORRELATION = "_"

_KEY_SAFE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def key_token(name: str) -> str:
    """``name`` as one token of a KV key: itself when key-safe, else ``=`` and a hash."""
    if _KEY_SAFE.fullmatch(name):
        return name
    return "=" + hashlib.sha256(name.encode()).hexdigest()[:24]


_CORR_SAFE = re.compile(r"[A-Za-z0-9_-]{1,48}")


def corr_token(value: str) -> str:
    """A correlation key value as one KV key token: ``_`` for no key, ``k<value>`` when it
    is short and key-safe, else ``=`` and 32 hex of its sha256 (NATS KV keys allow only
    ``[-/_=.a-zA-Z0-9]``; the hash keeps every key the same short length).

    >>> corr_token("_"), corr_token("42"), corr_token("order 42/x")
    ('_', 'k42', '=c0a8b802c0fa77051d6acdb17110ebe8')
    """
    if value == NO_CORRELATION:
        return value
    if _CORR_SAFE.fullmatch(value):
        return "k" + value
    return "=" + hashlib.sha256(value.encode()).hexdigest()[:32]


def entry_key(trigger: str, corr: str = NO_CORRELATION) -> str:
    return f"s.{key_token(trigger)}.{corr_token(corr)}"


def journal_key(firing_id: str) -> str:
    """The per-firing journal key of layout 2 before chunks."""
    return f"j.{key_token(firing_id)}"


def chunk_key(name: str) -> str:
    return f"j.b.{name}"


def chunk_name(key: str) -> str | None:
    """``<instance>.<n>`` of a chunk key; None for any other key."""
    return key[4:] if key.startswith("j.b.") and key.count(".") == 3 else None


def encode_chunk(name: str, records: list[bytes]) -> bytes:
    """A chunk from its records' stored bytes (each encoded once, when it was journaled)."""
    return b'{"batch":' + orjson.dumps(name) + b',"firings":[' + b",".join(records) + b"]}"


def journal_docs(key: str, doc: Any) -> list[dict[str, Any]]:
    """The firings one journal key holds as stored (a chunk holds several)."""
    if chunk_name(key) is not None:
        firings = doc.get("firings") if isinstance(doc, dict) else None
        return [f for f in firings if isinstance(f, dict)] if isinstance(firings, list) else []
    return [doc] if isinstance(doc, dict) else []


async def journal_firings(store: StateStore) -> tuple[list[dict[str, Any]], list[str]]:
    """The firings in the journal as stored, those a restart would run: those in the entries
    of triggers without correlation keys (the only entries that hold firings), and of a chunk
    only those whose own entry names it (a crash before the entries' write leaves the others),
    with the keys that could not be read. For status pages: a scan of ``s.*._`` (one entry per
    trigger, never the 100,000 of a correlated one), one of ``j.*``, and one read per other
    entry the chunks refer to."""
    firings: list[dict[str, Any]] = []
    unreadable: list[str] = []
    names: dict[tuple[str, str], set[str]] = {}
    async for e in store.scan(f"s.*.{NO_CORRELATION}"):
        doc = None if e.deleted else _readable(e.value)
        if isinstance(doc, dict):
            names[(str(doc.get("trigger")), NO_CORRELATION)] = {str(b) for b in _list(doc.get("batches"))}
            firings += [f for f in _list(doc.get("firings")) if isinstance(f, dict)]
    async for e in store.scan("j.>"):
        if e.deleted:
            continue
        doc = _readable(e.value)
        if doc is None:
            unreadable.append(e.key)
            continue
        name = chunk_name(e.key)
        for f in journal_docs(e.key, doc):
            if name is not None:
                slot = (str(f.get("trigger")), str(f.get("corr") or NO_CORRELATION))
                if slot not in names:
                    entry = None  # one without a key would have come with the scan above
                    if slot[1] != NO_CORRELATION:
                        with contextlib.suppress(ValueError):  # not JSON: names nothing
                            entry, _ = await store.get(entry_key(*slot))
                    names[slot] = {str(b) for b in _list(entry.get("batches"))} if isinstance(entry, dict) else set()
                if name not in names[slot]:
                    continue
            firings.append(f)
    return firings, unreadable


def _readable(value: bytes) -> Any:
    try:
        return loads_strict(value)
    except ValueError:
        return None


async def count_journal(store: StateStore) -> int:
    """Firings in the journal that a restart would run (:func:`journal_firings`), unreadable keys included."""
    firings, unreadable = await journal_firings(store)
    return len(firings) + len(unreadable)


def parse_chunk(doc: dict[str, Any], name: str) -> list[JournalRecord]:
    out = []
    for r in doc.get("firings") or []:
        rec = JournalRecord.parse(r)
        rec.batch = name
        out.append(rec)
    return out


def _list(value: Any) -> list[Any]:
    """A stored list field, or nothing when it is not a list (an entry edited by hand)."""
    return value if isinstance(value, list) else []


def entry_records(entry: Entry) -> list[JournalRecord]:
    """The firings an entry holds itself, as records (``home`` set; ``data`` the stored bytes).
    One that cannot be read, or that is not this entry's trigger and key, is logged and
    dropped, from the entry too (``dirty``: it is written without it)."""
    out = []
    for fid, data in list(entry.firings.items()):
        try:
            rec = JournalRecord.parse(loads_strict(data))
            if (rec.trigger, rec.corr) != (entry.trigger, entry.corr):
                raise ValueError(f"it belongs to trigger {rec.trigger!r}, key {rec.corr!r}")
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            log.error("trigger %s: journal firing %s in its entry cannot be read (%s); dropped", entry.trigger,
                      fid, err)
            del entry.firings[fid]
            entry.dirty = True
            continue
        rec.home, rec.data = (entry.trigger, entry.corr), data
        out.append(rec)
    return out


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Ref:
    """Where one event of a slot or a firing lives."""

    id: str
    seq: int
    event: Event | None = None
    blob: str | None = None
    doc: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    """The event's JSON object when ``new_ref`` built it already (measuring its size)."""
    raw: bytes | None = field(default=None, compare=False, repr=False)
    """That object serialized (``new_ref`` measured it so): stored as is, not serialized again."""

    def dump(self, fragments: bool = False) -> dict[str, Any]:
        """As stored. ``fragments``: the inline event as the bytes ``new_ref`` made, for
        :func:`encode` only (an ``orjson.Fragment`` is not JSON to anything else)."""
        out: dict[str, Any] = {"id": self.id, "seq": self.seq}
        if self.blob is not None:
            out["blob"] = self.blob
        elif fragments and self.raw is not None:
            out["ev"] = orjson.Fragment(self.raw)
        else:
            assert self.event is not None
            out["ev"] = self.doc if self.doc is not None else self.event.to_json()
        return out

    @classmethod
    def parse(cls, doc: dict[str, Any]) -> Ref:
        ev = event_from_json(doc["ev"]) if "ev" in doc else None
        return cls(str(doc["id"]), int(doc.get("seq") or 0), ev, doc.get("blob"))


def new_ref(event: Event, seq: int, owner: str, raw: bytes | None = None) -> tuple[Ref, tuple[str, bytes] | None]:
    """A ref for ``event`` and, when it is too large to inline, the blob to write first.
    ``raw``: JSON that reads back as ``event`` (the message it came in, ``decode_keeping``)."""
    doc = None
    if raw is None:
        doc = event.to_json()
        raw = dumps_compact(doc)
    if len(raw) <= INLINE_MAX:
        return Ref(event.id, seq, event, doc=doc, raw=raw), None
    key = "e." + hashlib.sha256(f"{owner}\n{event.id}\n{seq}".encode()).hexdigest()[:32]
    data = b"z" + zlib.compress(raw, 1) if len(raw) > COMPRESS_OVER else raw
    return Ref(event.id, seq, event, key), (key, data)


def decode_blob(data: bytes) -> Event:
    raw = zlib.decompress(data[1:]) if data[:1] == b"z" else data
    return event_from_json(loads_strict(raw))


@dataclass
class Entry:
    """In memory: one ``s.<trigger>.<corr>`` entry and its revision."""

    trigger: str
    corr: str = NO_CORRELATION
    refs: dict[str, Ref] = field(default_factory=dict)
    applied: dict[str, list[int]] = field(default_factory=dict)
    revision: int = 0
    clock: str | None = None
    counted: dict[str, list[list[str]]] = field(default_factory=dict)
    """Threshold dependencies: [event id, time] of every event counted (the latest is in ``refs``)."""
    batches: list[str] = field(default_factory=list)
    """Journal chunks holding firings this entry's writes committed (``chunk_key``)."""
    firings: dict[str, bytes] = field(default_factory=dict)
    """The entry's own journal: firing id -> the firing as stored (``JournalRecord.encode``)."""
    dirty: bool = field(default=False, compare=False)
    """Changed since it was read (a firing dropped at start): to be written even with nothing new."""

    def dump(self, fragments: bool = False) -> dict[str, Any]:
        out = {"trigger": self.trigger, "corr": self.corr,
               "deps": {d: r.dump(fragments) for d, r in self.refs.items()},
               "applied": self.applied, "clock": self.clock}
        if self.counted:
            out["counted"] = self.counted
        if self.batches:
            out["batches"] = self.batches
        if self.firings:
            out["firings"] = [orjson.Fragment(b) if fragments else loads_strict(b) for b in self.firings.values()]
        return out

    def encode(self) -> bytes:
        """The stored bytes (what ``dumps_compact(dump())`` gives, without serializing the
        inline events a second time)."""
        return encode(self)

    @classmethod
    def parse(cls, doc: dict[str, Any], revision: int) -> Entry:
        return cls(str(doc["trigger"]), str(doc.get("corr") or NO_CORRELATION),
                   {d: Ref.parse(r) for d, r in (doc.get("deps") or {}).items()},
                   {d: list(v) for d, v in (doc.get("applied") or {}).items()}, revision, doc.get("clock"),
                   {d: [list(x) for x in v] for d, v in (doc.get("counted") or {}).items()},
                   [str(b) for b in _list(doc.get("batches"))],
                   {str(f["id"]): dumps_compact(f) for f in _list(doc.get("firings"))
                    if isinstance(f, dict) and "id" in f})

    def copy(self) -> Entry:
        """A working copy: a batch edits copies, so a failed batch leaves the committed entry as it was."""
        return Entry(self.trigger, self.corr, dict(self.refs), {d: list(v) for d, v in self.applied.items()},
                     self.revision, self.clock, {d: list(v) for d, v in self.counted.items()}, list(self.batches),
                     dict(self.firings))

    def counted_times(self) -> dict[str, list[tuple[str, datetime]]]:
        return {d: [(i, datetime.fromisoformat(t.replace("Z", "+00:00"))) for i, t in v]
                for d, v in self.counted.items()}

    def saw(self, dep: str, seq: int) -> None:
        """Record an applied message (a message is applied once: the runtime skips a redelivery
        that ``already_applied`` finds, so only the newest needs comparing)."""
        seqs = self.applied.setdefault(dep, [])
        if not seqs or seqs[-1] != seq:
            seqs.append(seq)

    def already_applied(self, deps: Iterable[str], seq: int) -> bool:
        return any(seq in self.applied.get(dep, ()) for dep in deps)

    def prune(self, floor: int) -> None:
        """Forget sequences at or below ``floor`` (settled: acked, and past the grace period)."""
        for dep, seqs in list(self.applied.items()):
            if seqs and min(seqs) > floor:
                continue
            kept = [q for q in seqs if q > floor]
            if kept:
                self.applied[dep] = kept
            else:
                del self.applied[dep]

    def bound(self, latest: int) -> tuple[bool, int]:
        """Keep each dependency's sequences near APPLIED_CAP: past it, those at or below the
        newest ack floor sample ``latest`` go (no grace: see APPLIED_CAP), past APPLIED_HARD_CAP
        the oldest. Returns (still over APPLIED_CAP: the floors are due, how many the hard cap dropped)."""
        over, dropped = False, 0
        hard = max(APPLIED_CAP, APPLIED_HARD_CAP // max(1, len(self.applied)))  # the entry must fit a payload
        for dep, seqs in list(self.applied.items()):
            if len(seqs) <= APPLIED_CAP:
                continue
            kept = [q for q in seqs if q > latest]
            if len(kept) > hard:
                dropped += len(kept) - hard
                del kept[: len(kept) - hard]
            if kept:
                self.applied[dep] = kept
            else:
                del self.applied[dep]
            over = over or len(kept) > APPLIED_CAP
        return over, dropped


@dataclass
class JournalRecord:
    """One pending firing as stored: enough to rebuild it (same id, same body) after a crash."""

    firing_id: str
    trigger: str
    corr: str
    refs: dict[str, Ref]
    created: str
    recovered: bool = False
    key: str | None = None
    """The correlation key of a correlated firing (part of its id)."""
    counted: dict[str, list[str]] | None = None
    """Threshold dependencies: the ids of every event counted (part of the firing's id)."""
    by: str | None = None
    """The sensor process that journaled it, in the per-firing journal before chunks."""
    batch: str | None = field(default=None, compare=False)
    """The name of the chunk it is stored in (None: in its entry, or a per-firing journal key)."""
    home: tuple[str, str] | None = field(default=None, compare=False)
    """(trigger, correlation key) of the entry it is stored in, when it is in one."""
    data: bytes | None = field(default=None, compare=False, repr=False)
    """Its stored bytes, once journaled."""

    def dump(self, fragments: bool = False) -> dict[str, Any]:
        out = {"id": self.firing_id, "trigger": self.trigger, "corr": self.corr,
               "events": {d: r.dump(fragments) for d, r in self.refs.items()}, "created": self.created}
        if self.by is not None:
            out["by"] = self.by
        if self.key is not None:
            out["key"] = self.key
        if self.counted:
            out["counted"] = self.counted
        return out

    @classmethod
    def parse(cls, doc: dict[str, Any], recovered: bool = True) -> JournalRecord:
        return cls(str(doc["id"]), str(doc["trigger"]), str(doc.get("corr") or NO_CORRELATION),
                   {d: Ref.parse(r) for d, r in (doc.get("events") or {}).items()},
                   str(doc.get("created") or ""), recovered,
                   str(doc["key"]) if doc.get("key") is not None else None,
                   {d: [str(i) for i in v] for d, v in doc["counted"].items()} if doc.get("counted") else None,
                   str(doc["by"]) if doc.get("by") is not None else None)


    def encode(self) -> bytes:
        """The stored bytes, as :meth:`Entry.encode`."""
        return encode(self)


def encode(doc: Entry | JournalRecord) -> bytes:
    """``dumps_compact(doc.dump())``, with each inline event's bytes from ``new_ref`` spliced
    in rather than serialized again (about a third of a journal entry's encoding time)."""
    try:
        return orjson.dumps(doc.dump(fragments=True), option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # what orjson does not know: the general path, which has its own fallback
        return dumps_compact(doc.dump())


async def resolve(store: StateStore, ref: Ref) -> Event:
    """The event behind a ref (reads its blob when it is not inline)."""
    if ref.event is not None:
        return ref.event
    assert ref.blob is not None
    data, _ = await store.get_raw(ref.blob)
    if data is None:
        raise LookupError(f"event {ref.id}: blob {ref.blob} is missing from the sensor's state")
    ref.event = decode_blob(data)
    return ref.event


def meta_doc(sensor: str, stream: str, identity: str, consumers: list[str], triggers: list[str],
             definition: str) -> dict[str, Any]:
    return {"version": LAYOUT_VERSION, "sensor": sensor, "stream": stream, "identity": identity,
            "consumers": consumers, "triggers": triggers, "started": format_time(utcnow()),
            "definition": definition}


def definition_hash(doc: Any) -> str:
    return hashlib.sha256(dumps_compact(doc)).hexdigest()
