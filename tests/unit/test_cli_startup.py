"""`argo-events` imports only the command it runs (cli/main.py): checked in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_argo_events.cli.main import COMMANDS, build_parser, invoked

HEAVY = ("airflow", "prefect", "pydantic", "nats", "aiohttp", "yaml", "rich", "lupa", "cloudevents", "kubernetes",
         "kubernetes_asyncio", "simpleeval", "gjson", "jq", "redis", "aiokafka", "hdfs")
"""Top-level packages a command that needs none of them must not pay for."""
LIGHT = {"airflow_argo_events", "airflow_argo_events.cli", "airflow_argo_events.cli.main",
         "airflow_argo_events.cli.common", "airflow_argo_events.core", "airflow_argo_events.core.exceptions",
         "airflow_argo_events.core.redact"}
"""All of this package that `--version` and `--help` may import."""

SENSOR = """apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {name: s}
spec:
  dependencies: [{name: a, eventSourceName: es, eventName: e}]
  triggers: [{template: {name: t, log: {}}}]
"""


def modules_after(args: list[str], tmp_path: Path) -> tuple[int, set[str]]:
    """Run ``argo-events ARGS`` in a new interpreter; its exit status and every module it imported."""
    out = tmp_path / "modules.json"
    code = ("import atexit, json, sys\n"
            f"atexit.register(lambda: open({str(out)!r}, 'w').write(json.dumps(sorted(sys.modules))))\n"
            "from airflow_argo_events.cli.main import main\n"
            f"sys.exit(main({args!r}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    return done.returncode, set(json.loads(out.read_text()))


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["sensor", "--help"], ["state", "--help"]],
                         ids=" ".join)
def test_version_and_help_import_nothing_heavy(args, tmp_path):
    status, modules = modules_after(args, tmp_path)
    assert status == 0
    assert not heavy(modules), heavy(modules)
    assert {m for m in modules if m.startswith("airflow_argo_events")} <= LIGHT


def test_validate_imports_only_what_validating_needs(tmp_path):
    (tmp_path / "s.yaml").write_text(SENSOR)
    status, modules = modules_after(["validate", "s.yaml"], tmp_path)
    assert status == 0
    cli = {m for m in modules if m.startswith("airflow_argo_events.cli.")}
    assert cli == {"airflow_argo_events.cli.main", "airflow_argo_events.cli.common", "airflow_argo_events.cli.validate"}
    for name in ("airflow", "prefect", "nats", "aiohttp", "rich", "lupa", "kubernetes", "cloudevents"):
        assert not [m for m in modules if m.split(".")[0] == name], name
    assert not [m for m in modules if m.startswith(("airflow_argo_events.core.bus", "airflow_argo_events.core.runtime",
                                                    "airflow_argo_events.core.sources"))]


def test_a_sensor_action_imports_its_module_only(tmp_path):
    (tmp_path / "s.yaml").write_text(SENSOR)
    (tmp_path / "e.jsonl").write_text("")
    status, modules = modules_after(["sensor", "test", "s.yaml", "--events", "e.jsonl"], tmp_path)
    assert status == 0
    assert "airflow_argo_events.cli.sensor_commands" in modules
    for other in ("sensor_run", "sensor_status", "replay_commands", "sensor_graph", "demo", "state_commands"):
        assert f"airflow_argo_events.cli.{other}" not in modules, other


def _leaves(commands=COMMANDS, path=()):
    for c in commands:
        if c.children:
            yield from _leaves(c.children, (*path, c.name))
        else:
            yield (*path, c.name)


@pytest.mark.parametrize("path", list(_leaves()), ids=" ".join)
def test_every_command_parses_as_when_all_are_loaded(path):
    """The lazy parser sets up the invoked command exactly as the full one does."""
    argv = [*path, "--help"]
    assert invoked(["-v", "--log-format", "json", *argv]) == list(path)
    lazy = build_parser(argv)
    full = build_parser()

    def leaf(parser):
        for name in path:
            sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
            parser = sub.choices[name]
        return parser

    assert leaf(lazy).format_help() == leaf(full).format_help()
    assert lazy.format_help() == full.format_help()
