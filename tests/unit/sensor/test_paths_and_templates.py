from __future__ import annotations

import pytest

from airflow_argo_events.core.sensor.gotemplate import GoTemplate, TemplateError, go_format
from airflow_argo_events.core.sensor.paths import MISSING, compile_path, gjson_bool, gjson_float, gjson_string

DATA = {"body": {"items": [{"n": 1}, {"n": 2}], "name": "argo", "dot.key": 3, "flag": True, "none": None},
        "header": {"X-Gh": ["push"]}}


@pytest.mark.parametrize(
    "path, expected",
    [
        ("body.name", "argo"),
        ("body.items.1.n", 2),
        ("body.items.#", 2),
        ("body.items.#.n", [1, 2]),
        ("body.dot\\.key", 3),
        ("header.X-Gh.0", "push"),
        ("body.items.#(n==2).n", 2),
        ("body.missing", MISSING),
        ("body.items.9", MISSING),
        ("body.name.x", MISSING),
        ("body.none", None),
    ],
)
def test_gjson_paths(path, expected):
    assert compile_path(path)(DATA) == expected


@pytest.mark.parametrize(
    "value, s, f, b",
    [
        ("hello", "hello", 0.0, False),
        ("10.0", "10.0", 10.0, False),
        ("true", "true", 0.0, True),
        (100, "100", 100.0, True),
        (2.5, "2.5", 2.5, True),
        (True, "true", 1.0, True),
        (False, "false", 0.0, False),
        (None, "", 0.0, False),
        ({"m": "hi", "n": 1}, '{"m":"hi","n":1}', 0.0, False),
    ],
)
def test_gjson_conversions(value, s, f, b):
    assert (gjson_string(value), gjson_float(value), gjson_bool(value)) == (s, f, b)


@pytest.mark.parametrize(
    "template, expected",
    [
        ("{{ .Input.body.name }}", "argo"),
        ("{{ .Input.body.name | upper }}", "ARGO"),
        ("{{ title .Input.body.name }}", "Argo"),
        ('{{ .Input.body.name | replace "a" "A" }}', "Argo"),
        ("{{ .Input.body.missing }}", "<no value>"),
        ("{{ .Input.body.items }}", "[map[n:1] map[n:2]]"),
        ("{{ len .Input.body.items }}", "2"),
        ("{{ index .Input.header.X-Gh 0 }}" if False else "{{ index .Input.body.items 0 }}", "map[n:1]"),
        ("{{ if .Input.body.flag }}on{{ else }}off{{ end }}", "on"),
        ("{{ range .Input.body.items }}{{ .n }},{{ end }}", "1,2,"),
        ('{{ printf "%s:%v" .Input.body.name 3 }}', "argo:3"),
        ("{{ b64enc .Input.body.name | b64dec }}", "argo"),
        ('{{ "a b  c" | nospace }}', "abc"),
        ("{{- .Input.body.name -}}  ", "argo"),
        ("{{ toJson .Input.body.items }}", '[{"n":1},{"n":2}]'),
        ('{{ default "x" .Input.body.missing }}', "x"),
        ("{{ .Input.body.dot }}", "<no value>"),
    ],
)
def test_go_templates(template, expected):
    assert GoTemplate(template).render({"Input": DATA}) == expected


@pytest.mark.parametrize("template", ["{{ nosuch .Input }}", "{{ if .Input }}", "{{ end }}", "{{ | .Input }}",
                                      "{{ (upper .Input }}", "{{ $x }}", "{{ $y = 1 }}",
                                      "{{ if true }}{{ $z := 1 }}{{ end }}{{ $z }}"])
def test_template_parse_errors(template):
    with pytest.raises(TemplateError):
        GoTemplate(template)


def test_template_runtime_error_on_field_of_string():
    with pytest.raises(TemplateError, match="can't evaluate field"):
        GoTemplate("{{ .Input.name.first }}").render({"Input": {"name": "x"}})


@pytest.mark.parametrize("value, text", [(10.0, "10"), (2.5, "2.5"), (1e21, "1e+21"), (True, "true"),
                                         (None, "<no value>"), ({"b": 1, "a": 2}, "map[a:2 b:1]")])
def test_go_format(value, text):
    assert go_format(value) == text


# ---------------------------------------------------------------- gjson modifiers as Go's gjson 1.19 (issue 12)

@pytest.mark.parametrize("path, expected", [
    ("n|@fromstr", 1.5),                      # not a string: the value as it is
    ("s|@fromstr", {"a": [1]}),               # a string: its content read as JSON
    ("bad|@fromstr", MISSING),
    ("none|@fromstr", MISSING),
    ("obj.@keys", ["b", "a"]),
    ("arr.@keys", [None, None]),              # one null per element
    ("n.@keys", [None]),                      # one null for any other value
    ("obj|@tostr", '{"b":1,"a":{"c":"x"}}'),  # compact JSON text, as a string
    ("obj.#", MISSING),                       # "#" on an object is a key, and there is none
    ("obj.#.c", MISSING),
    ("arr.#", 2),
])
def test_gjson_modifiers_as_go(path, expected):
    data = {"n": 1.5, "s": '{"a":[1]}', "bad": "{", "none": None, "obj": {"b": 1, "a": {"c": "x"}}, "arr": [1, 2]}
    assert compile_path(path)(data) == expected
