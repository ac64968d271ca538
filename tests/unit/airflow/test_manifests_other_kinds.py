"""The Airflow loaders skip other kinds in a manifest file (Argo's tutorials keep a
WorkflowTemplate or a ConfigMap next to the Sensor) and log a field Argo ignores once."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from airflow_argo_events.core.exceptions import SpecError

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests" / "argo_gaps"


class Lines(logging.Handler):
    """Records of the loader's logger, whatever Airflow's logging setup does to propagation."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def spec_log():
    logger = logging.getLogger("airflow_argo_events.spec")
    handler, level = Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_load_dags_skips_other_kinds(tmp_path, spec_log):
    from airflow_argo_events.manifests import load_dags

    shutil.copy(MANIFESTS / "with-other-kinds.yaml", tmp_path)
    dags = load_dags(tmp_path)
    assert any("with-other-kinds" in d for d in dags), sorted(dags)
    assert len([r for r in spec_log if "skipped: not an Argo Events kind" in r.getMessage()]) == 3


def test_load_dags_still_refuses_an_unknown_argo_kind(tmp_path):
    from airflow_argo_events.manifests import load_dags

    shutil.copy(MANIFESTS / "unknown-argo-kind.yaml", tmp_path)
    with pytest.raises(SpecError, match="unknown kind 'Sensr'"):
        load_dags(tmp_path)


def test_sensor_trigger_from_a_path_skips_other_kinds_and_drops_ignored_fields(spec_log):
    from airflow_argo_events.triggers.sensor import SensorTrigger

    trigger = SensorTrigger(sensor=str(MANIFESTS / "with-other-kinds.yaml"))
    assert trigger.sensor["metadata"]["name"] == "with-other-kinds"
    misplaced = SensorTrigger(sensor=str(MANIFESTS / "misplaced-fields.yaml"))
    assert "atLeastOnce" not in misplaced.sensor["spec"]["triggers"][0]["template"]
    warnings = [r.getMessage() for r in spec_log if r.levelno == logging.WARNING]
    assert [w.split(": warning: ")[1] for w in warnings] == [
        "spec.triggers[0].template.atLeastOnce: unknown field (Argo ignores it)",
        "spec.triggers[0].template.policy: unknown field (Argo ignores it)"]
