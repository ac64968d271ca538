"""Go templates are bounded in work and output (issue 11, finding 13)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from airflow_argo_events.core.sensor.gotemplate import GoTemplate, TemplateError

pytestmark = pytest.mark.timeout(60)

NESTED_RANGE = "".join("{{ range $.Input.items }}" for _ in range(8)) + "x" + "{{ end }}" * 8


@pytest.mark.parametrize("text, message", [
    ('{{ repeat 2000000000 "x" }}', "repeat: result of 2000000000 bytes"),
    ('{{ printf "%0999999999d" 1 }}', "printf: width or precision"),
    ('{{ printf "%.999999999f" 1.5 }}', "printf: width or precision"),
    ('{{ indent 1500000000 "a" }}', "indent: result of"),
    ('{{ nindent 1500000000 "a\\nb" }}', "indent: result of"),
    ('{{ replace "" (repeat 1000 "y") (repeat 100000 "x") }}', "replace: result of"),
    ('{{ cat (repeat 1000000 "x") (repeat 1000000 "x") }}', "cat: result of"),
    (NESTED_RANGE, "exceeded 200000 steps"),
    ('{{ range .Input.items }}{{ repeat 200000 "x" }}{{ end }}', "output exceeds"),
], ids=["repeat", "printf-width", "printf-precision", "indent", "nindent", "replace", "cat", "nested-range",
        "output"])
def test_hostile_templates_fail_fast(text, message):
    with pytest.raises(TemplateError, match=message):
        GoTemplate(text).render({"Input": {"items": list(range(10))}})


@pytest.mark.parametrize("text", ["{{ " + "(" * 100 + "1" + ")" * 100 + " }}",
                                  "{{ if 1 }}" * 100 + "x" + "{{ end }}" * 100])
def test_deep_nesting_is_a_parse_error(text):
    with pytest.raises(TemplateError, match="nested deeper"):
        GoTemplate(text)


@pytest.mark.parametrize("text, expected", [
    ('{{ repeat 3 "ab" }}', "ababab"),
    ('{{ printf "%05d|%.2f|%-4s|" 42 3.14159 "x" }}', "00042|3.14|x   |"),
    ('{{ indent 2 "a\\nb" }}', "  a\n  b"),
    ('{{ replace "a" "bb" "banana" }}', "bbbnbbnbb"),
    ("{{ range .Input.items }}{{ range $.Input.items }}.{{ end }}{{ end }}", "." * 100),
])
def test_ordinary_templates_unchanged(text, expected):
    assert GoTemplate(text).render({"Input": {"items": list(range(10))}}) == expected


def test_sensor_test_survives_a_hostile_template(tmp_path):
    sensor = tmp_path / "s.yaml"
    sensor.write_text(
        "kind: Sensor\nmetadata: {name: s}\nspec:\n  dependencies:\n"
        "    - {name: a, eventSourceName: es, eventName: a}\n"
        "  triggers:\n    - template:\n        name: t\n        http:\n          url: http://x\n"
        "          payload:\n            - src: {dependencyName: a, dataTemplate: '{{ repeat 2000000000 \"x\" }}'}\n"
        "              dest: big\n")
    events = tmp_path / "e.jsonl"
    events.write_text('{"specversion":"1.0","id":"1","source":"es","subject":"a","type":"webhook",'
                      '"time":"2024-01-01T00:00:00Z","data":{}}\n')
    out = subprocess.run([sys.executable, "-m", "airflow_argo_events.cli.main", "sensor", "test", str(sensor),
                          "--events", str(events)], capture_output=True, text=True, timeout=60)
    assert "MemoryError" not in out.stderr and "Traceback" not in out.stderr, out.stderr[-2000:]
