"""What the engine's fast paths must keep: the 60 s de-duplication window, the words of
``--explain`` and of rejections, and firings that carry the same body and payload."""

from __future__ import annotations

import pytest

from airflow_argo_events.core.sensor import engine as engine_mod
from airflow_argo_events.core.sensor.engine import Engine

from .helpers import dep, ev, filt, log_trigger, sensor


def _both() -> Engine:
    return Engine(sensor([dep("a"), dep("b")], [log_trigger("t", "a && b")]))


def test_an_id_seen_within_60s_is_skipped_and_counted():
    eng = Engine(sensor([dep("a")], [log_trigger("t", "a")]))
    assert len(eng.process(ev(subject="a", id="x", at=0, data={}))) == 1
    assert eng.process(ev(subject="a", id="x", at=59, data={})) == []
    assert eng.duplicates == 1
    # 60 s after it was first seen (the skip did not refresh it) it counts again
    assert len(eng.process(ev(subject="a", id="x", at=60, data={}))) == 1
    assert eng.duplicates == 1


def test_the_oldest_ids_go_first_when_more_are_remembered_than_the_cap(monkeypatch):
    monkeypatch.setattr(engine_mod, "MAX_REMEMBERED_IDS", 2)
    eng = Engine(sensor([dep("a")], [log_trigger("t", "a")]))
    for i, eid in enumerate(["x", "y", "z"]):
        eng.process(ev(subject="a", id=eid, at=i, data={}))
    assert len(eng.process(ev(subject="a", id="x", at=3, data={}))) == 1  # x was evicted
    assert eng.process(ev(subject="a", id="z", at=4, data={})) == []  # z is remembered
    assert eng.duplicates == 1


def test_an_expired_id_seen_again_is_remembered_as_newest(monkeypatch):
    monkeypatch.setattr(engine_mod, "MAX_REMEMBERED_IDS", 3)
    eng = Engine(sensor([dep("a")], [log_trigger("t", "a")]))
    eng.process(ev(subject="a", id="old", at=100, data={}))
    # events whose time runs backwards keep "old" from being the oldest entry by time
    eng.process(ev(subject="a", id="p", at=0, data={}))
    assert len(eng.process(ev(subject="a", id="old", at=161, data={}))) == 1  # expired: fires again
    eng.process(ev(subject="a", id="q", at=162, data={}))
    eng.process(ev(subject="a", id="r", at=163, data={}))
    # over the cap: "p" goes (oldest entry), "old" (re-remembered at 161) stays
    assert eng.process(ev(subject="a", id="old", at=164, data={})) == []


def test_rollback_forgets_ids_first_seen_since_begin():
    eng = _both()
    eng.begin()
    eng.process(ev(subject="a", id="a1", at=0, data={}))
    eng.rollback_seen()
    eng.clear("t")
    eng.process(ev(subject="a", id="a1", at=1, data={}))
    assert eng.duplicates == 0
    assert [f.trigger for f in eng.process(ev(subject="b", id="b1", at=2, data={}))] == ["t"]


def test_explain_words_for_a_saved_event_a_firing_and_a_duplicate():
    eng = Engine(_both().sensor, explain=True)
    eng.process(ev(subject="a", id="a1", at=0, data={}))
    eng.process(ev(subject="a", id="a1", at=1, data={}))
    eng.process(ev(subject="b", id="b1", at=2, data={}))
    eng.process(ev(subject="zzz", id="c1", at=3, data={}))
    assert eng.explain == [
        "  dependency a: passed",
        "  t: saved a; waits for b",
        "  t: event a1 already seen, skipped",
        "  dependency b: passed",
        "  t: condition 'a && b' met with ['a', 'b']",
        "  no dependency listens to source='es' subject='zzz'",
    ]


def test_no_explain_list_unless_asked():
    eng = _both()
    eng.process(ev(subject="a", data={}))
    assert eng.explain is None


@pytest.mark.parametrize("filters, data, reason", [
    ({"data": [{"path": "n", "type": "number", "comparator": ">=", "value": ["10"]}]}, {"n": 3},
     "data filter: n=3 >= ['10'] is false"),
    ({"data": [{"path": "s", "type": "string", "value": ["^x"]}]}, {"s": "abc"},
     "data filter: s='abc' = ['^x'] is false"),
    ({"data": [{"path": "s", "type": "string", "comparator": "!=", "value": ["a", "b"]}]}, {"s": "a"},
     "data filter: s='a' != ['a', 'b'] is false"),
    ({"data": [{"path": "f", "type": "bool", "value": ["true"]}]}, {"f": False},
     "data filter: f=false = ['true'] is false"),
    ({"exprs": [{"expr": "n > 5 && s == 'x'", "fields": [{"name": "n", "path": "n"}, {"name": "s", "path": "s"}]}]},
     {"n": 9, "s": "y"}, "expr filter: 'n > 5 && s == 'x'' with n=9, s='y' is false"),
    ({"data": [{"path": "n", "type": "number", "value": ["1"]}, {"path": "n", "type": "number", "value": ["2"]}],
      "dataLogicalOperator": "or"}, {"n": 3}, "data filter: no filter matched (last: n=3 = ['2'])"),
    # under ``and`` every kind runs; the first mismatch (exprs before data) is the reason
    ({"exprs": [{"expr": "n > 5", "fields": [{"name": "n", "path": "n"}]}],
      "data": [{"path": "n", "type": "number", "comparator": "<", "value": ["0"]}]}, {"n": 1},
     "expr filter: 'n > 5' with n=1 is false"),
    # ... and an error in a later kind wins over an earlier mismatch
    ({"exprs": [{"expr": "n > 5", "fields": [{"name": "n", "path": "n"}]}],
      "data": [{"path": "missing", "type": "number", "value": ["0"]}]}, {"n": 1},
     "data filter error (path 'missing' does not exist)"),
], ids=["number", "string", "not-any-of", "bool", "expr", "or-last", "and-first-mismatch", "and-error-wins"])
def test_rejection_reasons(filters, data, reason):
    eng = Engine(sensor([dep("a", filters=filt(**filters).model_dump(by_alias=True, exclude_none=True))],
                        [log_trigger("t", "a")]))
    assert eng.process(ev(subject="a", data=data)) == []
    assert eng.verdicts["a"] == (None, reason)


def test_firings_of_one_trigger_carry_their_own_payload_and_an_equal_body():
    s = sensor([dep("a")], [{"template": {"name": "h", "conditions": "a", "http": {
        "url": "http://x", "payload": [{"src": {"dependencyName": "a", "dataKey": "n"}, "dest": "out.n"}]}}}])
    eng = Engine(s)
    (f1,) = eng.process(ev(subject="a", data={"n": 1}, at=0))
    (f2,) = eng.process(ev(subject="a", data={"n": {"deep": [2]}}, at=1))
    assert f1.resolved == {"out": {"n": "1"}} and f2.resolved == {"out": {"n": '{"deep":[2]}'}}
    assert f1.body == f2.body and f1.body is not None and f1.body["url"] == "http://x"
    assert f1.id != f2.id


def test_a_failure_puts_saved_events_seen_ids_and_dirty_set_back(monkeypatch):
    eng = _both()
    eng.process(ev(subject="a", id="a1", at=0, data={}))
    assert eng.take_dirty() == {"t"}

    def boom(*args, **kwargs):
        raise RuntimeError("action template exploded")

    monkeypatch.setattr(eng, "_fire", boom)
    with pytest.raises(RuntimeError):
        eng.process(ev(subject="b", id="b1", at=1, data={}))
    assert {d: e.id for d, e in eng.saved("t").items()} == {"a": "a1"}
    assert eng.take_dirty() == set() and eng.applied == []
    monkeypatch.undo()
    (f,) = eng.process(ev(subject="b", id="b1", at=2, data={}))  # b1 was forgotten: not a duplicate
    assert {d: e.id for d, e in f.events.items()} == {"a": "a1", "b": "b1"}
