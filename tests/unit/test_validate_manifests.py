"""``argo-events validate`` on hand-written manifests, one per Argo behaviour (tests/manifests/argo_gaps/).

Argo accepts misplaced fields (its decoder drops them), keys in another letter case, other
kinds in the same file, and a template parameter rewritten by trigger-level parameters;
it refuses a time filter Go cannot parse. Warnings keep exit 0; ``--strict`` refuses
unknown fields.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from airflow_argo_events.cli.main import main

MANIFESTS = Path(__file__).resolve().parents[1] / "manifests" / "argo_gaps"


class Lines(logging.Handler):
    """Records of the loader's logger, whatever another test's logging setup did to propagation."""

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


def validate(capsys, *args):
    code = main(["validate", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def warnings_of(err: str) -> list[str]:
    return [line for line in err.splitlines() if ": warning: " in line]


def test_other_kinds_are_skipped_with_one_note_each(capsys):
    path = MANIFESTS / "with-other-kinds.yaml"
    code, out, err = validate(capsys, path)
    assert code == 0, err
    assert out.splitlines() == [f"{path}: Sensor with-other-kinds: ok"]
    notes = [line for line in err.splitlines() if ": note: " in line]
    assert notes == [
        f"{path}#0: note: v1 ConfigMap 'settings' skipped: not an Argo Events kind",
        f"{path}#1: note: v1 Secret 'token' skipped: not an Argo Events kind",
        f"{path}#2: note: argoproj.io/v1alpha1 WorkflowTemplate 'print-message' skipped: not an Argo Events kind",
    ]
    assert "not-a-real-token" not in err


def test_an_unknown_kind_in_argos_group_is_refused(capsys):
    code, _, err = validate(capsys, MANIFESTS / "unknown-argo-kind.yaml")
    assert code == 2
    assert "kind: unknown kind 'Sensr'; expected one of EventBus, EventSource, Sensor" in err


def test_misplaced_fields_warn_with_their_path_and_exit_0(capsys):
    path = MANIFESTS / "misplaced-fields.yaml"
    code, out, err = validate(capsys, path)
    assert code == 0, err
    assert warnings_of(err) == [
        f"{path}: warning: spec.triggers[0].template.atLeastOnce: unknown field (Argo ignores it)",
        f"{path}: warning: spec.triggers[0].template.policy: unknown field (Argo ignores it)",
    ]
    assert "Sensor misplaced-fields: ok" in out


def test_strict_refuses_misplaced_fields(capsys):
    path = MANIFESTS / "misplaced-fields.yaml"
    code, out, err = validate(capsys, "--strict", path)
    assert code == 2
    assert f"{path}: spec.triggers[0].template.atLeastOnce: unknown field (Argo ignores it)" in err.splitlines()
    assert f"{path}: spec.triggers[0].template.policy: unknown field (Argo ignores it)" in err.splitlines()
    assert out == ""


def test_a_key_in_another_letter_case_is_read_as_go_reads_it(capsys):
    path = MANIFESTS / "recased-key.yaml"
    code, _, err = validate(capsys, path)
    assert code == 0, err
    assert warnings_of(err) == [f"{path}: warning: spec.triggers[0].template.openwhisk: read as 'openWhisk': "
                                "Argo's decoder ignores letter case; write 'openWhisk'"]
    assert validate(capsys, "--strict", path)[0] == 2


def test_template_parameters_rewritten_by_trigger_parameters_are_accepted(capsys):
    code, _, err = validate(capsys, MANIFESTS / "template-parameters-replaced.yaml")
    assert (code, warnings_of(err)) == (0, []), err


def test_an_unknown_parameter_dependency_is_a_warning(capsys):
    path = MANIFESTS / "unknown-parameter-dependency.yaml"
    code, _, err = validate(capsys, path)
    assert code == 0, err
    (line,) = warnings_of(err)
    assert line.startswith(f"{path}: warning: spec.triggers[0].template.http.payload[0].src.dependencyName: "
                           "names no dependency ('dpe'; known: dep)")
    assert validate(capsys, "--strict", path)[0] == 0  # never an error


def test_an_unparsable_time_filter_exits_2_with_the_field_path(capsys):
    path = MANIFESTS / "bad-time-filter.yaml"
    code, out, err = validate(capsys, path)
    assert code == 2 and out == ""
    assert err.splitlines() == [f"{path}: spec.dependencies[0].filters.time.start: must be HH:MM:SS: "
                                "'25:99:00': hour out of range"]


def test_hdfs_on_the_rpc_port_warns_with_the_fix(capsys):
    path = MANIFESTS / "hdfs-rpc-port.yaml"
    code, _, err = validate(capsys, path)
    assert code == 0, err
    (line,) = warnings_of(err)
    assert line.startswith(f"{path}: warning: spec.hdfs.example.addresses[0]: port 8020 is the namenode's")
    assert "WebHDFS is the namenode's HTTP port, usually 9870 (write namenode:9870)" in line


def test_every_manifest_here_is_covered():
    tested = {"with-other-kinds", "unknown-argo-kind", "misplaced-fields", "recased-key",
              "template-parameters-replaced", "unknown-parameter-dependency", "bad-time-filter", "hdfs-rpc-port"}
    assert {p.stem for p in MANIFESTS.glob("*.yaml")} == tested


def test_warnings_are_logged_once_when_nobody_collects_them(spec_log):
    """The runtimes (sensor run, eventsource run, the Airflow adapters) load without a notes list."""
    from airflow_argo_events.cli.common import load_or_report

    sensor = load_or_report(str(MANIFESTS / "misplaced-fields.yaml"), "Sensor")
    assert sensor is not None and sensor.spec.triggers[0].at_least_once is False  # ignored, as in Argo
    lines = [r.getMessage() for r in spec_log]
    assert [line.split(": warning: ")[1] for line in lines] == [
        "spec.triggers[0].template.atLeastOnce: unknown field (Argo ignores it)",
        "spec.triggers[0].template.policy: unknown field (Argo ignores it)"]
    assert all(r.levelno == logging.WARNING for r in spec_log)


@pytest.mark.parametrize("kind", ["Sensor", "EventSource"])
def test_load_one_skips_other_kinds(kind, tmp_path, spec_log):
    """``sensor test``, ``sensor run``, ``eventsource run`` and SensorTrigger(sensor=path) load with load_one."""
    from airflow_argo_events.core.spec.loader import load_one

    es = (MANIFESTS / "hdfs-rpc-port.yaml").read_text()
    sensor = (MANIFESTS / "with-other-kinds.yaml").read_text()
    path = tmp_path / "both.yaml"
    path.write_text(f"{sensor}\n---\n{es}")
    assert load_one(path, kind).kind == kind
    skipped = [r for r in spec_log if "skipped" in r.getMessage()]
    assert len(skipped) == 3 and all(r.levelno == logging.INFO for r in skipped)
