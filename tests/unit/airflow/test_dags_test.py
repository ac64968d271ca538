"""``airflow dags test`` of a DAG using every operator, on real NATS: the deferrable EventSensor runs its
trigger in line, the poking one checks the durable consumer, templated fields are rendered, and the
ActionOperator takes the sensor's XComArg. Runs on every Airflow the compatibility matrix claims."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_argo_events.testing.plugin import unique_name

pytestmark = pytest.mark.timeout(600)
AIRFLOW = str(Path(sys.executable).parent / "airflow")

DAG = '''
import json
import os
from datetime import datetime

from airflow.sdk import DAG, task

from airflow_argo_events.operators import ActionOperator, PublishEventOperator
from airflow_argo_events.sensors import EventSensor

DEP = {"name": "order", "eventSourceName": "{{ params.source }}", "eventName": "order",
       "filters": {"data": [{"path": "id", "type": "string", "value": ["{{ params.id }}"]}]}}

with DAG("every_operator", schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
         params={"source": "shop", "id": "7", "cond": "order", "type": "shop.order"}):
    emit = PublishEventOperator(task_id="emit", event_source="{{ params.source }}", event="order",
                                type="{{ params.type }}", data={"id": "{{ params.id }}", "run": "{{ run_id }}"})
    deferred = EventSensor(task_id="deferred", dependencies=[DEP], conditions="{{ params.cond }}", since="all",
                           deferrable=True, timeout=120)
    poked = EventSensor(task_id="poked", dependencies=[DEP], conditions="{{ params.cond }}", since="all",
                        deferrable=False, mode="poke", poke_interval=1, timeout=120)
    act = ActionOperator(task_id="act", firing=deferred.output, trigger={"template": {"name": "echo", "log": {}}})

    @task
    def report(deferred_firing, poked_firing, acted):
        with open(os.environ["RESULT_FILE"], "w") as f:
            json.dump({"deferred": deferred_firing, "poked": poked_firing, "acted": acted}, f)

    emit >> [deferred, poked]
    report(deferred.output, poked.output, act.output)
'''


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-dags-test")
    (home / "dags").mkdir()
    (home / "dags" / "every_operator.py").write_text(DAG)
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__UNIT_TEST_MODE": "False"}
    for args in (["db", "migrate"], ["dags", "reserialize"]):  # 3.0's `dags test` reads the DAG from the DB
        out = subprocess.run([AIRFLOW, *args], capture_output=True, text=True, env=env, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
    return home, env


def test_dags_test_runs_every_operator(airflow_home, nats_url):
    home, env = airflow_home
    stream = unique_name("dagstest")
    result = home / "result.json"
    env = {**env, "AIRFLOW_CONN_NATS_DEFAULT": f"{nats_url}?stream={stream}", "RESULT_FILE": str(result)}
    out = subprocess.run([AIRFLOW, "dags", "test", "every_operator"], capture_output=True, text=True, env=env,
                         timeout=500)
    log = out.stdout + out.stderr
    assert result.exists(), log[-5000:]
    got = json.loads(result.read_text())
    for name in ("deferred", "poked"):
        event = got[name]["events"]["order"]
        assert event["source"] == "shop" and event["type"] == "shop.order", event
        assert event["data"]["id"] == "7" and event["data"]["run"].startswith("manual__"), event
    assert got["deferred"]["events"]["order"]["id"] == got["poked"]["events"]["order"]["id"]
    assert got["acted"]["firing_id"] and got["acted"]["detail"]  # the ActionOperator ran on the sensor's XCom
