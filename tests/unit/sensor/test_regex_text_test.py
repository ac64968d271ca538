"""``text_test``: a data filter's string value as one compiled test, plain text without RE2.
It must decide exactly as RE2 does: checked on every pattern of the Go regexp corpus and on
anchored and unanchored plain text against subjects that tell the anchors apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_argo_events.core.sensor.regex import RegexError, go_regex, matches, text_test

CORPUS = Path(__file__).resolve().parents[2] / "golden" / "regexp.jsonl"
SUBJECTS = ["", "order", "order-created", "reorder", "an order\n", "ORDER", "x order y", "orde", "é order ü",
            "\ud800order", "order\n", "created", "pre-created", "created!"]


@pytest.mark.parametrize("pattern", [
    "order", "^order", "order$", "^order$", "", "^", "$", "^$", "created", "-created", "order created",
    "a:b/c@d#e%f&g=h,i;j<k>l!m~n'o\"p`q", "^order-$",
])
def test_plain_text_decides_as_re2(pattern):
    for subject in SUBJECTS:
        assert text_test(pattern)(subject) == matches(go_regex(pattern), subject), (pattern, subject)


def test_every_pattern_of_the_go_corpus_decides_as_re2():
    lines = CORPUS.read_text(encoding="utf-8").splitlines()[1:]
    checked = 0
    for line in lines:
        case = json.loads(line)
        try:
            test = text_test(case["pattern"])
        except RegexError:
            continue
        rx = go_regex(case["pattern"])
        for subject in (case["subject"], *SUBJECTS):
            assert test(subject) == matches(rx, subject), (case["id"], case["pattern"], subject)
        checked += 1
    assert checked > 1000


def test_invalid_patterns_are_refused_as_go_regex_refuses_them():
    with pytest.raises(RegexError):
        text_test(r"(a)\1")
