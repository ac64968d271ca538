"""Helpers shared by the queue sources: body decoding and reconnect backoff."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any

from airflow_argo_events.core.redact import redact_text

log = logging.getLogger("airflow_argo_events.sources")


def body_of(data: bytes, json_body: bool, as_text: bool = False) -> Any:
    """Argo's body: the parsed JSON with ``jsonBody``; otherwise Go's []byte, which JSON
    carries as base64 (or the text itself for sources whose payload is a Go string)."""
    if json_body:
        try:
            return json.loads(data)
        except ValueError:
            log.warning("jsonBody is set but the message is not JSON; passing it as text")
            return data.decode("utf-8", "replace")
    if as_text:
        return data.decode("utf-8", "replace")
    return base64.b64encode(data).decode()


class Backoff:
    """Reconnect pauses: 0.5 s doubling to 30 s, reset after a success."""

    def __init__(self, first: float = 0.5, cap: float = 30.0) -> None:
        self.first, self.cap, self.current = first, cap, first

    async def wait(self, label: str, err: BaseException) -> None:
        # Client errors may quote the broker URL (amqp://user:pass@..., redis://:pass@...).
        log.warning("%s: %s; reconnecting in %.1fs", label, redact_text(str(err)) or type(err).__name__,
                    self.current)
        await asyncio.sleep(self.current)
        self.current = min(self.current * 2, self.cap)

    def reset(self) -> None:
        self.current = self.first
