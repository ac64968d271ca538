"""Errors raised by airflow_argo_events.

Hierarchy::

    ArgoEventsError
     +-- SpecError            a manifest is invalid (carries the field path)
     +-- EventDecodeError     a bus message is not a CloudEvent we can read
     +-- FilterError          a filter, transform or expression failed for one event
     +-- EventBusError        NATS / JetStream failed
     |    +-- BusUnavailableError   cannot connect (unreachable, bad credentials)
     +-- ActionError          an action (Argo "trigger") failed
"""

from __future__ import annotations


class ArgoEventsError(Exception):
    """Base class of every error this package raises on purpose."""


class SpecError(ArgoEventsError):
    """A manifest is invalid; ``errors`` holds ``(path, message)`` pairs.

    >>> str(SpecError([("spec.dependencies[0].eventName", "field required")]))
    'spec.dependencies[0].eventName: field required'
    """

    def __init__(self, errors: list[tuple[str, str]], source: str | None = None) -> None:
        self.errors = errors
        self.source = source
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        prefix = f"{self.source}: " if self.source else ""
        return [f"{prefix}{path}: {msg}" if path else f"{prefix}{msg}" for path, msg in self.errors]


class EventDecodeError(ArgoEventsError):
    """A message on the bus could not be decoded as a CloudEvent."""


class FilterError(ArgoEventsError):
    """A filter, transform or expression could not be evaluated for an event."""


class EventBusError(ArgoEventsError):
    """An operation on NATS JetStream failed."""


class BusUnavailableError(EventBusError):
    """NATS could not be reached, or refused the credentials."""


class ActionError(ArgoEventsError):
    """An action failed; ``status`` is the HTTP-like status when there is one."""

    def __init__(self, action: str, message: str, status: int | None = None) -> None:
        self.action = action
        self.status = status
        super().__init__(f"action {action}: {message}")
