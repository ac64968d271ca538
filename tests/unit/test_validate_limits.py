"""``argo-events validate`` and the manifest loader on hostile files (issue 11, findings 14 and 17)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.spec.loader import load_text

MAX_MANIFEST_BYTES = 1_572_864

pytestmark = pytest.mark.timeout(120)

CLI = [sys.executable, "-m", "airflow_argo_events.cli.main"]
SENSOR = ("kind: Sensor\nmetadata: {{name: s}}\nspec:\n  dependencies:\n"
          "    - name: a\n      eventSourceName: es\n      eventName: a\n{filters}"
          "  triggers:\n    - template:\n        name: t\n{action}")
LOG = "        log: {}\n"


def laughs(levels: int = 10) -> str:
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines)


def validate(tmp_path, name: str, content: bytes) -> subprocess.CompletedProcess[str]:
    path = tmp_path / name
    path.write_bytes(content)
    return subprocess.run([*CLI, "validate", str(path)], capture_output=True, text=True, timeout=60)


def one_line(out: subprocess.CompletedProcess[str], tmp_path, name: str, reason: str) -> None:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"{tmp_path / name}: ") and reason in lines[0], lines[0]


@pytest.mark.parametrize("name, content, reason", [
    ("deep.yaml", b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nest"),
    ("deep-block.yaml", "".join(f"{'  ' * i}k{i}:\n" for i in range(300)).encode() + b"  " * 300 + b"v\n",
     "nested deeper than 128"),
    ("binary.yaml", b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)), "binary file"),
    ("latin1.yaml", "kind: Sensor\nmetadata: {name: caf\xe9}\n".encode("latin-1"), "not UTF-8"),
    ("huge.yaml", b"kind: Sensor\n# " + b"x" * (10 * 1024 * 1024) + b"\n", f"larger than {MAX_MANIFEST_BYTES}"),
    ("laughs.yaml", f"kind: Sensor\nmetadata: {{name: s}}\n{laughs()}\n".encode(), "expands to more than"),
    ("v9.yaml", b"apiVersion: v9\nkind: EventBus\nmetadata: {name: default}\nspec: {jetstream: {}}\n",
     "apiVersion: unsupported apiVersion 'v9'"),
], ids=["flow-depth", "block-depth", "binary", "non-utf8", "10MB", "billion-laughs", "apiVersion"])
def test_hostile_files_exit_2_with_one_line(tmp_path, name, content, reason):
    one_line(validate(tmp_path, name, content), tmp_path, name, reason)


def test_billion_laughs_inside_a_k8s_resource_is_refused(tmp_path):
    resource = laughs().replace("\n", "\n            ")
    action = f"        k8s:\n          operation: create\n          source:\n            resource:\n            {resource}\n"
    out = validate(tmp_path, "k8s.yaml", SENSOR.format(filters="", action=action).encode())
    one_line(out, tmp_path, "k8s.yaml", "expands to more than")


def test_billion_laughs_in_an_inline_resource_is_refused():
    inline = laughs().replace("\n", "\\n")
    action = f'        k8s:\n          operation: create\n          source:\n            inline: "{inline}"\n'
    with pytest.raises(SpecError, match=r"spec.triggers\[0\].template.k8s.source.inline: invalid YAML: expands"):
        load_text(SENSOR.format(filters="", action=action))


@pytest.mark.parametrize("filters, path, reason", [
    ("      filters:\n        exprs:\n          - expr: '" + "!(" * 1300 + "a" + ")" * 1300 + "'\n            fields: "
     "[{name: a, path: a}]\n", "spec.dependencies[0].filters.exprs[0].expr", "nested deeper than 64"),
    ("      filters:\n        exprs:\n          - expr: '" + "-(" * 1000 + "a" + ")" * 1000 + "'\n            fields: "
     "[{name: a, path: a}]\n", "spec.dependencies[0].filters.exprs[0].expr", "nested deeper than 64"),
    ("      filters:\n        exprs:\n          - expr: 'a =~ \"(x)\\\\1\"'\n            fields: "
     "[{name: a, path: a}]\n", "spec.dependencies[0].filters.exprs[0].expr", "invalid escape sequence"),
    ("      filters:\n        data:\n          - {path: a, type: string, value: ['ok', '(a)\\1']}\n",
     "spec.dependencies[0].filters.data[0].value[1]", "invalid regex"),
], ids=["not-1300", "minus-2000", "expr-backreference", "data-backreference"])
def test_filters_are_checked_at_load_with_the_field_path(filters, path, reason):
    with pytest.raises(SpecError) as info:
        load_text(SENSOR.format(filters=filters, action=LOG))
    assert any(p == path and reason in m for p, m in info.value.errors), info.value.errors


def test_ordinary_anchors_and_api_version_still_load():
    text = SENSOR.format(filters="      filters:\n        data: &d\n          - {path: a, type: string, value: ['^o']}\n",
                         action=LOG)
    (sensor,) = load_text("apiVersion: argoproj.io/v1alpha1\n" + text)
    assert sensor.spec.dependencies[0].filters.data[0].value == ["^o"]
