"""State entries are stored by ``encode``, which splices in each inline event's JSON as
``new_ref`` serialized it (``orjson.Fragment``) instead of serializing it again. The bytes
must be exactly what the plain path (``dumps_compact(dump())``) writes, for any event data,
and read back to the same refs; otherwise a journal entry written by one path and read by
the other (a restart, ``sensor status``) would differ."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as hs

from airflow_argo_events.core.events import new_event
from airflow_argo_events.core.limits import dumps_compact, loads_strict
from airflow_argo_events.core.runtime import state as st

# JSON values as events carry them (orjson's integer range; no NaN: our reader refuses it).
_json = hs.recursive(
    hs.none() | hs.booleans() | hs.integers(-(2**63), 2**64 - 1) | hs.floats(allow_nan=False, allow_infinity=False)
    | hs.text(max_size=30),
    lambda inner: hs.lists(inner, max_size=4) | hs.dictionaries(hs.text(max_size=8), inner, max_size=4),
    max_leaves=20)

WHEN = datetime(2026, 12, 3, 12, 0, 0, 123456, tzinfo=timezone.utc)


def _event(data, eid="e1"):
    return new_event(source="shop", subject="order", type="webhook", data=data, id=eid, time=WHEN)


def _both(doc):
    plain = dumps_compact(doc.dump())
    assert doc.encode() == plain
    return plain


@settings(max_examples=200, deadline=None)
@given(a=_json, b=_json)
def test_a_journal_entry_encodes_to_the_plain_bytes(a, b):
    refs = {}
    for dep, data, seq in (("a", a, 7), ("b", b, 9)):
        ref, blob = st.new_ref(_event(data, f"id-{dep}"), seq, "owner")
        assert blob is None or ref.raw is None  # a blob is never inline too
        refs[dep] = ref
    rec = st.JournalRecord("f1", "t", st.NO_CORRELATION, refs, "2026-12-03T12:00:00Z", by="me", key="k1",
                           counted={"a": ["x", "y"]})
    raw = _both(rec)
    back = st.JournalRecord.parse(loads_strict(raw))
    assert back.refs == rec.refs and back.firing_id == "f1" and back.counted == {"a": ["x", "y"]}


@settings(max_examples=100, deadline=None)
@given(data=_json)
def test_a_trigger_entry_encodes_to_the_plain_bytes(data):
    ref, _ = st.new_ref(_event(data), 3, "owner")
    entry = st.Entry("t", "kv", {"a": ref}, {"a": [1, 2, 3]}, 5, "2026-12-03T12:00:00Z", {"a": [["e1", "t"]]})
    raw = _both(entry)
    assert st.Entry.parse(loads_strict(raw), 5).refs == entry.refs


def test_refs_without_bytes_and_blobs_encode_as_before():
    parsed = st.Ref.parse({"id": "e1", "seq": 4, "ev": _event({"k": 1}).to_json()})  # read back: no bytes kept
    assert parsed.raw is None
    big, blob = st.new_ref(_event({"x": "y" * (st.INLINE_MAX + 10)}), 5, "owner")
    assert blob is not None and big.blob == blob[0]
    rec = st.JournalRecord("f2", "t", st.NO_CORRELATION, {"a": parsed, "b": big}, "now")
    raw = _both(rec)
    assert b'"blob":"e.' in raw and b'"ev":{' in raw


def test_values_orjson_refuses_take_the_general_path():
    # A YAML loader can hand a Decimal to a template: orjson refuses it, json with default=str takes it.
    rec = st.JournalRecord("f3", "t", st.NO_CORRELATION, {}, "now", counted={"a": [Decimal("1.5")]})
    assert rec.encode() == dumps_compact(rec.dump()) == dumps_compact(rec.dump())
    assert loads_strict(rec.encode())["counted"] == {"a": ["1.5"]}


@settings(max_examples=100, deadline=None)
@given(a=_json, b=_json)
def test_an_entry_holding_firings_encodes_to_the_plain_bytes_and_reads_back_as_records(a, b):
    """The entry journal (``firings``): each firing spliced in as journaled, read back to the
    same records, with ``home`` naming the entry."""
    recs = []
    for fid, data in (("f1", a), ("f2", b)):
        ref, _ = st.new_ref(_event(data, f"id-{fid}"), 3, "owner")
        recs.append(st.JournalRecord(fid, "t", "k1", {"a": ref}, "2026-12-03T12:00:00Z", key="k1"))
    entry = st.Entry("t", "k1", applied={"a": [3]}, firings={r.firing_id: r.encode() for r in recs})
    raw = _both(entry)
    back = st.Entry.parse(loads_strict(raw), 2)
    assert back.firings == entry.firings
    got = st.entry_records(back)
    assert [(r.firing_id, r.refs, r.home) for r in got] == [(r.firing_id, r.refs, ("t", "k1")) for r in recs]
    assert not back.dirty


def test_an_entry_drops_firings_it_cannot_read_or_that_are_not_its_own():
    good = st.JournalRecord("f1", "t", "_", {}, "now").encode()
    alien = st.JournalRecord("f2", "other", "_", {}, "now").encode()
    for fields, kept in ((["x", 1, None], []), (5, []), ("abc", []), ([{"id": "f9", "events": {}}], []),
                         ([loads_strict(good), loads_strict(alien)], ["f1"])):
        entry = st.Entry.parse({"trigger": "t", "firings": fields, "batches": 7}, 1)
        assert [r.firing_id for r in st.entry_records(entry)] == kept, fields
        assert list(entry.firings) == kept and entry.batches == []
        assert entry.dirty == (len(kept) < sum(isinstance(f, dict) and "id" in f for f in
                                                (fields if isinstance(fields, list) else []))), fields
