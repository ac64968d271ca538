"""Lost replies under the real Airflow triggerer: the server stored a KV write, the trigger never heard.

tests/faults/test_lost_replies.py loses replies inside one process by wrapping
``StateStore``; here a SensorTrigger in the session's triggerer talks to the private
nats-server through a proxy (tests/nats_proxy.py, the ``nats_lossy`` connection) that drops
the server's answers to a share of its KV puts and deletes, on the wire. Each lost answer is
a write the server applied and the trigger times out on and tries again: a revision check
that now fails against its own write, a journal entry stored twice, a delete repeated.
Every event must still give exactly one DAG run.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tests.e2e.test_airflow_e2e import ev, publish
from tests.e2e.test_airflow_faults import _settle

pytestmark = [pytest.mark.timeout(300), pytest.mark.e2e]

EVENTS = 20


def test_sensor_trigger_gives_one_run_per_event_when_kv_write_replies_are_lost(
        airflow, private_nats_server, lost_reply_proxy, stream_name):
    dag = "lossy_target"
    proxy = lost_reply_proxy
    assert airflow.runs(dag) == []
    before = proxy.counts()
    events = [ev("lossy", {"i": i}) for i in range(EVENTS)]
    proxy.armed = True
    try:
        for event in events:  # a moment apart: many batches, so many KV writes
            publish(private_nats_server.url, stream_name, [event])  # straight to the server
            time.sleep(0.2)
        runs = _settle(airflow, dag, EVENTS, timeout=180, sensor="lossy")
    finally:
        proxy.armed = False
    after = proxy.counts()
    requests = {k: n - before["requests"].get(k, 0) for k, n in after["requests"].items()}
    subjects = {k: n - before["subjects"].get(k, 0) for k, n in after["subjects"].items()
                if n > before["subjects"].get(k, 0)}
    dropped = {k: n - before["dropped"].get(k, 0) for k, n in after["dropped"].items()}
    confs = airflow.api("GET", f"/dags/{dag}/dagRuns?limit=100")["dag_runs"]
    seen = Counter(run["conf"]["events"]["x"]["id"] for run in confs)
    distinct = {r[0] for r in runs}
    print(f"\nlost replies ({proxy.rates['kv']:.0%} of KV writes) under a SensorTrigger in the triggerer: "
          f"{EVENTS} events, {len(runs)} runs, lost {EVENTS - len(set(seen) & {e.id for e in events})}, "
          f"duplicated {len(runs) - len(distinct)}; requests through the proxy {requests}, replies dropped "
          f"{dropped}; proxy errors {proxy.errors}; requests by subject {subjects}")
    assert dropped.get("kv", 0) > 0, f"the proxy lost no reply: {requests}"
    assert proxy.errors == []
    assert len(runs) == EVENTS, runs
    assert len(distinct) == EVENTS
    assert seen == Counter({e.id: 1 for e in events}), seen
