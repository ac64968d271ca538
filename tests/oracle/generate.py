"""Run the seeded cases of ``cases.py`` through the Go oracle and write ``tests/golden/<library>.jsonl``.

Usage (``make oracle`` does this after building the oracle)::

    python tests/oracle/generate.py --oracle /tmp/argo-oracle/bin --out tests/golden [--only gjson,jq]

Each golden file is JSON lines: the first line holds the library name and the shared pool
of documents, every other line one case with Go's result under ``"go"``. After writing,
it prints how many cases our Python engine agrees with (``tests/oracle/ours.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.oracle.cases import GENERATORS  # noqa: E402

SEED = 12


def run_oracle(binary: Path, docs: list[str], cases: list[dict]) -> list[dict]:
    lines = []
    for case in cases:
        c = dict(case)
        if "doc" in c:
            c["doc"] = docs[c["doc"]]
        lines.append(json.dumps(c, ensure_ascii=False))
    env = dict(os.environ, TZ="UTC")
    proc = subprocess.run([str(binary)], input="\n".join(lines) + "\n", capture_output=True, text=True,
                          env=env, check=True, timeout=600)
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    if len(results) != len(cases):
        raise SystemExit(f"{binary.name}: {len(results)} results for {len(cases)} cases: {proc.stderr[-500:]}")
    for case, res in zip(cases, results, strict=True):
        if res.pop("id") != case["id"]:
            raise SystemExit(f"{binary.name}: results out of order at {case['id']}")
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--oracle", type=Path, required=True, help="directory of the built oracle programs")
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "golden")
    ap.add_argument("--only", default="", help="comma-separated libraries (default: all)")
    ap.add_argument("--gaps-only", action="store_true",
                    help="skip Go; only rewrite known_gaps.json from the current engine (after closing gaps)")
    args = ap.parse_args()
    if args.gaps_only:
        record_gaps(args.out)
        return
    only = set(filter(None, args.only.split(",")))
    args.out.mkdir(parents=True, exist_ok=True)
    for lib, (gen, count) in GENERATORS.items():
        if only and lib not in only:
            continue
        rng = random.Random(f"{lib}-{SEED}")
        docs, cases = gen(rng, count)
        results = run_oracle(args.oracle / lib, docs, cases)
        # Go's map order is random (sprig's keys, Lua's pairs): a case whose answer changes
        # between runs has no single Go answer and is marked, not compared.
        for _ in range(2):
            again = run_oracle(args.oracle / lib, docs, cases)
            for i, (first, second) in enumerate(zip(results, again, strict=True)):
                if first != second:
                    results[i] = {"nondeterministic": True}
        path = args.out / f"{lib}.jsonl"
        with path.open("w", encoding="utf-8") as fh:
            fh.write(json.dumps({"library": lib, "seed": SEED, "docs": docs}, ensure_ascii=False) + "\n")
            for case, res in zip(cases, results, strict=True):
                fh.write(json.dumps({**case, "go": res}, ensure_ascii=False, sort_keys=True) + "\n")
        print(f"{lib}: {len(cases)} cases -> {path} ({path.stat().st_size // 1024} KiB)")
    try:
        from tests.oracle import ours
    except ImportError as err:  # the engine is not importable (no venv): golden files are still written
        print(f"agreement not computed: {err}")
        return
    for lib in GENERATORS:
        if only and lib not in only:
            continue
        report = ours.compare_file(args.out / f"{lib}.jsonl")
        print(report.summary())
    record_gaps(args.out)


def record_gaps(out: Path) -> None:
    """known_gaps.json: every case where we differ from Go without a DELIBERATE reason."""
    from tests.oracle import ours

    gaps = {}
    for lib in GENERATORS:
        report = ours.compare_file(out / f"{lib}.jsonl")
        gaps[lib] = {cid: detail[:120] for cid, detail in report.unexplained}
    text = json.dumps(gaps, ensure_ascii=False, indent=0, sort_keys=True) + "\n"
    (out / "known_gaps.json").write_text(text, encoding="utf-8")
    print(f"known gaps: {sum(map(len, gaps.values()))} -> {out / 'known_gaps.json'}")


if __name__ == "__main__":
    main()
