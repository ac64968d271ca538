"""``argo-events validate`` accepts every manifest under Argo v1.9.11's ``examples/`` that Argo accepts.

Argo's examples are not copied here. Point ``ARGO_EVENTS_CHECKOUT`` at a checkout of
argoproj/argo-events (tag v1.9.11) to run this, e.g.::

    git -C argo-events archive v1.9.11 examples | tar -x -C /tmp/argo-v1.9.11
    ARGO_EVENTS_CHECKOUT=/tmp/argo-v1.9.11 pytest tests/unit/test_validate_argo_examples.py

Without it the test is skipped; tests/manifests/argo_gaps/ keeps a hand-written example of
each behaviour for CI.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.spec.loader import Note, load_file

CHECKOUT = os.environ.get("ARGO_EVENTS_CHECKOUT", "")
EXAMPLES = Path(CHECKOUT) / "examples" if CHECKOUT else None

REFUSED_BY_ARGO = {
    # `serverURL` is an old name (Argo ignores it), so `url` is empty: Argo's webhook says
    # "server URL is not specified".
    "tutorials/09-http-trigger/sensor-01.yaml": "spec.triggers[0].template.http.url: field required",
    "tutorials/09-http-trigger/sensor-02.yaml": "spec.triggers[0].template.http.url: field required",
}


def _examples() -> list[str]:
    if EXAMPLES is None or not EXAMPLES.is_dir():
        return []
    return sorted(str(p.relative_to(EXAMPLES)) for p in EXAMPLES.rglob("*") if p.suffix in (".yaml", ".yml"))


@pytest.mark.skipif(EXAMPLES is None, reason="set ARGO_EVENTS_CHECKOUT to a checkout of argoproj/argo-events v1.9.11")
@pytest.mark.parametrize("name", _examples() or ["<none>"])
def test_argo_example(name):
    assert EXAMPLES is not None and EXAMPLES.is_dir(), f"{EXAMPLES} is not a directory"
    notes: list[Note] = []
    path = EXAMPLES / name
    if name in REFUSED_BY_ARGO:
        with pytest.raises(SpecError) as info:
            load_file(path, notes=notes)
        assert REFUSED_BY_ARGO[name] in str(info.value)
        return
    load_file(path, notes=notes)
