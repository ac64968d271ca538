"""``argo-events validate FILE...``: check Sensor, EventSource and EventBus manifests."""

from __future__ import annotations

import argparse
import sys

from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.spec.extensions import extensions_used
from airflow_argo_events.core.spec.loader import Note, load_file

EXIT_INVALID = 2


def configure(p: argparse.ArgumentParser) -> None:
    """``validate`` (its name and one-line help are in cli/main.py)."""
    p.description = ("Runs Argo's admission checks. Warnings (fields Argo ignores, an HDFS RPC port, "
                     "a parameter naming no dependency) go to stderr and keep exit 0; documents of "
                     "other kinds (ConfigMap, WorkflowTemplate, ...) are skipped with a note. A manifest "
                     "using this project's extensions gets a second line naming them.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--strict", action="store_true",
                   help="refuse fields Argo would ignore (typo protection), instead of warning")
    p.add_argument("--argo-only", action="store_true",
                   help="refuse this project's extensions (correlation keys, windows, thresholds, the airflow "
                        "and prefect triggers, the prefect event source, ...), to keep manifests portable to Argo Events")
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
            used = all_extensions(m)
            if used and getattr(args, "argo_only", False):
                failed = True
                for where, name in used:
                    print(f"{path}: {where}: {name} is an extension, not Argo Events (refused by --argo-only)",
                          file=sys.stderr)
                continue
            print(f"{path}: {m.kind} {m.metadata.name}: ok")
            if used:
                print(f"{path}: {m.kind} {m.metadata.name}: uses extensions beyond Argo Events: "
                      + ", ".join(f"{name} ({where})" for where, name in used))
    return EXIT_INVALID if failed else 0


def all_extensions(manifest: object) -> list[tuple[str, str]]:
    """(field path, extension) for every extension a manifest uses: fields marked in the
    schema, and the extension kinds (trigger kinds, event source types) it names."""
    used = dict(extensions_used(manifest))  # type: ignore[arg-type]
    for where, what in getattr(manifest, "extensions", list)():
        if not any(where == w or where.startswith(w + ".") for w in used):  # named already, by its field
            used[where] = what
    return list(used.items())


def _print_notes(notes: list[Note]) -> None:
    for n in notes:
        print(n.line(), file=sys.stderr)
