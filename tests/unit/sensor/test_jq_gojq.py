"""jq as Argo runs it: gojq on the event as Go decodes it, json.Marshal on the result (issue 12).

Each case is a difference the Go oracle (tests/golden/jq.jsonl) found between libjq and
Argo's gojq; these keep them closed without needing the golden files."""

from __future__ import annotations

import pytest

from airflow_argo_events.core.sensor.transform import Transform, TransformError
from airflow_argo_events.core.spec.sensor import EventDependencyTransformer

from .helpers import ev

pytestmark = pytest.mark.timeout(60)

DATA = {"b": 21.0, "a": 1.5e-7, "big": 12345678901234567890, "huge": 1e20, "neg": -0.0, "s": "x y",
        "obj": {"z": 1, "a": [2.50, 1e3]}}


def jq(program, data=None):
    return Transform(EventDependencyTransformer(jq=program)).apply(ev(data=DATA if data is None else data)).data


@pytest.mark.parametrize("program, key, expected", [
    (".x = (.b | tostring)", "x", "21"),                  # 21.0 is a float64 21
    (".x = (.a | tostring)", "x", "1.5e-7"),              # gojq's exponent has no leading zero
    (".x = (.huge | tostring)", "x", "100000000000000000000"),  # 'f' below 1e21
    (".x = (1e21 | tostring)", "x", "1e+21"),
    (".x = (0.000001 | tostring)", "x", "0.000001"),
    (".x = (.big | tostring)", "x", "12345678901234567000"),  # the float64's shortest digits
    (".x = (.neg | tostring)", "x", "-0"),
    (".x = (.obj | tojson)", "x", '{"a":[2.5,1000],"z":1}'),  # keys sorted, Go numbers
    (".x = ({b: 1, a: 2} | tostring)", "x", '{"a":2,"b":1}'),
    (".x = (.obj | to_entries | map(.key))", "x", ["a", "z"]),
    (".x = (.obj | keys_unsorted)", "x", ["a", "z"]),
    (".x = ([.obj[]] | length)", "x", 2),
    (".x = (.s | @uri)", "x", "x%20y"),                    # Argo's gojq 0.12.19
    (".", "big", 12345678901234567000),                     # json.Marshal of the float64
    (".x = 12345678901234567890", "x", 12345678901234567890),  # a literal stays exact, as in gojq
    (".x = (.a * 2)", "x", 3e-7),
    (".x = 1e20 * 10", "x", 1e21),
    (".x = \"\\(.b) \\(.huge)\"", "x", "21 100000000000000000000"),  # interpolation of event numbers
    (".x = (.neg | tojson)", "x", "-0"),
], ids=lambda v: str(v)[:40])
def test_numbers_and_objects_as_gojq_and_go_write_them(program, key, expected):
    out = jq(program)
    assert out[key] == expected
    assert type(out[key]) is type(expected)
    assert list(out) == sorted(out)


@pytest.mark.parametrize("program", [".x = infinite", ".x = nan", ".x = [-infinite]", ".x = (-1 | sqrt)",
                                     ".x = ([1e308 * 10] | .[0])"])
def test_nan_and_infinities_are_errors_as_in_json_marshal(program):
    with pytest.raises(TransformError, match="unsupported value"):
        jq(program)


def test_comments_and_definitions_survive_the_wrapper():
    assert jq("def f: .b; {x: f} # a trailing comment") == {"x": 21}
    assert jq(".y = 1 # comment")["y"] == 1


def test_no_payload_is_left_alone():
    t = Transform(EventDependencyTransformer(jq=".x = 1"))
    event = ev(data=None)
    assert t.apply(event) is event
