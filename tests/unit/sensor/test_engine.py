"""Conditions, state, resets and firings: Argo's listener.go/trigger_conn.go semantics."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_argo_events.core.sensor.engine import Engine, firing_id

from .helpers import T0, dep, ev, log_trigger, sensor

CONDITIONS_EXAMPLE = sensor(
    [dep("dep01", "webhook", "example01"), dep("dep02", "webhook", "example02"), dep("dep03", "webhook", "example03")],
    [log_trigger("trigger01", "dep02"), log_trigger("trigger02", "dep02 && dep03"),
     log_trigger("trigger03", "(dep01 || dep02) && dep03")],
    name="trigger-conditions",
)


def feed(engine, events):
    out = []
    for e in events:
        out += [(f.trigger, sorted(f.events)) for f in engine.process(e)]
    return out


def w(subject, **kw):
    return ev("webhook", subject, data={"body": {}}, **kw)


@pytest.mark.parametrize(
    "order, expected",
    [
        (["example02"], [("trigger01", ["dep02"])]),
        (["example03"], []),
        (["example02", "example03"],
         [("trigger01", ["dep02"]), ("trigger02", ["dep02", "dep03"]), ("trigger03", ["dep02", "dep03"])]),
        (["example03", "example01"], [("trigger03", ["dep01", "dep03"])]),
        # dep01 and dep02 both saved: one firing carries all three events
        (["example01", "example02", "example03"],
         [("trigger01", ["dep02"]), ("trigger02", ["dep02", "dep03"]), ("trigger03", ["dep01", "dep02", "dep03"])]),
        # state is cleared after firing: a second dep03 alone does nothing
        (["example02", "example03", "example03"],
         [("trigger01", ["dep02"]), ("trigger02", ["dep02", "dep03"]), ("trigger03", ["dep02", "dep03"])]),
    ],
    ids=["dep02", "dep03-alone", "02-then-03", "03-then-01", "all-three", "cleared-after-firing"],
)
def test_argo_conditions_example(order, expected):
    assert feed(Engine(CONDITIONS_EXAMPLE), [w(s, at=i) for i, s in enumerate(order)]) == expected


def test_latest_event_per_dependency_wins():
    s = sensor([dep("a"), dep("b")], [log_trigger("t", "a && b")])
    eng = Engine(s)
    eng.process(ev(subject="a", id="a1", data={}))
    eng.process(ev(subject="a", id="a2", data={}))
    (f,) = eng.process(ev(subject="b", id="b1", data={}))
    assert {d: e.id for d, e in f.events.items()} == {"a": "a2", "b": "b1"}


def test_no_conditions_means_all_dependencies():
    s = sensor([dep("a"), dep("b"), dep("c")], [log_trigger("t")])
    eng = Engine(s)
    assert feed(eng, [ev(subject="a", data={}), ev(subject="b", data={})]) == []
    assert feed(eng, [ev(subject="c", data={})]) == [("t", ["a", "b", "c"])]


def test_or_fires_once_per_event_and_stores_nothing():
    s = sensor([dep("a"), dep("b")], [log_trigger("t", "a || b")])
    eng = Engine(s)
    assert feed(eng, [ev(subject="a", data={}), ev(subject="a", data={}), ev(subject="b", data={})]) == [
        ("t", ["a"]), ("t", ["a"]), ("t", ["b"])]
    assert eng.saved("t") == {}


def test_any_ampersand_selects_the_stateful_path():
    # dep01 || (dep02 && dep03): a dep01 event fires together with a saved dep02
    s = sensor([dep("dep01"), dep("dep02"), dep("dep03")], [log_trigger("t", "dep01 || (dep02 && dep03)")])
    eng = Engine(s)
    assert feed(eng, [ev(subject="dep02", data={})]) == []
    assert feed(eng, [ev(subject="dep01", data={})]) == [("t", ["dep01", "dep02"])]


def test_one_event_satisfies_two_dependencies_on_the_same_subject():
    s = sensor([dep("x", "es", "e"), dep("y", "es", "e")], [log_trigger("and", "x && y"), log_trigger("or", "x || y")])
    eng = Engine(s)
    fired = feed(eng, [ev(subject="e", data={})])
    assert fired == [("and", ["x", "y"]), ("or", ["x"]), ("or", ["y"])]


def test_filter_failure_drops_event_for_that_dependency_only():
    s = sensor(
        [dep("big", "es", "n", filters={"data": [{"path": "n", "type": "number", "value": ["10"], "comparator": ">"}]}),
         dep("any", "es", "n")],
        [log_trigger("t1", "big"), log_trigger("t2", "any")],
    )
    assert feed(Engine(s), [ev(subject="n", data={"n": 5})]) == [("t2", ["any"])]


def test_triggers_keep_separate_state():
    s = sensor([dep("a"), dep("b")], [log_trigger("t1", "a && b"), log_trigger("t2", "a && b")])
    eng = Engine(s)
    eng.process(ev(subject="a", data={}))
    eng.clear("t1")
    assert feed(eng, [ev(subject="b", data={})]) == [("t2", ["a", "b"])]


def test_duplicate_event_id_within_60s_is_skipped():
    s = sensor([dep("a")], [log_trigger("t", "a")])
    eng = Engine(s)
    assert len(eng.process(ev(subject="a", id="same", data={}, at=0))) == 1
    assert eng.process(ev(subject="a", id="same", data={}, at=30)) == []
    assert len(eng.process(ev(subject="a", id="same", data={}, at=91))) == 1


def test_conditions_reset_by_cron_clears_state_between_events():
    s = sensor([dep("a"), dep("b")], [log_trigger("t", "a && b", conditionsReset=[{"byTime": {"cron": "0 * * * *"}}])])
    eng = Engine(s)
    eng.process(ev(subject="a", data={}, at=T0 + timedelta(minutes=30)))  # 10:30
    assert feed(eng, [ev(subject="b", data={}, at=T0 + timedelta(minutes=61))]) == []  # 11:01, reset at 11:00
    assert eng.saved("t").keys() == {"b"}
    assert feed(eng, [ev(subject="a", data={}, at=T0 + timedelta(minutes=70))]) == [("t", ["a", "b"])]


def test_conditions_reset_respects_timezone():
    # 09:00 in Tokyo is 00:00 UTC
    s = sensor([dep("a"), dep("b")],
               [log_trigger("t", "a && b", conditionsReset=[{"byTime": {"cron": "0 9 * * *", "timezone": "Asia/Tokyo"}}])])
    eng = Engine(s)
    eng.process(ev(subject="a", data={}, at=T0 + timedelta(hours=13)))  # 23:00 UTC
    assert feed(eng, [ev(subject="b", data={}, at=T0 + timedelta(hours=14, minutes=1))]) == []
    s2 = sensor([dep("a"), dep("b")],
                [log_trigger("t", "a && b", conditionsReset=[{"byTime": {"cron": "0 9 * * *"}}])])
    eng2 = Engine(s2)
    eng2.process(ev(subject="a", data={}, at=T0 + timedelta(hours=13)))
    assert feed(eng2, [ev(subject="b", data={}, at=T0 + timedelta(hours=14, minutes=1))]) == [("t", ["a", "b"])]


def test_firing_id_is_deterministic_and_order_independent():
    a, b = ev(subject="a", id="A", data={}), ev(subject="b", id="B", data={})
    assert firing_id("s", "t", {"a": a, "b": b}) == firing_id("s", "t", {"b": b, "a": a})
    assert firing_id("s", "t", {"a": a, "b": b}) != firing_id("s", "t2", {"a": a, "b": b})
    assert len(firing_id("s", "t", {"a": a})) == 16
    s = sensor([dep("a"), dep("b")], [log_trigger("t", "a && b")])
    ids = []
    for _ in range(2):
        eng = Engine(s)
        eng.process(ev(subject="a", id="A", data={}))
        ids.append(eng.process(ev(subject="b", id="B", data={}))[0].id)
    assert ids[0] == ids[1]


def test_state_restore_round_trip():
    s = sensor([dep("a"), dep("b")], [log_trigger("t", "a && b")])
    eng = Engine(s)
    eng.process(ev(subject="a", id="A", data={"k": 1}))
    saved = eng.saved("t")
    fresh = Engine(s)
    fresh.restore("t", saved)
    (f,) = fresh.process(ev(subject="b", id="B", data={}))
    assert f.events["a"].data == {"k": 1}


def test_transform_feeds_filters_and_parameters():
    s = sensor(
        [dep("a", transform={"jq": ".body | {msg: .message, n: (.n * 2)}"},
             filters={"data": [{"path": "n", "type": "number", "value": ["10"]}]})],
        [{"template": {"name": "t", "http": {"url": "http://x", "payload": [
            {"src": {"dependencyName": "a", "dataKey": "msg"}, "dest": "m"}]}}}],
    )
    eng = Engine(s)
    assert eng.process(ev(subject="a", data={"body": {"message": "hi", "n": 4}})) == []
    (f,) = eng.process(ev(subject="a", data={"body": {"message": "hi", "n": 5}}))
    assert f.resolved == {"m": "hi"}
    assert f.events["a"].data == {"msg": "hi", "n": 10}


def test_lua_transform_and_transform_errors():
    s = sensor([dep("a", transform={"script": "event.len = string.len(event.msg) return event"})],
               [log_trigger("t", "a")])
    eng = Engine(s)
    (f,) = eng.process(ev(subject="a", data={"msg": "hello world"}))
    assert f.events["a"].data == {"len": 11, "msg": "hello world"}
    assert eng.process(ev(subject="a", data=[1, 2])) == []  # not an object: dropped


def test_unmatched_events_are_ignored_and_explained():
    eng = Engine(CONDITIONS_EXAMPLE, explain=True)
    assert eng.process(ev("other", "x", data={})) == []
    assert "no dependency listens" in eng.explain[-1]
