"""The kafka source's offset bookkeeping: a commit never passes a record the bus does not have."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_argo_events.core.sources.kafka import _InFlight

OUTCOMES = st.sampled_from(["stored", "not-stored", "failed", "pending"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), OUTCOMES), max_size=40), st.randoms())
def test_commit_is_the_resolved_prefix_and_rewind_the_first_unstored(records, rng):
    async def run():
        loop = asyncio.get_running_loop()
        inflight = _InFlight()
        offsets: dict[int, int] = {}
        per_tp: dict[int, list[tuple[int, str]]] = {}
        futures = []
        for tp, outcome in records:
            offset = offsets.get(tp, 0)
            offsets[tp] = offset + 1
            fut = loop.create_future()
            inflight.add(tp, offset, fut)
            per_tp.setdefault(tp, []).append((offset, outcome))
            futures.append((fut, outcome))
        rng.shuffle(futures)  # the bus answers in any order
        for fut, outcome in futures:
            if outcome == "stored":
                fut.set_result(True)
            elif outcome == "not-stored":
                fut.set_result(False)
            elif outcome == "failed":  # too large for the bus: passed over, as Argo's "skip it"
                fut.set_exception(ValueError("too large"))
                fut.exception()
        commit, rewind = inflight.settled()
        for tp, recs in per_tp.items():
            want_commit = want_rewind = None
            for offset, outcome in recs:
                if outcome == "pending":
                    break
                if outcome == "not-stored":
                    want_rewind = offset
                    break
                want_commit = offset + 1
            assert commit.get(tp) == want_commit
            assert rewind.get(tp) == want_rewind
        assert inflight.count == sum(len(q) for q in inflight.by_tp.values())

    asyncio.run(run())
