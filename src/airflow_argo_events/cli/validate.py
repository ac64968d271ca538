"""``argo-events validate FILE...``: check Sensor, EventSource and EventBus manifests."""

from __future__ import annotations

import argparse
import sys

from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.spec.loader import load_file

EXIT_INVALID = 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("validate", help="check manifests; exit 2 with 'file: path: message' lines")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    failed = False
    for path in args.files:
        try:
            manifests = load_file(path)
        except SpecError as err:
            failed = True
            for line in err.lines():
                print(line, file=sys.stderr)
            continue
        for m in manifests:
            print(f"{path}: {m.kind} {m.metadata.name}: ok")
    return EXIT_INVALID if failed else 0
