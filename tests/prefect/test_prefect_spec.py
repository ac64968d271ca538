"""The Prefect extensions offline: manifests, validate, the firing's flow-run parameters, settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from airflow_argo_events.core.actions.prefect import PrefectApiSettings, event_id_for
from airflow_argo_events.core.events import new_event
from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.sensor.engine import Engine
from airflow_argo_events.core.spec.loader import parse_manifest

CLI = str(Path(sys.executable).parent / "argo-events")


def sensor_doc(prefect: dict) -> dict:
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Sensor", "metadata": {"name": "s"}, "spec": {
        "dependencies": [{"name": "order", "eventSourceName": "shop", "eventName": "order"}],
        "triggers": [{"template": {"name": "run", "prefect": prefect}}]}}


@pytest.mark.parametrize(("deployment", "ok"), [
    ("orders/process", True), ("my flow/nightly run", True), ("81a44672-f29b-46dc-a0fb-140be584291f", True),
    ("orders", False), ("orders/", False), ("/process", False), ("a/b/c", False), ("", False),
])
def test_deployment_is_flow_slash_name_or_an_id(deployment, ok):
    doc = sensor_doc({"deployment": deployment})
    if ok:
        parse_manifest(doc, None, "Sensor")
    else:
        with pytest.raises(SpecError, match=r"spec.triggers\[0\].template.prefect.deployment"):
            parse_manifest(doc, None, "Sensor")


def test_a_parameter_without_dest_names_its_field():
    doc = sensor_doc({"deployment": "f/d", "parameters": [{"src": {"dependencyName": "order"}}]})
    with pytest.raises(SpecError, match=r"prefect.parameters\[0\].dest"):
        parse_manifest(doc, None, "Sensor")


def test_parameters_build_the_flow_run_parameters_and_leave_the_block_alone():
    doc = sensor_doc({"deployment": "f/d", "tags": ["t"], "parameters": [
        {"src": {"dependencyName": "order", "dataKey": "body.id"}, "dest": "order.id"},
        {"src": {"dependencyName": "order", "dataKey": "body.n", "useRawData": True}, "dest": "n"},
        {"src": {"dependencyName": "order", "dataKey": "body.missing", "value": "none"}, "dest": "note"}]})
    engine = Engine(parse_manifest(doc, None, "Sensor"))
    (firing,) = engine.process(new_event(source="shop", subject="order", type="webhook",
                                         data={"body": {"id": "A1", "n": 3}}, id="e1"))
    assert firing.resolved == {"order": {"id": "A1"}, "n": 3, "note": "none"}
    assert firing.body["deployment"] == "f/d" and firing.body["tags"] == ["t"]


def test_trigger_level_parameters_can_choose_the_deployment():
    doc = sensor_doc({"deployment": "f/placeholder"})
    doc["spec"]["triggers"][0]["parameters"] = [
        {"src": {"dependencyName": "order", "dataKey": "body.deployment"}, "dest": "prefect.deployment"}]
    (firing,) = Engine(parse_manifest(doc, None, "Sensor")).process(
        new_event(source="shop", subject="order", type="webhook", data={"body": {"deployment": "f/real"}}, id="e"))
    assert firing.body["deployment"] == "f/real"


def test_validate_names_the_extensions_and_argo_only_refuses_them(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(sensor_doc({"deployment": "f/d"})))
    out = subprocess.run([CLI, "validate", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "uses extensions beyond Argo Events: prefect trigger (spec.triggers[0].template.prefect)" in out.stdout
    out = subprocess.run([CLI, "validate", "--argo-only", str(path)], capture_output=True, text=True)
    assert out.returncode == 2 and "prefect trigger is an extension, not Argo Events (refused by --argo-only)" \
        in out.stderr
    es = tmp_path / "es.yaml"
    es.write_text(yaml.safe_dump({"apiVersion": "argoproj.io/v1alpha1", "kind": "EventSource",
                                  "metadata": {"name": "p"}, "spec": {"prefect": {"all": {}}}}))
    out = subprocess.run([CLI, "validate", str(es)], capture_output=True, text=True)
    assert out.returncode == 0 and "prefect event source (spec.prefect)" in out.stdout, out.stdout


def test_api_settings_come_from_the_environment_then_the_active_profile(tmp_path):
    profiles = tmp_path / "profiles.toml"
    profiles.write_text('active = "prod"\n[profiles.prod]\nPREFECT_API_URL = "https://prefect.example/api"\n'
                        'PREFECT_API_KEY = "pnu_x"\n[profiles.local]\nPREFECT_API_URL = "http://127.0.0.1:4200/api"\n')
    env = {"PREFECT_PROFILES_PATH": str(profiles)}
    if sys.version_info >= (3, 11):
        s = PrefectApiSettings.from_env(env)
        assert (s.url, s.api_key) == ("https://prefect.example/api", "pnu_x")
        assert s.headers() == {"Authorization": "Bearer pnu_x"}
        assert PrefectApiSettings.from_env({**env, "PREFECT_PROFILE": "local"}).url == "http://127.0.0.1:4200/api"
    s = PrefectApiSettings.from_env({**env, "PREFECT_API_URL": "http://h:1/api/", "PREFECT_API_AUTH_STRING": "u:p"})
    assert s.url == "http://h:1/api" and s.headers() == {"Authorization": "Basic dTpw"}


def test_event_ids_are_derived_from_firing_ids():
    assert event_id_for("abc") == event_id_for("abc") != event_id_for("abd")


@pytest.mark.parametrize(("field", "value", "ok"), [
    ("resumeOverlap", "30s", True), ("resumeOverlap", "-1s", False), ("resumeOverlap", "soon", False),
    ("storageDelay", "1m", True), ("storageDelay", "-5s", False), ("storageDelay", "later", False),
])
def test_prefect_source_durations_are_checked(field, value, ok):
    doc = {"apiVersion": "argoproj.io/v1alpha1", "kind": "EventSource", "metadata": {"name": "p"},
           "spec": {"prefect": {"runs": {field: value}}}}
    if ok:
        parse_manifest(doc, None, "EventSource")
    else:
        with pytest.raises(SpecError, match=rf"spec.prefect.runs.{field}"):
            parse_manifest(doc, None, "EventSource")
