"""The Argo Events page's HTML (plugins/page.py): every value from a manifest, an event or the state is escaped."""

from __future__ import annotations

from airflow_argo_events.plugins.page import page, sensors_fragment

EVIL = '"><script>alert(1)</script><img src=x onerror=alert(2)>'


def _view(**over):
    view = {
        "sensor": EVIL, "kind": "AssetWatcher", "dags": [EVIL], "hidden_dags": 2, "target_dag": EVIL, "task": None,
        "assets": [{"id": 3, "uri": EVIL}], "runs": [{"dag_id": EVIL, "run_id": EVIL, "state": EVIL,
                                                    "queued_at": None}],
        "error": EVIL, "lag": 4, "graph_svg": "", "mermaid": EVIL,
        "status": {"state": EVIL, "stream": EVIL, "started": EVIL, "running": True, "counters": {EVIL: 1},
                   "warnings": [EVIL],
                   "triggers": [{"name": EVIL, "condition": EVIL, "waiting_for": EVIL,
                                 "dependencies": [{"name": EVIL, "satisfied": True, "event_id": EVIL,
                                                   "age_seconds": 3}, {"name": EVIL, "satisfied": False}],
                                 "last_firing": {"id": EVIL, "at": EVIL, "ok": False, "detail": EVIL, "status": 500,
                                                 "ref": EVIL},
                                 "pending": [{"id": EVIL, "running": True, "attempts": 2, "last_error": EVIL}]}],
                   "dependencies": [{"name": EVIL, "event_source": EVIL, "event_name": EVIL,
                                     "consumer": {"pending": 1, "ack_pending": 2},
                                     "last_event": {"id": EVIL, "verdict": EVIL, "age_seconds": 1}}]},
    }
    view.update(over)
    return view


def test_hostile_values_are_escaped_everywhere():
    html = page([_view()])
    assert "<script>alert" not in html and "<img src=x" not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 15
    # Links are built from quoted path segments, never from raw text.
    assert 'href="../dags/%22%3E%3Cscript%3E' in html
    assert "and 2 DAG(s) you may not read" in html


def test_what_a_reader_needs_is_on_the_card():
    v = _view(sensor="orders", dags=["etl"], target_dag="etl", assets=[], error=None, mermaid="flowchart LR",
              runs=[{"dag_id": "etl", "run_id": "argo-events__ab12", "state": "success", "queued_at": "t"}])
    v["status"]["triggers"][0].update(name="both", condition="a && b", waiting_for="waits for b",
                                      last_firing={"id": "ab12", "at": "t", "ok": True, "ref": "argo-events__ab12"},
                                      dependencies=[{"name": "a", "satisfied": True, "event_id": "e1",
                                                     "age_seconds": 120}, {"name": "b", "satisfied": False}])
    html = sensors_fragment([v])
    assert 'data-sensor="orders"' in html and "lag 4" in html and "reading" in html
    assert '<a class="run" target="_top" href="../dags/etl/runs/argo-events__ab12">argo-events__ab12</a>' in html
    assert "✓ a" in html and "… b" in html and "2m ago" in html and "waits for b" in html
    assert "2 attempt(s)" in html and "1 not delivered, 2 unacked" in html


def test_no_sensor_says_why():
    assert "No Argo Events sensor for DAG etl" in sensors_fragment([], "etl")


def test_a_capped_list_says_so():
    html = sensors_fragment([_view(sensor="one", error=None)], None, total=120)
    assert "Showing 1 of 120 sensors" in html
