"""``argo-events sensor graph``: the picture of a Sensor in Mermaid, DOT and SVG.

Golden files (``expected/``) hold the Mermaid and DOT of the two Argo examples that
docs/argo-examples.md runs; ``ARGO_EVENTS_UPDATE_GOLDEN=1`` rewrites them (read the diff).
The SVGs that docs/operations.md shows are checked to be what the command draws today.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_argo_events.cli.main import main
from airflow_argo_events.core.observe.graph import (
    MAX_LINE,
    MAX_LINES,
    render,
    sensor_graph,
    to_dot,
    to_mermaid,
    to_svg,
)
from airflow_argo_events.core.spec.loader import load_file, load_one
from airflow_argo_events.core.spec.sensor import Sensor

ROOT = Path(__file__).resolve().parents[3]
EXPECTED = Path(__file__).parent / "expected"
UPDATE = os.environ.get("ARGO_EVENTS_UPDATE_GOLDEN") == "1"

def _sensors_in(path: Path) -> list[Sensor]:
    try:
        return [m for m in load_file(path) if isinstance(m, Sensor)]
    except Exception:  # manifests that are refused on purpose (argo_gaps) have nothing to draw
        return []


SENSORS = sorted(str(p.relative_to(ROOT)) for d in ("examples", "tests/manifests/argo_gaps",
                                                   "src/airflow_argo_events/cli/demo_manifests")
                 for p in (ROOT / d).rglob("*.yaml") if _sensors_in(p))
GOLDEN = {"trigger-conditions": "examples/argo/trigger-conditions.yaml", "hdfs": "examples/argo/hdfs-sensor.yaml"}
DOC_SVGS = {"docs/img/sensor-trigger-conditions.svg": "examples/argo/trigger-conditions.yaml",
            "docs/img/sensor-hdfs.svg": "examples/argo/hdfs-sensor.yaml"}


def _sensor(spec: dict) -> Sensor:
    return Sensor.model_validate({"metadata": {"name": "s"}, "spec": spec})


# ------------------------------------------------------------------ every example draws


def test_the_examples_are_found():
    assert {"examples/argo/trigger-conditions.yaml", "examples/argo/hdfs-sensor.yaml",
            "examples/sensors/webhook-filters.yaml",
            "src/airflow_argo_events/cli/demo_manifests/sensor.yaml"} <= set(SENSORS)


@pytest.mark.parametrize("path", SENSORS)
def test_every_example_sensor_draws_completely(path):
    """Every dependency, condition and action is drawn, and each condition is fed exactly
    by the dependencies it names (table: every Sensor under examples/ and tests/manifests/)."""
    for sensor in _sensors_in(ROOT / path):
        g = sensor_graph(sensor)
        deps = [n.title for n in g.column("dependency")]
        assert deps == [d.name for d in sensor.spec.dependencies]
        assert [n.title for n in g.column("action")] == [t.template.name for t in sensor.spec.triggers]
        assert {n.title for n in g.column("source")} == {d.event_source_name for d in sensor.spec.dependencies}
        assert len(g.column("condition")) == len(sensor.spec.triggers)
        ids = [n.id for n in g.nodes]
        assert len(ids) == len(set(ids))
        for i, t in enumerate(sensor.spec.triggers):
            fed = {g.node(e.src).title.replace("-", "_") for e in g.edges if e.dst == f"c{i}"}
            named = set(re.findall(r"[A-Za-z_][A-Za-z0-9_\-.]*", t.template.conditions.replace("-", "_"))) - {
                "and", "or", "not", "true", "false"} if t.template.conditions.strip() else {
                d.name.replace("-", "_") for d in sensor.spec.dependencies}
            assert fed == named, t.template.name
        mermaid, dot, svg = to_mermaid(g), to_dot(g), to_svg(g)
        _check_mermaid(mermaid)
        _check_dot(dot)
        ET.fromstring(svg)


def _check_mermaid(text: str) -> None:
    """Each line is one statement of the shapes we emit; quoted labels hold no raw quote."""
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    statement = re.compile(
        r'  (%%.*|[sdcaq]\d+(\(\["[^"]*"\]\)|\["[^"]*"\]|\{\{"[^"]*"\}\}|\[\["[^"]*"\]\]|>"[^"]*"\])'
        r'|[sdcaq]\d+ (-->|==>|-\.->)(\|"[^"]*"\|)? [sdcaq]\d+|linkStyle \d+ stroke:#[0-9a-f]{6}'
        r'|classDef \w+ [\w:#,-]+|class [sdcaq\d,]+ \w+)')
    for line in lines[1:]:
        assert statement.fullmatch(line), line


def _check_dot(text: str) -> None:
    dot = shutil.which("dot")
    if dot:  # Graphviz when installed (not needed by CI): it must accept the file
        out = subprocess.run([dot, "-Tsvg"], input=text, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
    assert text.startswith("digraph sensor {") and text.rstrip().endswith("}")


# ------------------------------------------------------------------ golden output


@pytest.mark.parametrize("name", sorted(GOLDEN))
@pytest.mark.parametrize("fmt, ext", [("mermaid", "mmd"), ("dot", "dot")])
def test_golden_drawings_of_the_argo_examples(name, fmt, ext):
    got = render(load_one(ROOT / GOLDEN[name], "Sensor"), fmt)
    path = EXPECTED / f"{name}.{ext}"
    if UPDATE:
        path.write_text(got)
    assert got == path.read_text(), f"{path} differs: rerun with ARGO_EVENTS_UPDATE_GOLDEN=1 and read the diff"


@pytest.mark.parametrize("svg, manifest", sorted(DOC_SVGS.items()))
def test_the_svgs_in_the_docs_are_what_the_command_draws(svg, manifest):
    got = render(load_one(ROOT / manifest, "Sensor"), "svg")
    if UPDATE:
        (ROOT / svg).write_text(got)
    assert (ROOT / svg).read_text() == got, (
        f"{svg} is out of date: argo-events sensor graph -f {manifest} --format svg -o {svg}")
    assert svg.split("/", 1)[1] in (ROOT / "docs/operations.md").read_text(), f"docs/operations.md does not show {svg}"


# ------------------------------------------------------------------ what the boxes say


def test_filters_transform_and_action_settings_are_summarised():
    s = load_one(ROOT / "examples/sensors/webhook-filters.yaml", "Sensor")
    g = sensor_graph(s)
    assert g.node("d0").lines == (
        'expr: repo =~ "^argo" && size < 1000',
        "data (and): body.ref matches refs/heads/main$",
        "data (and): body.commits.# >= 1",
        "script: Lua filter",
    )
    assert g.node("a0").lines == ("http POST http://127.0.0.1:9099/hooks/push", "retry: 3 steps from 1s")
    t = sensor_graph(load_one(ROOT / "examples/sensors/transform.yaml", "Sensor"))
    assert t.node("d0").lines[0].startswith("transform jq: .body | {id: .id")
    assert t.node("a0").lines == ("nats publish orders.big",)


@pytest.mark.parametrize("trigger, expected", [
    ({"http": {"url": "https://user:hunter2@example.com/x?token=abc"}},
     "http POST https://user:***@example.com/x?token=***"),
    ({"argoWorkflow": {"operation": "submit", "source": {"resource": {
        "kind": "Workflow", "metadata": {"generateName": "wf-"}}}}}, "argoWorkflow submit Workflow/wf-*"),
    ({"k8s": {"operation": "patch", "source": {"resource": {"kind": "ConfigMap", "metadata": {"name": "c"}}}}},
     "k8s patch ConfigMap/c"),
    ({"log": {}}, "log"),
    ({"airflow": {"dagId": "etl", "url": "http://af"}}, "Airflow DAG run of etl"),
    ({"slack": {"channel": "ops", "slackToken": {"name": "s", "key": "k"}}}, "slack ops"),
    ({"kafka": {"url": "k:9092", "topic": "t", "payload": []}}, "kafka t"),
    ({"awsLambda": {"functionName": "f", "region": "r", "payload": []}}, "awsLambda RequestResponse f"),
    ({"openWhisk": {"actionName": "a", "host": "h", "payload": []}}, "openWhisk (not run by this provider)"),
])
def test_action_lines_per_kind_and_no_credentials(trigger, expected):
    s = _sensor({"dependencies": [{"name": "d", "eventSourceName": "e", "eventName": "x"}],
                 "triggers": [{"template": {"name": "t", **trigger}}]})
    assert sensor_graph(s).node("a0").lines[0] == expected
    for fmt in ("mermaid", "dot", "svg"):
        assert "hunter2" not in render(s, fmt)


def test_default_condition_dead_letter_action_and_conditions_reset():
    s = _sensor({
        "dependencies": [{"name": "a-1", "eventSourceName": "e", "eventName": "x"},
                         {"name": "b", "eventSourceName": "f", "eventName": "y",
                          "filters": {"time": {"start": "09:00:00", "stop": "17:00:00"},
                                      "context": {"type": "webhook"}}, "filtersLogicalOperator": "or"}],
        "triggers": [{"template": {"name": "t", "log": {},
                                   "conditionsReset": [{"byTime": {"cron": "0 * * * *"}}]},
                      "atLeastOnce": True,
                      "dlqTrigger": {"template": {"name": "dead", "log": {}}, "atLeastOnce": True}}]})
    g = sensor_graph(s)
    assert g.node("c0").title == "a-1 && b"
    assert g.node("c0").lines == ("(default: every dependency)", "reset: cron 0 * * * * UTC")
    assert g.node("d1").lines == ("any of these filters:", "context: type=webhook", "time: 09:00:00-17:00:00 UTC")
    assert g.node("a0").lines == ("log", "atLeastOnce")
    assert g.node("q0").kind == "dlq" and g.node("q0").title == "dead"
    assert any(e.src == "a0" and e.dst == "q0" and e.dashed and e.label == "on failure" for e in g.edges)
    assert "a0 -.->|\"on failure\"| q0" in to_mermaid(g)


def test_live_state_marks_what_each_condition_holds_and_waits_for():
    s = load_one(ROOT / "examples/argo/trigger-conditions.yaml", "Sensor")
    g = sensor_graph(s, live={"trigger02": {"dep02": True, "dep03": False},
                              "trigger03": {"dep01": False, "dep02": True, "dep03": True}})
    c1, c2 = g.node("c1"), g.node("c2")
    assert (c1.state, c1.lines) == ("waiting", ("waiting for: dep03",))
    assert (c2.state, c2.lines) == ("satisfied", ())
    assert g.node("c0").state == ""  # no live state given for trigger01
    into_c1 = {g.node(e.src).title: e.state for e in g.edges if e.dst == "c1"}
    assert into_c1 == {"dep02": "satisfied", "dep03": "waiting"}
    mermaid = to_mermaid(g)
    assert "d1 ==> c1" in mermaid and "d2 -.-> c1" in mermaid
    assert re.search(r"linkStyle \d+ stroke:#2e7d32", mermaid)
    assert 'class="node condition waiting"' in to_svg(g)


def test_actions_say_what_a_firing_does_inside_airflow():
    s = load_one(ROOT / "examples/argo/trigger-conditions.yaml", "Sensor")
    g = sensor_graph(s, actions=["Airflow DAG run of etl", "asset event on argo-events://x"])
    assert [n.lines for n in g.column("action")] == [("Airflow DAG run of etl", "asset event on argo-events://x")] * 3
    assert "Airflow DAG run of etl" in render(s, "svg", actions=["Airflow DAG run of etl"])


# ------------------------------------------------------------------ hostile text


_HOSTILE = ['"><script>alert(1)</script>', "a\\nb\\\\\"c", "#quot;&lt;", "x" * 5000, "line\nbreak\ttab",
            "`md`", "}}]]) ;--> d0", "名前 ünïcödé"]


@pytest.mark.parametrize("text", _HOSTILE)
def test_hostile_names_and_filters_are_escaped_and_bounded(text):
    s = _sensor({"dependencies": [{"name": "d", "eventSourceName": text, "eventName": text,
                                   "filters": {"data": [{"path": text, "type": "string", "value": ["x"]}],
                                               "exprs": [{"expr": "a == 1", "fields": [{"name": "a", "path": text}]}]}}],
                 "triggers": [{"template": {"name": "t", "http": {"url": text}}}]})
    g = sensor_graph(s)
    for n in g.nodes:
        assert len(n.title) <= MAX_LINE and len(n.lines) <= MAX_LINES
        assert all(len(x) <= MAX_LINE and "\n" not in x for x in n.lines)
    _check_mermaid(to_mermaid(g))
    _check_dot(to_dot(g))
    svg = ET.fromstring(to_svg(g))
    assert not [el for el in svg.iter() if el.tag.endswith("script")]
    texts = {el.text for el in svg.iter() if el.tag.endswith("text")}
    assert g.node("s0").title in texts  # the text survives escaping unchanged


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names=st.lists(st.text(min_size=1, max_size=40).filter(str.strip), min_size=1, max_size=6, unique=True))
def test_any_text_gives_wellformed_drawings(names):
    deps = [{"name": f"d{i}", "eventSourceName": n, "eventName": n[::-1]} for i, n in enumerate(names)]
    try:
        s = _sensor({"dependencies": deps, "triggers": [{"template": {"name": "t", "log": {}}}]})
    except Exception:  # text Argo refuses (e.g. control characters in names) never reaches the graph
        return
    g = sensor_graph(s)
    _check_mermaid(to_mermaid(g))
    root = ET.fromstring(to_svg(g))
    assert {el.text for el in root.iter() if el.tag.endswith("text")} >= {n.title for n in g.column("source")}


def test_a_large_sensor_stays_bounded():
    deps = [{"name": f"d{i}", "eventSourceName": f"es{i % 7}", "eventName": f"e{i}"} for i in range(300)]
    s = _sensor({"dependencies": deps, "triggers": [{"template": {"name": "t", "conditions": " || ".join(
        f"d{i}" for i in range(300)), "log": {}}}]})
    g = sensor_graph(s)
    assert len(g.node("c0").lines) <= MAX_LINES and g.node("c0").title == "condition"
    assert len([e for e in g.edges if e.dst == "c0"]) == 300
    assert len(to_svg(g)) < 400_000


# ------------------------------------------------------------------ the command


def test_cli_prints_mermaid_by_default_and_writes_files(tmp_path, capsys):
    assert main(["sensor", "graph", "-f", str(ROOT / GOLDEN["hdfs"])]) == 0
    assert capsys.readouterr().out == (EXPECTED / "hdfs.mmd").read_text()
    out = tmp_path / "g.svg"
    assert main(["sensor", "graph", "-f", str(ROOT / GOLDEN["hdfs"]), "--format", "svg", "-o", str(out)]) == 0
    ET.fromstring(out.read_text())
    assert main(["sensor", "graph", "-f", str(ROOT / GOLDEN["hdfs"]), "-o", str(tmp_path / "no" / "g")]) == 1
    assert "--output" in capsys.readouterr().err


def test_cli_refuses_a_file_without_a_sensor_with_the_field_path(capsys):
    assert main(["sensor", "graph", "-f", str(ROOT / "examples/event-sources/webhook.yaml")]) == 2
    err = capsys.readouterr().err
    assert "expected exactly one Sensor" in err and "Traceback" not in err


def test_cli_runs_as_a_command():
    out = subprocess.run([str(Path(sys.executable).parent / "argo-events"), "sensor", "graph", "-f",
                          GOLDEN["trigger-conditions"], "--format", "dot"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == (EXPECTED / "trigger-conditions.dot").read_text()
