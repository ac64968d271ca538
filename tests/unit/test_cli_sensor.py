"""``argo-events validate`` and ``argo-events sensor test`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CLI = [sys.executable, "-m", "airflow_argo_events.cli.main"]


def run(*args, stdin=None):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, input=stdin, timeout=120)


def test_validate_examples_ok():
    out = run("validate", *sorted(EXAMPLES.glob("*/*.yaml")))
    assert out.returncode == 0, out.stderr
    assert "Sensor trigger-conditions: ok" in out.stdout


def test_validate_bad_manifest_exits_2_with_paths(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Sensor\nmetadata: {name: s}\nspec:\n  dependencies:\n  - {name: a, eventSourceName: es, "
                   "eventName: e}\n  triggers:\n  - template: {name: t, conditions: 'a && b', log: {}}\n")
    out = run("validate", bad)
    assert out.returncode == 2
    assert f"{bad}: spec.triggers[0].template.conditions: unknown dependency 'b'" in out.stderr
    assert "Traceback" not in out.stderr


def test_validate_yaml_syntax_error(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("kind: Sensor\nspec: [unclosed\n")
    out = run("validate", bad)
    assert out.returncode == 2 and "invalid YAML" in out.stderr and "Traceback" not in out.stderr


def test_sensor_test_conditions_example():
    out = run("sensor", "test", EXAMPLES / "sensors" / "trigger-conditions.yaml",
              "--events", EXAMPLES / "events" / "trigger-conditions.jsonl")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert [x["trigger"] for x in lines] == ["trigger01", "trigger02", "trigger03"]
    assert lines[1] == {"trigger": "trigger02", "events": {"dep02": "a2", "dep03": "b3"},
                        "resolved": {"first": "two", "second": "three"}}
    assert lines[2]["events"] == {"dep01": "a1", "dep02": "a2", "dep03": "b3"}
    assert lines[2]["resolved"]["spec"]["templates"][0]["container"]["args"] == ["fired by", "three"]


def test_sensor_test_explain_says_why(tmp_path):
    events = tmp_path / "e.jsonl"
    events.write_text(
        json.dumps({"specversion": "1.0", "id": "p1", "source": "webhook", "subject": "example", "type": "webhook",
                    "time": "2024-01-01T00:00:00Z", "datacontenttype": "application/json",
                    "data": {"body": {"ref": "refs/heads/dev", "commits": [1], "repository": {"name": "argo"},
                                      "size": 1, "sender": "me"}}}) + "\n")
    out = run("sensor", "test", EXAMPLES / "sensors" / "webhook-filters.yaml", "--events", events, "--explain")
    assert out.returncode == 0
    assert out.stdout == ""
    assert "dependency push: rejected: data filter: body.ref='refs/heads/dev'" in out.stderr


def test_sensor_test_bad_lines_are_skipped_and_reported(tmp_path):
    good = {"specversion": "1.0", "id": "x", "source": "webhook-a", "subject": "example02", "type": "webhook",
            "time": "2024-01-01T00:00:00Z", "datacontenttype": "application/json", "data": {}}
    events = tmp_path / "e.jsonl"
    events.write_text("{broken\n" + json.dumps({"id": "no-source"}) + "\n" + json.dumps(good) + "\n")
    out = run("sensor", "test", EXAMPLES / "sensors" / "trigger-conditions.yaml", "--events", events)
    assert out.returncode == 1
    assert ":1: skipped" in out.stderr and ":2: skipped" in out.stderr
    assert json.loads(out.stdout)["trigger"] == "trigger01"


def test_sensor_test_invalid_sensor_exits_2(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text("kind: Sensor\nmetadata: {name: s}\nspec: {dependencies: [], triggers: []}\n")
    out = run("sensor", "test", bad, "--events", "-", stdin="")
    assert out.returncode == 2
    assert "spec.dependencies: at least one dependency is required" in out.stderr


def test_help_is_clear():
    out = run("--help")
    assert out.returncode == 0
    for cmd in ("validate", "publish", "tail", "sensor"):
        assert cmd in out.stdout
