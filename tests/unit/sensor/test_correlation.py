"""Correlation keys, windows, thresholds and maxPending (an extension of Argo's conditions).

Table-driven: each case is a trigger's condition and ``correlation`` block, a list of
events ``(dependency, key value, seconds after T0)`` and the firings expected, as
``(key, {dependency: event id})``, plus the keys left pending.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from airflow_argo_events.core.sensor.engine import Engine, firing_id
from airflow_argo_events.core.spec.sensor import Sensor

from .helpers import T0, ev

MISSING = object()


def shop(correlation: dict[str, Any] | None, conditions: str = "order && payment",
         deps: tuple[str, ...] = ("order", "payment"), **template: Any) -> Sensor:
    tpl: dict[str, Any] = {"name": "ship", "conditions": conditions, "log": {}, **template}
    if correlation is not None:
        tpl["correlation"] = correlation
    return Sensor.model_validate({"metadata": {"name": "shop"}, "spec": {
        "dependencies": [{"name": d, "eventSourceName": "shop", "eventName": d} for d in deps],
        "triggers": [{"template": tpl}]}})


KEYS = {"keys": {"order": "body.id", "payment": "body.orderId"}}
PATHS = {"order": "id", "payment": "orderId", "failure": "job", "success": "job"}


def event(dep: str, key: Any, at: float, n: int) -> Any:
    body = {} if key is MISSING else {PATHS.get(dep, "id"): key}
    return ev("shop", dep, data={"body": body}, id=f"{dep[0]}{n}", at=T0 + timedelta(seconds=at))


@dataclass
class Case:
    name: str
    correlation: dict[str, Any] | None
    events: list[tuple[str, Any, float]]
    firings: list[tuple[str | None, dict[str, str]]]
    pending: list[str] = field(default_factory=list)
    conditions: str = "order && payment"
    deps: tuple[str, ...] = ("order", "payment")
    template: dict[str, Any] = field(default_factory=dict)


MIN = 60.0
CASES = [
    Case("20 orders then 20 payments: 20 firings, each its own pair", KEYS,
         [("order", i, i) for i in range(20)] + [("payment", i, 20 + i) for i in range(20)],
         [(str(i), {"order": f"o{i}", "payment": f"p{20 + i}"}) for i in range(20)]),
    Case("Argo without keys: the latest per dependency, one firing", None,
         [("order", i, i) for i in range(20)] + [("payment", i, 20 + i) for i in range(20)],
         [(None, {"order": "o19", "payment": "p20"})], ["_"]),
    Case("payments first, in another order", KEYS,
         [("payment", 2, 0), ("payment", 1, 1), ("order", 1, 2), ("order", 3, 3), ("order", 2, 4)],
         [("1", {"order": "o2", "payment": "p1"}), ("2", {"order": "o4", "payment": "p0"})], ["3"]),
    Case("keys compare as text: 42 and '42' pair", KEYS,
         [("order", 42, 0), ("payment", "42", 1)], [("42", {"order": "o0", "payment": "p1"})]),
    Case("the latest event of a key wins (Argo's rule, per key)", KEYS,
         [("order", "a", 0), ("order", "a", 1), ("payment", "a", 2)], [("a", {"order": "o1", "payment": "p2"})]),
    Case("missing key: rejected like a filter", KEYS,
         [("order", MISSING, 0), ("payment", MISSING, 1)], []),
    Case("object key: rejected", KEYS, [("order", {"x": 1}, 0), ("payment", {"x": 1}, 1)], []),
    Case("null key: rejected", KEYS, [("order", None, 0), ("payment", None, 1)], []),
    Case("bool keys are text too", KEYS, [("order", True, 0), ("payment", "true", 1)],
         [("true", {"order": "o0", "payment": "p1"})]),
    Case("within the window: fires", {**KEYS, "window": "15m"},
         [("order", 1, 0), ("payment", 1, 14 * MIN)], [("1", {"order": "o0", "payment": "p1"})]),
    Case("past the window: the order expired, the payment waits", {**KEYS, "window": "15m"},
         [("order", 1, 0), ("payment", 1, 15 * MIN)], [], ["1"]),
    Case("the window expires other keys too (the watermark moves)", {**KEYS, "window": "15m"},
         [("order", 1, 0), ("order", 2, 10 * MIN), ("order", 3, 16 * MIN)], [], ["2", "3"]),
    Case("an event older than the window on arrival is rejected", {**KEYS, "window": "15m"},
         [("order", 1, 20 * MIN), ("payment", 1, 0)], [], ["1"]),
    Case("window without keys: a dependency's old event no longer counts", {"window": "5m"},
         [("order", "x", 0), ("payment", "y", 6 * MIN), ("order", "z", 7 * MIN)],
         [(None, {"order": "o2", "payment": "p1"})]),
    Case("window without keys, in time", {"window": "5m"},
         [("order", "x", 0), ("payment", "y", 4 * MIN)], [(None, {"order": "o0", "payment": "p1"})]),
    Case("threshold: 3 failures in 5 minutes", {"window": "5m", "threshold": {"failure": 3}},
         [("failure", "j", 0), ("failure", "j", 3 * MIN), ("failure", "j", 6 * MIN), ("failure", "j", 7 * MIN),
          ("failure", "j", 8 * MIN), ("failure", "j", 20 * MIN)],
         [(None, {"failure": "f3"})], ["_"], conditions="failure", deps=("failure",)),
    Case("threshold per key", {"keys": {"failure": "body.job"}, "threshold": {"failure": 2}},
         [("failure", "a", 0), ("failure", "b", 1), ("failure", "a", 2), ("failure", "b", 3)],
         [("a", {"failure": "f2"}), ("b", {"failure": "f3"})], conditions="failure", deps=("failure",)),
    Case("threshold && another dependency", {"keys": {"failure": "body.job", "success": "body.job"},
                                             "threshold": {"failure": 2}},
         [("failure", "a", 0), ("success", "a", 1), ("failure", "a", 2)],
         [("a", {"failure": "f2", "success": "s1"})], deps=("failure", "success"), conditions="failure && success"),
    Case("maxPending: the oldest partial match is evicted", {**KEYS, "maxPending": 2},
         [("order", 1, 0), ("order", 2, 1), ("order", 3, 2), ("payment", 3, 3), ("payment", 1, 4)],
         [("3", {"order": "o2", "payment": "p3"})], ["2", "1"]),
    Case("conditionsReset clears every key", KEYS,
         [("order", 1, 0), ("order", 2, 10), ("payment", 1, 3600), ("order", 1, 3601)],
         [("1", {"order": "o3", "payment": "p2"})],
         template={"conditionsReset": [{"byTime": {"cron": "0 * * * *"}}]}),
    Case("three dependencies, one key", {"keys": {"order": "body.id", "payment": "body.orderId",
                                                  "shipped": "body.id"}},
         [("order", 1, 0), ("shipped", 2, 1), ("payment", 1, 2), ("shipped", 1, 3)],
         [("1", {"order": "o0", "payment": "p2", "shipped": "s3"})], ["2"],
         conditions="order && payment && shipped", deps=("order", "payment", "shipped")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_correlation(case: Case):
    eng = Engine(shop(case.correlation, case.conditions, case.deps, **case.template))
    got = []
    for n, (dep, key, at) in enumerate(case.events):
        for f in eng.process(event(dep, key, at, n)):
            got.append((f.key, {d: e.id for d, e in f.events.items()}))
            assert f.id == firing_id("shop", "ship", f.events, f.key, f.counted)
    assert got == case.firings
    assert list(eng.matches("ship")) == case.pending


def test_threshold_firing_counts_every_event_in_its_id():
    eng = Engine(shop({"threshold": {"failure": 3}}, "failure", ("failure",)))
    fired = [f for n in range(3) for f in eng.process(event("failure", "j", n, n))]
    (f,) = fired
    assert f.counted == {"failure": ["f0", "f1", "f2"]} and f.events["failure"].id == "f2"
    assert f.summary()["counted"] == {"failure": ["f0", "f1", "f2"]}
    assert f.id != firing_id("shop", "ship", f.events)


def test_firing_id_includes_the_key():
    eng = Engine(shop(KEYS))
    eng.process(event("order", 7, 0, 0))
    (f,) = eng.process(event("payment", 7, 1, 1))
    assert f.key == "7" and f.summary()["key"] == "7"
    assert f.id == firing_id("shop", "ship", f.events, "7") != firing_id("shop", "ship", f.events)


def test_key_rejection_is_explained_like_a_filter():
    eng = Engine(shop(KEYS), explain=True)
    eng.process(event("order", MISSING, 0, 0))
    eng.process(event("payment", [1], 1, 1))
    assert "  dependency order: rejected by trigger ship: correlation key body.id: missing from the event" \
        in eng.explain
    assert "  dependency payment: rejected by trigger ship: correlation key body.orderId: is an array, " \
           "not a string, number or bool" in eng.explain
    assert eng.matches("ship") == {}


def test_eviction_is_counted_and_explained():
    eng = Engine(shop({**KEYS, "maxPending": 1}), explain=True)
    for n in range(3):
        eng.process(event("order", n, n, n))
    assert eng.evictions == 2 and eng.take_evictions() == {"ship": 2} and eng.take_evictions() == {}
    assert "  ship[1]: evicted, more than maxPending 1 keys pending (dropped order)" in eng.explain


def test_waiting_for_names_the_key_and_threshold():
    eng = Engine(shop({"keys": {"failure": "body.job", "success": "body.job"}, "threshold": {"failure": 3}},
                      "failure && success", ("failure", "success")))
    eng.process(event("failure", "a", 0, 0))
    assert eng.waiting_for("ship", "a") == "waits for failure + success (failure has 1 of 3)"
    assert eng.waiting_for("ship", "nope") == "waits for failure + success"


def test_a_failing_event_leaves_every_key_as_it_was(monkeypatch):
    """All or nothing, as for plain triggers: an error after a key was evicted or changed
    puts every key back (the runtime then sets the one message aside)."""
    eng = Engine(shop({**KEYS, "maxPending": 2, "window": "1h"}), explain=True)
    eng.process(event("order", 1, 0, 0))
    eng.process(event("order", 2, 1, 1))

    def state():
        return {k: {d: e.id for d, e in v.items()} for k, v in eng.matches("ship").items()}

    before = state()

    def boom(*a, **k):
        raise RuntimeError("exploded")

    monkeypatch.setattr(eng, "_fire", boom)
    with pytest.raises(RuntimeError):
        eng.process(event("payment", 2, 2, 2))  # would fire key 2
    assert state() == before
    monkeypatch.setattr(eng, "_waiting", boom)
    with pytest.raises(RuntimeError):
        eng.process(event("order", 3, 3, 3))  # evicts key 1, then fails
    assert state() == before and eng.evictions == 1  # counted when it happened, undone in the state
    monkeypatch.undo()
    assert [f.key for f in eng.process(event("payment", 2, 4, 4))] == ["2"]
    assert state() == {"1": {"order": "o0"}}


def test_restore_round_trip_per_key():
    eng = Engine(shop({**KEYS, "window": "15m"}))
    eng.process(event("order", 1, 0, 0))
    eng.process(event("order", 2, 1, 1))
    fresh = Engine(shop({**KEYS, "window": "15m"}))
    for key, events in eng.matches("ship").items():
        fresh.restore("ship", events, key)
    assert [f.key for f in fresh.process(event("payment", 2, 2, 2))] == ["2"]
    assert list(fresh.matches("ship")) == ["1"]
    assert fresh.process(event("payment", 1, 16 * MIN, 3)) == []  # the restored order expired


# ---------------------------------------------------------------- validation and extensions

@pytest.mark.parametrize("correlation, conditions, message", [
    ({"keys": {"order": "body.id"}}, "order && payment", "correlation.keys: dependency 'payment' has no key path"),
    ({"keys": {"order": "a", "payment": "b", "refund": "c"}}, "order && payment",
     "correlation.keys.refund: 'refund' is not a dependency"),
    ({"window": "soon"}, "order && payment", "correlation.window: invalid duration"),
    ({"window": "0s"}, "order && payment", "correlation.window: must be a positive duration"),
    ({"maxPending": 10}, "order && payment", "correlation.maxPending: bounds the number of pending keys"),
    ({**KEYS, "maxPending": 0}, "order && payment", "correlation.maxPending: must be at least 1"),
    ({"threshold": {"order": 0}}, "order && payment", "correlation.threshold.order: must be between 1"),
    ({"window": "5m"}, "order || payment", "has no && and no threshold above 1"),
    ({**KEYS, "keys": {"order": "", "payment": "x"}}, "order && payment", "keys.order: the GJSON path must not be"),
])
def test_invalid_correlation_names_the_field(correlation, conditions, message):
    with pytest.raises(ValidationError) as err:
        shop(correlation, conditions)
    assert message in str(err.value)


def test_a_plain_manifest_uses_no_extension_and_a_correlated_one_does():
    from airflow_argo_events.core.spec.extensions import extensions_used

    assert extensions_used(shop(None)) == []
    assert extensions_used(shop({**KEYS, "window": "15m", "threshold": {"order": 2}})) == [
        ("spec.triggers[0].template.correlation.keys", "correlation keys"),
        ("spec.triggers[0].template.correlation.window", "correlation window"),
        ("spec.triggers[0].template.correlation.threshold", "threshold")]


# ---------------------------------------------------------------- property: one constant key == Argo

CONDITIONS = ["a && b", "(a || b) && c", "a || (b && c)", "a && b && c", "a && !b", "a && c2", "(c2 || b) && a"]


def three(conditions: str, keyed: bool) -> Sensor:
    tpl: dict[str, Any] = {"name": "t", "conditions": conditions, "log": {},
                           "conditionsReset": [{"byTime": {"cron": "0 * * * *"}}]}
    if keyed:
        from airflow_argo_events.core.sensor.conditions import Condition

        tpl["correlation"] = {"keys": {n: "k" for n in Condition.parse(conditions).names}}
    deps = [{"name": d, "eventSourceName": "es", "eventName": d,
             "filters": {"data": [{"path": "pass", "type": "bool", "value": ["true"]}]}} for d in "abc"]
    deps.append({"name": "c2", "eventSourceName": "es", "eventName": "a"})  # a second dependency on one event
    return Sensor.model_validate({"metadata": {"name": "p"}, "spec": {"dependencies": deps, "triggers": [
        {"template": tpl}]}})


@settings(max_examples=300, deadline=None, database=None)
@given(conditions=st.sampled_from(CONDITIONS),
       steps=st.lists(st.tuples(st.sampled_from("abc"), st.booleans(), st.integers(0, 7),
                                st.integers(0, 2400)), max_size=40))
def test_one_constant_key_behaves_exactly_like_the_plain_engine(conditions, steps):
    plain, keyed = Engine(three(conditions, False)), Engine(three(conditions, True))
    at = 0
    for subject, passes, id_, gap in steps:
        at += gap
        e = ev("es", subject, data={"k": "x", "pass": passes}, id=f"{subject}{id_}", at=at)
        got_plain, got_keyed = plain.process(e), keyed.process(e)
        assert [(f.trigger, {d: x.id for d, x in f.events.items()}, f.resolved) for f in got_keyed] == \
               [(f.trigger, {d: x.id for d, x in f.events.items()}, f.resolved) for f in got_plain]
        assert [f.id for f in got_keyed] == [firing_id("p", f.trigger, f.events, "x") for f in got_plain]
        assert {d: x.id for d, x in keyed.saved("t", "x").items()} == \
               {d: x.id for d, x in plain.saved("t").items()}
        assert keyed.waiting_for("t", "x") == plain.waiting_for("t")
