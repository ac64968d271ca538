"""State names derived from the whole sensor definition (issue 11, "also found by reading the code")."""

from __future__ import annotations

import copy
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import pytest
import yaml

from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.runtime.identity import (
    MAX_STATE_NAME,
    check_state_name,
    definition_hash,
    is_valid_state_name,
    state_name,
)
from airflow_argo_events.core.spec.loader import load_one, parse_manifest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "sensors"
DEP_A = {"name": "d", "eventSourceName": "shop", "eventName": "order"}
DEP_B = {"name": "d", "eventSourceName": "shop", "eventName": "refund"}


def doc(**spec_changes):
    base = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Sensor", "metadata": {"name": "orders"},
            "spec": {"dependencies": [dict(DEP_A)],
                     "triggers": [{"template": {"name": "fire", "log": {}}}]}}
    base["spec"].update(spec_changes)
    return parse_manifest(base, None, "Sensor").dump()


def test_same_definition_same_name_whatever_its_form(tmp_path):
    d = doc()
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(d))
    model = load_one(path, "Sensor")
    names = {state_name(d, "default", "sensor"), state_name(model, "default", "sensor"),
             state_name(copy.deepcopy(model.dump()), "default", "sensor"),
             state_name(parse_manifest(model.dump(), None, "Sensor").dump(), "default", "sensor")}
    assert len(names) == 1
    assert names.pop().startswith("sensor-orders-default-")


def test_a_default_written_out_is_not_a_change():
    d = doc()
    explicit = copy.deepcopy(d)
    explicit["spec"]["triggers"][0]["atLeastOnce"] = False
    assert state_name(d, "default", "p") == state_name(explicit, "default", "p")
    assert definition_hash(d, "default") == definition_hash(explicit, "default")


@pytest.mark.parametrize("change", [
    {"dependencies": [DEP_B]},
    {"dependencies": [{**DEP_A, "filters": {"data": [{"path": "id", "type": "number", "value": ["1"]}]}}]},
    {"dependencies": [DEP_A, {**DEP_B, "name": "e"}]},
    {"triggers": [{"template": {"name": "other", "log": {}}}]},
    {"triggers": [{"template": {"name": "fire", "log": {"intervalSeconds": 5}}}]},
], ids=["event", "filter", "extra-dependency", "trigger-name", "trigger-body"])
def test_any_change_in_spec_is_another_sensor(change):
    assert state_name(doc(), "default", "p") != state_name(doc(**change), "default", "p")


def test_name_stream_prefix_and_extra_are_part_of_it():
    d = doc()
    other = copy.deepcopy(d)
    other["metadata"]["name"] = "orders2"
    base = state_name(d, "default", "p")
    assert base != state_name(other, "default", "p")
    assert base != state_name(d, "other", "p")
    assert base != state_name(d, "default", "q")
    assert base != state_name(d, "default", "p", extra={"dag_id": "x"})
    assert state_name(d, "default", "p", extra={"dag_id": "x"}) != state_name(d, "default", "p", extra={"dag_id": "y"})


def test_names_are_valid_buckets_even_for_hostile_names():
    d = doc()
    for name in ("a" * 500, "ünïcödé.naME with spaces/and*dots>", "...", "-_-"):
        d["metadata"]["name"] = name
        got = state_name(d, "default", "airflow")
        assert is_valid_state_name(got), got
        assert len(got) <= MAX_STATE_NAME
    long_prefix = state_name(doc(), "s", "ti-" + "f" * 40)
    assert is_valid_state_name(long_prefix)
    # A prefix cut for readability still counts whole: two long prefixes never meet.
    assert long_prefix != state_name(doc(), "s", "ti-" + "f" * 39 + "e")


def test_pinned_value():
    """Changing the identity moves every user's sensors to new, empty state: do it only on purpose."""
    assert state_name(doc(), "default", "sensor") == PINNED


def test_explicit_state_names_are_checked():
    assert check_state_name("keep-me_1") == "keep-me_1"
    for bad in ("", "a.b", "a b", "x" * (MAX_STATE_NAME + 1), "KV>"):
        with pytest.raises(SpecError, match="not a valid state name"):
            check_state_name(bad)


def test_same_name_in_a_fresh_process():
    """No process-local input (hash seeds, time, randomness): a restart finds the same state."""
    code = ("import sys, json; from airflow_argo_events.core.runtime.identity import state_name; "
            "print(state_name(json.loads(sys.argv[1]), 'default', 'sensor'))")
    import json

    out = subprocess.run([sys.executable, "-c", code, json.dumps(doc())], capture_output=True, text=True, timeout=60,
                         env={"PYTHONHASHSEED": "12345", "PATH": ""}, check=True)
    assert out.stdout.strip() == state_name(doc(), "default", "sensor")


# ---------------------------------------------------------------- the Airflow adapters


def _sensor_trigger():
    return import_module("airflow_argo_events.triggers").SensorTrigger


def test_two_unnamed_sensor_triggers_with_different_dependencies_do_not_share_state():
    SensorTrigger = _sensor_trigger()
    a = SensorTrigger(dependencies=[DEP_A])
    b = SensorTrigger(dependencies=[DEP_B])
    assert a.name == b.name == "airflow-sensor"
    assert a.state_for("default") != b.state_for("default")
    # Same dependencies, one creating DAG runs: two consumers of the same events, two states.
    c = SensorTrigger(dependencies=[DEP_A], dag_id="x", airflow_conn_id="api")
    assert c.state_for("default") != a.state_for("default")


def test_sensor_trigger_keeps_its_state_across_serialisation():
    from airflow.serialization.serialized_objects import BaseSerialization

    SensorTrigger = _sensor_trigger()
    for trigger in (SensorTrigger(dependencies=[DEP_A], conditions="d"),
                    SensorTrigger(sensor=str(EXAMPLES / "trigger-conditions.yaml"), trigger="trigger02",
                                  dag_id="x", airflow_conn_id="api")):
        classpath, kwargs = trigger.serialize()
        rebuilt = SensorTrigger(**BaseSerialization.deserialize(BaseSerialization.serialize(kwargs)))
        again = SensorTrigger(**rebuilt.serialize()[1])
        assert trigger.state_for("default") == rebuilt.state_for("default") == again.state_for("default")


def test_sensor_trigger_state_name_override():
    SensorTrigger = _sensor_trigger()
    t = SensorTrigger(dependencies=[DEP_A], state_name="orders-v1")
    assert t.state_for("default") == "orders-v1"
    assert SensorTrigger(**t.serialize()[1]).state_for("other") == "orders-v1"
    with pytest.raises(SpecError, match="state_name"):
        SensorTrigger(dependencies=[DEP_A], state_name="has.dot")


PINNED = "sensor-orders-default-c5c0a6fade406050"
