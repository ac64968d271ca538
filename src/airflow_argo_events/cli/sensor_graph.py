"""``argo-events sensor graph -f SENSOR.yaml [--format mermaid|dot|svg]``: draw a Sensor."""

from __future__ import annotations

import argparse
import sys

from airflow_argo_events.cli.common import EXIT_INVALID, load_or_report
from airflow_argo_events.core.observe.graph import FORMATS, render


def configure(g: argparse.ArgumentParser) -> None:
    """``sensor graph`` (its name and one-line help are in cli/main.py)."""
    g.description = ("Prints the drawing on stdout (or to -o FILE). mermaid renders on GitHub, GitLab and in "
                     "mkdocs-material; dot is for Graphviz; svg is laid out here and needs nothing else.")
    g.add_argument("-f", "--file", dest="sensor", required=True, metavar="SENSOR.yaml")
    g.add_argument("--format", choices=FORMATS, default="mermaid", help="default: mermaid")
    g.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    g.set_defaults(func=run_graph)


def run_graph(args: argparse.Namespace) -> int:
    sensor = load_or_report(args.sensor, "Sensor")
    if sensor is None:
        return EXIT_INVALID
    text = render(sensor, args.format)
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as err:
        print(f"--output {args.output}: {err.strerror or err}", file=sys.stderr)
        return 1
    return 0
