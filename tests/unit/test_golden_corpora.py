"""Our engine against Go's answers for Argo's sub-languages (tests/golden/, made by ``make oracle``).

Each golden file holds thousands of seeded cases run through the Go libraries Argo Events
v1.9.11 uses (tests/oracle/). A case may differ from Go only for a reason listed in
``tests.oracle.ours.DELIBERATE`` (documented in docs/compatibility.md) or when it is a
known, not yet closed gap listed in tests/golden/known_gaps.json. A new difference fails
here; a closed gap fails too until it is removed from the list, so the list only shrinks;
and no deliberate reason may explain more cases than ``DELIBERATE_AT_MOST`` allows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.oracle import ours

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
LIBRARIES = ["gjson", "govaluate", "template", "regexp", "sjson", "lua", "jq"]
KNOWN_GAPS: dict[str, dict[str, str]] = json.loads((GOLDEN / "known_gaps.json").read_text())
# The most cases each deliberate difference may explain: a closed gap cannot come back
# disguised as a deliberate difference (lower these when a change explains fewer).
DELIBERATE_AT_MOST: dict[str, dict[str, int]] = {
    "gjson": {"integer-text": 45, "compact-json": 161},
    "govaluate": {"integer-text": 14, "float-last-digit": 1},
    "template": {"oracle-stub": 1, "integer-text": 23, "compact-json": 1},
    "regexp": {},
    "sjson": {},
    "lua": {"lua-number-concat": 4, "integer-text": 1},
    "jq": {"integer-text": 6, "gojq-0.12.11-uri": 10, "jq-integer-literals": 19, "jq-exponent-text": 1},
}


@pytest.mark.parametrize("library", LIBRARIES)
def test_engine_agrees_with_go(library):
    report = ours.compare_file(GOLDEN / f"{library}.jsonl")
    assert report.total >= 1000, "golden corpus missing or truncated"
    known = KNOWN_GAPS.get(library, {})
    new = [(cid, detail) for cid, detail in report.unexplained if cid not in known]
    closed = sorted(set(known) - {cid for cid, _ in report.unexplained})
    assert not new, f"{len(new)} new differences from Go, e.g.\n" + "\n".join(f"{c}: {d}" for c, d in new[:10])
    assert not closed, f"gaps now closed, remove them from known_gaps.json: {closed[:20]}"
    assert set(report.deliberate) <= set(ours.DELIBERATE)
    grown = {reason: len(ids) for reason, ids in report.deliberate.items()
             if len(ids) > DELIBERATE_AT_MOST[library].get(reason, 0)}
    assert not grown, f"more cases put down to deliberate differences than before: {grown}"
