"""``argo-events``: run Argo Events manifests and talk to the bus from a shell.

Each subcommand lives in its own module and only parses arguments and prints; the work
is done in ``airflow_argo_events.core``.

The commands are listed here by name and one-line help, and a command's module is
imported only when that command runs: ``argo-events --help`` and ``--version`` load no
manifest models, NATS client or sensor engine, and ``argo-events validate`` loads only
what validating needs (a test checks which modules each one imports).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from airflow_argo_events import __version__
from airflow_argo_events.cli.common import LOG_FORMATS, set_log_options


@dataclass(frozen=True)
class Command:
    """One ``argo-events`` command: a leaf set up by ``setup`` (``"module:function"`` under
    ``airflow_argo_events.cli``, called with the command's parser), or a group of ``children``."""

    name: str
    help: str
    setup: str = ""
    children: tuple[Command, ...] = ()
    description: str | None = None


COMMANDS: tuple[Command, ...] = (
    Command("validate", "check manifests; exit 2 with 'file: path: message' lines", "validate:configure"),
    Command("publish", "publish one CloudEvent and print its id", "bus_commands:configure_publish"),
    Command("tail", "print arriving events as JSON lines", "bus_commands:configure_tail"),
    Command("sensor", "test or run an Argo Sensor manifest", children=(
        Command("test", "replay recorded events through a Sensor; print one JSON line per firing",
                "sensor_commands:configure_test"),
        Command("run", "run a Sensor live against the bus and execute its actions", "sensor_run:configure"),
        Command("replay", "run a Sensor over the stream's history with fresh state; print (or execute) its firings",
                "replay_commands:configure_replay"),
        Command("diff", "replay two versions of a Sensor over the same history; print the firings that differ",
                "replay_commands:configure_diff"),
        Command("status", "what a live sensor waits for: conditions, last events, firings, lag (read-only)",
                "sensor_status:configure_status"),
        Command("list", "every sensor with state on the bus: CLI, SensorTrigger and EventSensor ones",
                "sensor_status:configure_list"),
        Command("graph", "draw a Sensor: EventSources -> dependencies (filters) -> conditions -> actions",
                "sensor_graph:configure"),
    )),
    Command("eventsource", "run an Argo EventSource manifest", children=(
        Command("run", "run every event of the EventSource and publish to the bus", "eventsource_commands:configure"),
    )),
    Command("state", "list or delete sensor state (KV buckets and durable consumers)",
            description="Sensor state is named from the sensor's whole definition: a changed definition starts "
                        "new state and leaves the old one here until deleted.",
            children=(
                Command("list", "a table of sensor state: name, sensor, stream, keys, bytes, pending, started",
                        "state_commands:configure_list"),
                Command("delete", "delete one sensor's state: its KV bucket and durable consumers",
                        "state_commands:configure_delete"),
            )),
    Command("receive", "a local HTTP receiver for http actions; prints each request as one JSON line",
            "receive:configure"),
    Command("demo", "watch EventSources, a Sensor and an action work, live (about 15 s; with --airflow about "
                    "2 minutes)", "demo:configure"),
)

_VALUE_OPTIONS = ("--log-format",)
"""Top-level options that take a value (the next word is not a command name)."""


def invoked(argv: Sequence[str]) -> list[str]:
    """The command path ``argv`` names (``["sensor", "run"]``), as far as it names known commands.

    >>> invoked(["-v", "--log-format", "json", "sensor", "run", "-f", "s.yaml"])
    ['sensor', 'run']
    """
    path: list[str] = []
    level = COMMANDS
    words = iter(argv)
    for word in words:
        if word == "--" or not level:
            break
        if word.startswith("-"):
            # argparse accepts unambiguous prefixes of long options (--log-f json)
            if "=" not in word and len(word) > 2 and any(o.startswith(word) for o in _VALUE_OPTIONS):
                next(words, None)
            continue
        command = next((c for c in level if c.name == word), None)
        if command is None:
            break
        path.append(word)
        level = command.children
    return path


def _setup(command: Command) -> Callable[[argparse.ArgumentParser], None]:
    module, _, function = command.setup.partition(":")
    setup: Callable[[argparse.ArgumentParser], None] = getattr(
        importlib.import_module(f"airflow_argo_events.cli.{module}"), function)
    return setup


def _add(sub: argparse._SubParsersAction[argparse.ArgumentParser], commands: Sequence[Command],
         path: Sequence[str] | None) -> None:
    """Add ``commands``; set up (import) only the one ``path`` leads to, or all when ``path`` is None."""
    for command in commands:
        parser = sub.add_parser(command.name, help=command.help, description=command.description)
        chosen = path is None or (len(path) > 0 and path[0] == command.name)
        if command.children:
            children = parser.add_subparsers(dest=f"{command.name}_command", metavar="ACTION", required=True)
            _add(children, command.children, None if path is None else (path[1:] if chosen else ()))
        elif chosen:
            _setup(command)(parser)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``argo-events`` parser. Given ``argv``, only the command it names is set up (its
    module imported); every other command is still listed with its help."""
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
    parser.add_argument("--log-format", choices=LOG_FORMATS, default=os.environ.get("ARGO_EVENTS_LOG_FORMAT", "text"),
                        help="log lines as text (default) or one JSON object per line; "
                             "default $ARGO_EVENTS_LOG_FORMAT")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add(sub, COMMANDS, None if argv is None else invoked(argv))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    if not hasattr(args, "func"):  # not the command invoked() found (should not happen): set up all
        args = build_parser().parse_args(argv)
    set_log_options(args.log_format, args.verbose)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `... | head`, `... | grep -q`: the reader left; not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that flushing at exit does not fail again
        return 0


if __name__ == "__main__":
    sys.exit(main())
