"""The Airflow UI page's app (plugins/argo_events.py) on real NATS, with the auth filtering.

A real SensorTrigger runs and fires here; the page's app reads its state through
``read_sensor_status`` (the code path of ``argo-events sensor status``). Airflow's database
and auth manager are the two seams replaced: the e2e test (tests/e2e/test_ui_page.py)
runs the page in a real Airflow and a real browser.
"""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from fastapi import FastAPI, HTTPException

from airflow_argo_events.core.events import new_event
from airflow_argo_events.plugins import argo_events as plugin
from airflow_argo_events.plugins import sensors as sm
from airflow_argo_events.triggers import SensorTrigger

pytestmark = [
    pytest.mark.timeout(120),
    # Importing Airflow's API server modules imports starlette's TestClient (through svcs), which warns.
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`"),
]


class DagAuthManager:
    """Answers ``filter_authorized_dag_ids`` as an auth manager with per-DAG read rights would."""

    def __init__(self, rights: dict[str, set[str]]) -> None:
        self.rights = rights
        self.asked: list[tuple[str, frozenset[str], str, str | None]] = []

    def filter_authorized_dag_ids(self, *, dag_ids, user, method="GET", team_name=None):
        self.asked.append((user, frozenset(dag_ids), method, team_name))
        return {d for d in dag_ids if d in self.rights.get(user, set())}


def _rs(trigger_id, kwargs=None, consumers=(), task=None):
    return sm.RunningSensor(trigger_id, dict(kwargs or {}), 1, consumer_dags=list(consumers), task=task,
                            assets=[{"id": trigger_id, "name": "a", "uri": f"argo-events://x/{trigger_id}",
                                     "watcher": "w"}] if consumers else [])


# ------------------------------------------------------------------ who sees what (no NATS)


def test_a_sensor_is_shown_to_users_who_may_read_one_of_its_dags():
    alpha = _rs(1, {"dag_id": "alpha_target"}, consumers=["alpha"])
    beta = _rs(2, consumers=["beta"])
    task = _rs(3, task={"dag_id": "gamma", "task_id": "wait", "run_id": "r", "map_index": -1})
    teams = {"alpha": None, "alpha_target": None, "beta": "team-b", "gamma": None}
    am = DagAuthManager({"ann": {"alpha"}, "bob": {"beta", "gamma"}, "cat": {"alpha_target"}, "dan": set()})
    table = [("ann", [1]), ("bob", [2, 3]), ("cat", [1]), ("dan", [])]
    for user, expected in table:
        readable = sm.readable_dags(am, user, teams)
        assert [s.trigger_id for s in sm.visible([alpha, beta, task], readable)] == expected, user
    # Asked per team, as Airflow's own routes do in a multi-team deployment; only GET.
    asked = {(team, ids) for u, ids, method, team in am.asked if u == "bob" and method == "GET"}
    assert asked == {("team-b", frozenset({"beta"})), (None, frozenset({"alpha", "alpha_target", "gamma"}))}
    assert sm.airflow_actions(alpha) == ["Airflow DAG run of alpha_target", "asset event on argo-events://x/1"]
    assert sm.airflow_actions(task) == ["resumes task gamma.wait"]
    # What the graph says of DAGs and assets the user may not read.
    assert sm.airflow_actions(alpha, {"alpha"}, assets_ok=False) == [
        "Airflow DAG run of a DAG you may not read", "asset event on its asset"]
    assert sm.airflow_actions(task, set()) == ["resumes task a task of a DAG you may not read"]
    assert sm._scrub_owner({"kind": "EventSensor", "dag_id": "gamma", "task_id": "t", "run_id": "r",
                            "creates_runs_of": "alpha_target"}, {"alpha_target"}) == {
        "kind": "EventSensor", "creates_runs_of": "alpha_target"}
    # One DAG's tab shows only that DAG's sensors.
    readable = sm.readable_dags(am, "bob", teams)
    assert [s.trigger_id for s in sm.visible([alpha, beta, task], readable, dag_id="gamma")] == [3]
    assert sm.visible([alpha, beta, task], readable, dag_id="alpha") == []


# ------------------------------------------------------------------ the app, on real NATS


@pytest.fixture
def nats_conn(monkeypatch, nats_url, stream):
    monkeypatch.setenv("AIRFLOW_CONN_NATS_DEFAULT", f"{nats_url}?stream={stream.name}")


async def _consume(trigger, queue):
    async for event in trigger.run():
        queue.put_nowait(event)


@pytest.fixture
def users(monkeypatch):
    """Bearer tokens ``ann`` and ``bob`` are users; anything else is refused as Airflow's get_user does."""
    from airflow.api_fastapi.core_api import security

    async def get_user(request, _oauth_token=None, bearer_credentials=None):
        token = bearer_credentials.credentials if bearer_credentials else request.cookies.get("_token")
        if token in ("ann", "bob"):
            return token
        raise HTTPException(status_code=401, detail="Not authenticated")

    monkeypatch.setattr(security, "get_user", get_user)


async def test_the_page_shows_live_state_only_to_readers(bus, stream, nats_conn, users, monkeypatch):
    trigger = SensorTrigger(name="pair-ui", conditions="a && b", dependencies=[
        {"name": "a", "eventSourceName": "ui", "eventName": "a"},
        {"name": "b", "eventSourceName": "ui", "eventName": "b"}])
    secret = SensorTrigger(name="secret-ui", dependencies=[{"name": "s", "eventSourceName": "ui", "eventName": "s"}])
    queue: asyncio.Queue = asyncio.Queue()
    task = asyncio.create_task(_consume(trigger, queue))
    try:
        for _ in range(100):
            if (await bus.js.stream_info(stream.name)).state.consumer_count >= 2:
                break
            await asyncio.sleep(0.1)
        a1, b1, a2 = (new_event(source="ui", subject=s, type="webhook", data={"n": i})
                      for i, s in enumerate("aba"))
        for ev in (a1, b1):
            await bus.publish(ev)
        fired = await asyncio.wait_for(queue.get(), 20)
        await bus.publish(a2)  # a saved again; the condition now waits for b

        rights = DagAuthManager({"ann": {"consumer"}, "bob": {"other"}})
        sensors = [_rs(7, trigger.serialize()[1], consumers=["consumer"]),
                   _rs(8, secret.serialize()[1], consumers=["secret_dag"])]

        def load(user, dag_id):
            readable = sm.readable_dags(rights, user, {"consumer": None, "secret_dag": None})
            shown = sm.visible(sensors, readable, dag_id)
            return {"sensors": shown, "total": len(shown), "readable": readable, "runs": {}, "assets_ok": True}

        monkeypatch.setattr(plugin.app.state, "load", load, raising=False)  # the routes read the module's app state
        plugin.app.state.nats_settings = plugin._nats_settings
        root = FastAPI()  # mounted as the API server mounts plugin apps
        root.mount(plugin.URL_PREFIX, plugin.app)
        transport = httpx.ASGITransport(app=root)
        async with httpx.AsyncClient(transport=transport, base_url="http://airflow/argo-events") as client:
            async def status_of_a():
                for _ in range(100):
                    resp = await client.get("/api/sensors", headers={"Authorization": "Bearer ann"})
                    got = resp.json()
                    assert resp.status_code == 200, got
                    trig = got[0]["status"]["triggers"][0] if got and got[0]["status"] else None
                    if trig and trig["last_firing"] and [d["satisfied"] for d in trig["dependencies"]] == [True, False]:
                        return got
                    await asyncio.sleep(0.2)
                raise AssertionError(f"the page never showed the firing and the saved a: {got}")

            got = await status_of_a()
            assert [v["sensor"] for v in got] == ["pair-ui"]  # ann may not read secret_dag
            view = got[0]
            trig = view["status"]["triggers"][0]
            assert trig["last_firing"]["id"] == fired.payload["firing_id"] and trig["last_firing"]["ok"]
            assert trig["dependencies"][0]["event_id"] == a2.id
            assert "b" in trig["waiting_for"]
            assert view["dags"] == ["consumer"] and view["error"] is None
            assert {d["name"] for d in view["status"]["dependencies"]} == {"a", "b"}

            html = (await client.get("/", headers={"Authorization": "Bearer ann"})).text
            assert "pair-ui" in html and "secret-ui" not in html
            assert fired.payload["firing_id"] in html
            assert 'class="node condition waiting"' in html  # the graph shows the live state
            assert "waiting for: b" in html
            assert "asset event on argo-events://x/7" in html  # what a firing does in Airflow, on the graph
            assert re.search(r'<a target="_top" href="\.\./dags/consumer">consumer</a>', html)

            partial = (await client.get("/?partial=1", headers={"Authorization": "Bearer ann"})).text
            assert partial.lstrip().startswith('<section class="card sensor"') and "<html" not in partial

            bob = (await client.get("/api/sensors", headers={"Authorization": "Bearer bob"})).json()
            assert bob == []
            assert "No Argo Events sensor" in (await client.get("/", headers={"Authorization": "Bearer bob"})).text

            assert (await client.get("/api/sensors")).status_code == 401
            assert (await client.get("/api/sensors", headers={"Authorization": "Bearer eve"})).status_code == 401
            anon = await client.get("/")
            assert anon.status_code == 307 and "login" in anon.headers["location"]
            assert (await client.get("/?partial=1")).status_code == 401
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=10)


async def test_a_sensor_whose_state_cannot_be_read_shows_one_line_and_its_graph(users, monkeypatch):
    trigger = SensorTrigger(name="away", nats_conn_id="nats_nowhere",
                            dependencies=[{"name": "d", "eventSourceName": "s", "eventName": "e"}])
    monkeypatch.setenv("AIRFLOW_CONN_NATS_NOWHERE", "nats://user:hunter2@127.0.0.1:1?stream=nope")
    view = await sm.sensor_view(_rs(1, trigger.serialize()[1], consumers=["c"]), {"c"}, [], plugin._nats_settings,
                                assets_ok=False)
    assert view["assets"] == [] and "argo-events://" not in view["graph_svg"]
    assert view["status"] is None and view["error"] and "\n" not in view["error"]
    assert "hunter2" not in view["error"]
    assert "<svg" in view["graph_svg"] and view["sensor"] == "away"
