"""``argo-events``: run Argo Events manifests and talk to the bus from a shell.

Each subcommand lives in its own module and only parses arguments and prints; the work
is done in ``airflow_argo_events.core``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from airflow_argo_events import __version__
from airflow_argo_events.cli import bus_commands, validate


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="argo-events",
        description=(
            "Argo Events for Airflow: validate and run Argo EventSource/Sensor manifests, "
            "and publish or tail CloudEvents on the NATS JetStream bus. NATS is --nats, else "
            "$ARGO_EVENTS_NATS_URL, else a local JetStream on 127.0.0.1:4222, else an embedded "
            "nats-server started for the command."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    validate.register(sub)
    bus_commands.register(sub)
    try:
        from airflow_argo_events.cli import sensor_commands

        sensor_commands.register(sub)
    except ImportError:  # pragma: no cover - engine extras missing
        pass
    try:
        from airflow_argo_events.cli import eventsource_commands

        eventsource_commands.register(sub)
    except ImportError:  # pragma: no cover
        pass
    try:
        from airflow_argo_events.cli import state_commands

        state_commands.register(sub)
    except ImportError:  # pragma: no cover
        pass
    try:
        from airflow_argo_events.cli import receive

        receive.register(sub)
    except ImportError:  # pragma: no cover - aiohttp missing
        pass
    try:
        from airflow_argo_events.cli import demo

        demo.register(sub)
    except ImportError:  # pragma: no cover
        pass
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
