"""Our engine against Go's answers for Argo's sub-languages (tests/golden/, made by ``make oracle``).

Each golden file holds thousands of seeded cases run through the Go libraries Argo Events
v1.9.11 uses (tests/oracle/). A case may differ from Go only for a reason listed in
``tests.oracle.ours.DELIBERATE`` (documented in docs/compatibility.md) or when it is a
known, not yet closed gap listed in tests/golden/known_gaps.json. A new difference fails
here; a closed gap fails too until it is removed from the list, so the list only shrinks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.oracle import ours

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
LIBRARIES = ["gjson", "govaluate", "template", "regexp", "sjson", "lua", "jq"]
KNOWN_GAPS: dict[str, dict[str, str]] = json.loads((GOLDEN / "known_gaps.json").read_text())


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
