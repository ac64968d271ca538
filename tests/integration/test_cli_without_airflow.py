"""The standalone CLI never needs Airflow: every command runs with ``airflow`` unimportable, a sensor
with an argoWorkflow trigger submits through the plain kubernetes client, and nothing is written
outside the working directory and the temp dir (no ``~/airflow``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airflow_argo_events.core.bus.embedded import free_port
from airflow_argo_events.testing.plugin import unique_name
from tests.support import FakeKubernetes

pytestmark = pytest.mark.timeout(180)
CLI = str(Path(sys.executable).parent / "argo-events")

SENSOR = """\
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {name: no-airflow}
spec:
  dependencies:
    - {name: order, eventSourceName: shop, eventName: order}
  triggers:
    - template:
        name: submit
        argoWorkflow:
          operation: submit
          source:
            resource:
              apiVersion: argoproj.io/v1alpha1
              kind: Workflow
              metadata: {generateName: order-, namespace: argo}
              spec: {entrypoint: main, templates: [{name: main, container: {image: busybox, args: [echo]}}]}
          parameters:
            - src: {dependencyName: order, dataKey: body.id}
              dest: spec.templates.0.container.args.1
"""


@pytest.fixture
def no_airflow(tmp_path, nats_url):
    """An environment where importing airflow fails loudly and leaves a mark, HOME is empty and
    AIRFLOW_HOME unset (so an Airflow import would create ~/airflow/airflow.cfg)."""
    blocker = tmp_path / "blocker" / "airflow"
    blocker.mkdir(parents=True)
    marker = tmp_path / "airflow-imported"
    blocker.joinpath("__init__.py").write_text(
        f"open({str(marker)!r}, 'a').write(__import__('traceback').format_stack()[-2] + '\\n')\n"
        "raise ImportError('airflow is not installed here')\n")
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    k8s = FakeKubernetes().start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(PYTHONPATH=os.pathsep.join([str(blocker.parent), str(Path(__file__).resolve().parents[2])]),
               HOME=str(home), ARGO_EVENTS_NATS_URL=nats_url,
               KUBECONFIG=k8s.kubeconfig(str(tmp_path / "kubeconfig")))
    yield env, work, marker, k8s
    k8s.stop()


def _run(env, work, *args, timeout=60):
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, cwd=work, timeout=timeout)


def test_blocker_really_blocks(no_airflow):
    env, work, marker, _ = no_airflow
    out = subprocess.run([sys.executable, "-c", "import airflow"], capture_output=True, text=True, env=env, cwd=work)
    assert out.returncode != 0 and "airflow is not installed here" in out.stderr
    marker.unlink()


def test_every_command_runs_without_airflow(no_airflow, tmp_path):
    env, work, marker, k8s = no_airflow
    stream = unique_name("noaf")
    (work / "sensor.yaml").write_text(SENSOR)
    assert _run(env, work, "--help").returncode == 0
    out = _run(env, work, "validate", "sensor.yaml")
    assert out.returncode == 0, out.stderr

    (work / "events.jsonl").write_text(json.dumps({"source": "shop", "subject": "order", "type": "webhook",
                                                   "data": {"body": {"id": "7"}}}) + "\n")
    out = _run(env, work, "sensor", "test", "sensor.yaml", "--events", "events.jsonl")
    assert out.returncode == 0 and '"submit"' in out.stdout, out.stdout + out.stderr

    ready = tmp_path / "ready"
    sensor = subprocess.Popen([CLI, "sensor", "run", "-f", "sensor.yaml", "--stream", stream, "--max-events", "1",
                               "--ready-file", str(ready)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env, cwd=work)
    try:
        for _ in range(600):
            if ready.exists() or sensor.poll() is not None:
                break
            time.sleep(0.05)
        assert ready.exists(), sensor.communicate(timeout=10)
        out = _run(env, work, "publish", "--source", "shop", "--event", "order", "--stream", stream,
                   "--data", json.dumps({"body": {"id": "7"}}))
        assert out.returncode == 0, out.stderr
        _, err = sensor.communicate(timeout=90)
    finally:
        sensor.kill()
    assert sensor.returncode == 0, err[-3000:]
    (path,) = [p for p in k8s.objects if "/namespaces/argo/workflows/order-" in p]
    assert k8s.objects[path]["spec"]["templates"][0]["container"]["args"] == ["echo", "7"]

    out = _run(env, work, "tail", "--all", "--count", "1", "--stream", stream, "--timeout", "30")
    assert out.returncode == 0 and json.loads(out.stdout.splitlines()[0])["subject"] == "order", out.stderr

    port = free_port()
    (work / "es.yaml").write_text(
        "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {name: hook}\n"
        f"spec:\n  webhook:\n    example: {{port: '{port}', endpoint: /example, method: POST}}\n")
    es = subprocess.Popen([CLI, "-v", "eventsource", "run", "-f", "es.yaml", "--stream", stream],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=work)
    try:
        import urllib.request

        for _ in range(400):
            try:
                urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/example", data=b"{}"),
                                       timeout=2)
                break
            except OSError:
                assert es.poll() is None, es.communicate(timeout=10)
                time.sleep(0.05)
        else:
            raise AssertionError("the webhook never answered")
    finally:
        es.terminate()
        es.communicate(timeout=30)

    assert not marker.exists(), f"airflow was imported from:\n{marker.read_text()}"
    assert not any(Path(env["HOME"]).iterdir()), f"written to HOME: {list(Path(env['HOME']).rglob('*'))}"
