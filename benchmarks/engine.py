"""Sensor engine throughput on one core (DESIGN.md target: 60,000 events/s for case b).

    python benchmarks/engine.py [--n 50000]

Cases: (a) one dependency with a data filter; (b) a two-dependency ``&&`` condition with
data and expr filters; (c) a Lua script filter. The baseline, measured in the same run,
is a hand-written loop doing the same checks directly in Python (dict lookups, one regex,
one comparison) with no engine at all: the ratio shows what the engine's generality costs.
Rates are wall clock, best of 3; "per CPU s" divides by the process's CPU time instead, which
a busy machine (other processes on the same cores) disturbs much less.
"""

from __future__ import annotations

import argparse
import re
import time
from datetime import datetime, timedelta, timezone

from airflow_argo_events.core.events import Event
from airflow_argo_events.core.sensor.engine import Engine
from airflow_argo_events.core.spec.sensor import Sensor

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def events(n: int, subjects: list[str]) -> list[Event]:
    out = []
    for i in range(n):
        subject = subjects[i % len(subjects)]
        out.append(Event(id=f"e{i}", source="shop", subject=subject, type="webhook", time=T0 + timedelta(milliseconds=i),
                         data={"header": {"X-Kind": ["order"]},
                               "body": {"kind": "order-created", "amount": 50 + i % 100, "region": "eu-west",
                                        "items": [{"sku": "a"}, {"sku": "b"}]}}))
    return out


DATA_FILTER = {"data": [{"path": "body.kind", "type": "string", "value": ["^order"]},
                        {"path": "body.amount", "type": "number", "comparator": ">=", "value": ["10"]}]}
EXPR_FILTER = {"exprs": [{"expr": 'amount > 20 && region == "eu-west"',
                          "fields": [{"name": "amount", "path": "body.amount"}, {"name": "region", "path": "body.region"}]}]}


def sensor(deps: list[dict], conditions: str) -> Sensor:
    return Sensor.model_validate({"metadata": {"name": "bench"}, "spec": {
        "dependencies": deps,
        "triggers": [{"template": {"name": "t", "conditions": conditions, "http": {"url": "http://x", "payload": [
            {"src": {"dependencyName": deps[0]["name"], "dataKey": "body.amount"}, "dest": "amount"}]}}}]}})


CASES = {
    "a: 1 dep, data filter": (
        sensor([{"name": "o", "eventSourceName": "shop", "eventName": "order", "filters": DATA_FILTER}], "o"),
        ["order"]),
    "b: a && b, data + expr filters": (
        sensor([{"name": "a", "eventSourceName": "shop", "eventName": "order", "filters": {**DATA_FILTER}},
                {"name": "b", "eventSourceName": "shop", "eventName": "pay", "filters": {**EXPR_FILTER}}], "a && b"),
        ["order", "pay"]),
    "c: 1 dep, Lua script filter": (
        sensor([{"name": "o", "eventSourceName": "shop", "eventName": "order",
                 "filters": {"script": 'return event.body.amount >= 10 and event.body.kind == "order-created"'}}], "o"),
        ["order"]),
}


def baseline(evs: list[Event]) -> int:
    rx = re.compile("^order")
    fired = 0
    for e in evs:
        body = e.data["body"]
        if rx.search(body["kind"]) and body["amount"] >= 10 and (body["amount"] > 20 and body["region"] == "eu-west"):
            fired += 1
    return fired


def rate(fn, n: int) -> tuple[float, float]:
    """(events/s by the wall clock, events/s per CPU second of this process)."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return n / (time.perf_counter() - t0), n / max(time.process_time() - c0, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50_000)
    args = parser.parse_args()
    base_events = events(args.n, ["order"])
    base = max(rate(lambda: baseline(base_events), args.n)[0] for _ in range(3))
    print(f"baseline (hand-written checks, no engine): {base:,.0f} events/s")
    print(f"{'case':34}{'events/s':>12}{'per CPU s':>11}{'firings':>9}{'vs target 60k':>15}{'vs baseline':>13}")
    for name, (spec, subjects) in CASES.items():
        evs = events(args.n, subjects)
        best, best_cpu, fired = 0.0, 0.0, 0
        for _ in range(3):
            eng = Engine(spec)
            count = [0]

            def run(eng=eng, count=count, evs=evs) -> None:
                for e in evs:
                    count[0] += len(eng.process(e))

            wall, cpu = rate(run, args.n)
            best, best_cpu = max(best, wall), max(best_cpu, cpu)
            fired = count[0]
        print(f"{name:34}{best:12,.0f}{best_cpu:11,.0f}{fired:9}{best / 60000:14.2f}x{best / base:12.3f}x")


if __name__ == "__main__":
    main()
