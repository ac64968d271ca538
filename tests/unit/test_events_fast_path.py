"""The fast CloudEvent decode path (``events._plain_event``) against the SDK path.

For any structured-mode message, ``decode`` must give what the ``cloudevents`` SDK path
alone gives: the same Event, or the same one-line error. Hypothesis builds messages from
attribute values that the SDK accepts and values it refuses (empty, wrong type, another
specversion, extensions, base64 data, times in every shape Go and Python write).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_argo_events.core import events as E
from airflow_argo_events.core.exceptions import EventDecodeError

# Integers within 64 bits: orjson, our reader, reads a wider one as a float (Go's encoding/json,
# Argo's, reads every number as a float64), so such data never comes back as the same int.
_json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
                          st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
_json = st.recursive(_json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                           st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                     max_leaves=8)
_name = st.one_of(st.text(min_size=1, max_size=16), st.sampled_from(["order", "shop", "webhook", "a.b-c_d", "x y"]))
_bad = st.one_of(st.just(""), st.none(), st.integers(), st.booleans(), st.lists(st.integers(), max_size=2),
                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=1))
_times = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                 timezones=st.sampled_from([timezone.utc, None])).map(lambda t: t.isoformat()),
    st.builds(lambda s, frac, z: f"2024-05-0{s}T10:11:12{frac}{z}", st.integers(1, 9),
              st.sampled_from(["", ".1", ".123", ".123456", ".123456789"]),
              st.sampled_from(["Z", "+02:00", "-07:30", ""])),
    st.sampled_from(["", "yesterday", "2024-13-01T00:00:00Z", "9999-12-31T23:59:00-14:00"]),
)


_ATTRS = ("id", "source", "type", "subject", "datacontenttype", "specversion", "time", "data")


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    """A valid message as an EventSource writes it (optional attributes in or out), then
    none, one or two changes that may or may not make it one the SDK refuses."""
    doc: dict[str, Any] = {"id": draw(_name), "source": draw(_name), "type": draw(_name)}
    if draw(st.booleans()):
        doc["subject"] = draw(_name)
    if draw(st.booleans()):
        doc["datacontenttype"] = draw(st.sampled_from(
            ["application/json", "text/plain", "application/cloudevents+json", "application/x-thing+json"]))
    if draw(st.booleans()):
        doc["specversion"] = "1.0"
    if draw(st.booleans()):
        doc["time"] = draw(_times)
    if draw(st.booleans()):
        doc["data"] = draw(_json)
    for _ in range(draw(st.integers(0, 2))):
        change = draw(st.sampled_from(["bad", "drop", "extension", "base64", "specversion"]))
        if change == "bad":
            doc[draw(st.sampled_from(_ATTRS[:-1]))] = draw(_bad)
        elif change == "drop":
            doc.pop(draw(st.sampled_from(_ATTRS)), None)
        elif change == "extension":
            doc[draw(st.sampled_from(["traceparent", "partitionkey", "Bad-Name", "dataschema", "x" * 25]))] = \
                draw(st.one_of(st.text(max_size=5), st.integers(), st.just("")))
        elif change == "base64":
            doc["data_base64"] = draw(st.sampled_from(["aGVsbG8=", "", "not base64!", None]))
        else:
            doc["specversion"] = draw(st.sampled_from(["0.3", "1", "", 1.0, None, "1.0 "]))
    return doc


def _outcome(decode: Any, payload: bytes, doc: dict[str, Any]) -> tuple[str, Any]:
    try:
        ev = decode(payload)
    except EventDecodeError as err:
        return "error", str(err)
    # What the message leaves out, the SDK makes up (a random id, "now"): compare the rest.
    return "event", E.Event(ev.id if "id" in doc else "<made up>", ev.source, ev.subject, ev.type,
                            ev.time if "time" in doc else datetime(2000, 1, 1, tzinfo=timezone.utc), ev.data,
                            ev.datacontenttype, ev.specversion, ev.extensions)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_fast_path_decodes_exactly_as_the_sdk_path(doc: dict[str, Any]) -> None:
    payload = json.dumps(doc).encode()
    assert _outcome(E.decode, payload, doc) == _outcome(E._decode_with_sdk, payload, doc)


@settings(max_examples=300, deadline=None)
@given(source=st.text(min_size=1, max_size=20), subject=st.text(min_size=1, max_size=20),
       kind=st.text(min_size=1, max_size=10), data=_json)
def test_what_argo_publishes_takes_the_fast_path(source: str, subject: str, kind: str, data: Any) -> None:
    """Every event our EventSources (and Argo's) put on the bus is decoded without the SDK."""
    ev = E.new_event(source=source, subject=subject, type=kind, data=data)
    payload = E.encode(ev)
    fast = E._plain_event(json.loads(payload))
    assert fast is not None
    assert fast == E._decode_with_sdk(payload) == E.decode(payload)
    assert fast.data == data and fast.time == ev.time


def test_an_integer_wider_than_64_bits_is_read_as_a_float_by_both_paths() -> None:
    # What the strategy above leaves out, pinned: both paths read it alike (as Go would).
    payload = E.encode(E.new_event(source="s", subject="e", type="t", data={"n": -(2**63) - 1}))
    assert E.decode(payload).data == E._decode_with_sdk(payload).data == {"n": float(-(2**63) - 1)}


_BASE = {"specversion": "1.0", "id": "1", "source": "s", "type": "t"}


@pytest.mark.parametrize("change", [
    {"subject": ""}, {"datacontenttype": ""}, {"id": ""}, {"source": 7}, {"type": None}, {"specversion": "0.3"},
    {"specversion": 1.0}, {"time": 1700000000}, {"time": ""}, {"dataschema": "x"}, {"traceparent": "00-1"},
    {"data_base64": "aGVsbG8="}, {"subject": ["a"]}, {"time": "2024-05-01T10:11:12.123456789Z"},
    {"time": "2024-05-01T10:11:12+02:00"}, {"time": "2024-05-01T10:11:12.5-07:30"}, {"time": "2024-05-01T10:11:12"},
])
def test_boundaries_agree(change: dict[str, Any]) -> None:
    """The edges of what the SDK accepts, every time (Hypothesis may not draw each one)."""
    doc = {**_BASE, **change}
    payload = json.dumps(doc).encode()
    assert _outcome(E.decode, payload, doc) == _outcome(E._decode_with_sdk, payload, doc)


def test_go_nanosecond_times_and_offsets_agree() -> None:
    for t in ("2024-05-01T10:11:12.123456789Z", "2024-05-01T10:11:12+02:00", "2024-05-01T10:11:12.5-07:30"):
        payload = json.dumps({"specversion": "1.0", "id": "1", "source": "s", "type": "t", "time": t}).encode()
        assert E.decode(payload) == E._decode_with_sdk(payload)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=messages(), spaced=st.booleans())
def test_a_payload_kept_for_the_journal_reads_back_as_the_same_event(doc: dict[str, Any], spaced: bool) -> None:
    """``decode_keeping`` hands the live path the payload to store instead of the event
    serialized again: stored in a journal entry (or a blob) and read back, it must give the
    very Event decoded from it. It refuses (None) where reading again would not (no time:
    "now" each time)."""
    from airflow_argo_events.core.runtime import state as S

    payload = json.dumps(doc, separators=(", ", ": ") if spaced else (",", ":")).encode()
    try:
        ev, raw = E.decode_keeping(payload)
    except EventDecodeError:
        return
    if "time" not in doc:
        assert raw is None
    if raw is None:
        return
    assert raw == payload
    rec = S.JournalRecord("f1", "t", S.NO_CORRELATION, {"d": S.Ref(ev.id, 7, ev, raw=raw)}, "2024-01-01T00:00:00Z")
    back = S.JournalRecord.parse(S.loads_strict(rec.encode()))
    assert back.refs["d"].event == ev
    (ref, blob) = S.new_ref(ev, 7, "o", raw)
    assert ref.raw == raw and (blob is None or S.decode_blob(blob[1]) == ev)


@pytest.mark.parametrize("size", [10, 5_000, 50_000])
def test_a_kept_payload_too_large_to_inline_goes_to_a_blob_that_reads_back(size: int) -> None:
    from airflow_argo_events.core.runtime import state as S

    ev0 = E.new_event(source="s", subject="e", type="t", data={"blob": "x" * size, "n": [1, 2.5, None]})
    ev, raw = E.decode_keeping(E.encode(ev0))
    assert raw is not None and ev == ev0
    ref, blob = S.new_ref(ev, 3, "owner", raw)
    if size > S.INLINE_MAX:
        assert blob is not None and ref.blob == blob[0] and S.decode_blob(blob[1]) == ev
    else:
        assert blob is None and S.JournalRecord.parse(S.loads_strict(S.JournalRecord(
            "f", "t", S.NO_CORRELATION, {"d": ref}, "c").encode())).refs["d"].event == ev
