"""``argo-events validate FILE...``: check Sensor, EventSource and EventBus manifests."""

from __future__ import annotations

import argparse
import sys

from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.spec.loader import Note, load_file

EXIT_INVALID = 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "validate", help="check manifests; exit 2 with 'file: path: message' lines",
        description="Runs Argo's admission checks. Warnings (fields Argo ignores, an HDFS RPC port, "
                    "a parameter naming no dependency) go to stderr and keep exit 0; documents of "
                    "other kinds (ConfigMap, WorkflowTemplate, ...) are skipped with a note.",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--strict", action="store_true",
                   help="refuse fields Argo would ignore (typo protection), instead of warning")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    failed = False
    for path in args.files:
        notes: list[Note] = []
        try:
            manifests = load_file(path, notes=notes, strict=getattr(args, "strict", False))
        except SpecError as err:
            failed = True
            _print_notes(notes)
            for line in err.lines():
                print(line, file=sys.stderr)
            continue
        _print_notes(notes)
        for m in manifests:
            print(f"{path}: {m.kind} {m.metadata.name}: ok")
    return EXIT_INVALID if failed else 0


def _print_notes(notes: list[Note]) -> None:
    for n in notes:
        print(n.line(), file=sys.stderr)
