"""The provider registers with a real Airflow, and NatsHook reads real connections."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from airflow_argo_events.get_provider_info import get_provider_info


def test_provider_info_matches_distribution():
    from importlib.metadata import distribution

    info = get_provider_info()
    assert info["package-name"] == distribution("airflow-argo-events").metadata["Name"]
    assert info["name"] and info["description"]


def test_provider_info_passes_airflows_schema():
    from importlib.resources import files

    import jsonschema

    schema = json.loads(files("airflow").joinpath("provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_airflow_discovers_provider_and_connection_type(tmp_path):
    code = (
        "from airflow.providers_manager import ProvidersManager\n"
        "pm = ProvidersManager()\n"
        "import json\n"
        "hook = pm.hooks['nats']\n"
        "print(json.dumps({'providers': sorted(pm.providers), 'hook': hook.hook_class_name,"
        " 'conn_attr': hook.connection_id_attribute_name}))\n"
    )
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert "airflow-argo-events" in got["providers"]
    assert got["hook"] == "airflow_argo_events.hooks.nats.NatsHook"
    assert got["conn_attr"] == "nats_conn_id"


def test_airflow_cli_lists_provider(tmp_path):
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "airflow"), "providers", "list", "-o", "plain"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "airflow-argo-events" in out.stdout


@pytest.fixture
def nats_conn(monkeypatch, nats_url):
    host_port = nats_url.replace("nats://", "")
    monkeypatch.setenv("AIRFLOW_CONN_NATS_TEST", f"nats://{host_port}?stream=mystream")
    return "nats_test"


def test_hook_reads_uri_connection(nats_conn, nats_url):
    from airflow_argo_events.hooks.nats import NatsHook

    settings, stream = NatsHook(nats_conn).get_settings()
    assert settings.servers == (nats_url,)
    assert stream.name == "mystream"
    assert "nats_test" in settings.describe()


def test_hook_credentials_from_fields(monkeypatch):
    from airflow_argo_events.hooks.nats import NatsHook

    monkeypatch.setenv("AIRFLOW_CONN_NATS_AUTH", json.dumps(
        {"conn_type": "nats", "host": "n1", "port": 4333, "login": "alice", "password": "pw",
         "extra": {"creds_file": "/c.creds", "servers": "nats://a:1,nats://b:2"}}))
    settings, _ = NatsHook("nats_auth").get_settings()
    assert settings.servers == ("nats://a:1", "nats://b:2")
    assert (settings.user, settings.password, settings.creds_file) == ("alice", "pw", "/c.creds")


def test_hook_test_connection_real_and_unreachable(nats_conn, monkeypatch):
    from airflow_argo_events.core.bus.embedded import free_port
    from airflow_argo_events.hooks.nats import NatsHook

    ok, msg = NatsHook(nats_conn).test_connection()
    assert ok, msg
    port = free_port()
    monkeypatch.setenv("AIRFLOW_CONN_NATS_DOWN", f"nats://127.0.0.1:{port}")
    ok, msg = NatsHook("nats_down").test_connection()
    assert not ok
    assert "nats_down" in msg and str(port) in msg
