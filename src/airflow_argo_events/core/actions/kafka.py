"""Argo's kafka trigger (aiokafka): the payload as one record, acknowledged by the broker before success.

Argo hands the record to sarama's async producer and reports success at once; here the
action waits for the broker's acknowledgement (``requiredAcks``), so a failed send is
retried by the executor. A retried firing may write its record twice: consumers
de-duplicate by the ``Idempotency-Key`` header (the firing id), which is also the record
key unless ``partitioningKey`` is set.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from airflow_argo_events.core.actions.base import Action, ActionContext, ActionResult
from airflow_argo_events.core.exceptions import ArgoEventsError
from airflow_argo_events.core.kafka_client import client_kwargs
from airflow_argo_events.core.redact import redact_text
from airflow_argo_events.core.spec.sensor import KafkaTrigger

if TYPE_CHECKING:
    from airflow_argo_events.core.sensor.engine import Firing

SEND_TIMEOUT = 30.0
IDEMPOTENCY_HEADER = "Idempotency-Key"


class KafkaAction(Action):
    """One producer per trigger, made on first use and reused (Argo keeps one per trigger name too)."""

    kind = "kafka"

    def __init__(self, name: str, ctx: ActionContext) -> None:
        super().__init__(name, ctx)
        self._producer: Any = None
        self._config: str = ""

    async def _producer_for(self, spec: KafkaTrigger) -> Any:
        from aiokafka import AIOKafkaProducer

        where = f"trigger {self.name}.kafka"
        config = json.dumps([spec.url, spec.required_acks, spec.compress, spec.flush_frequency,
                             spec.tls.dump() if spec.tls else None, spec.sasl.dump() if spec.sasl else None])
        if self._producer is not None and config == self._config:
            return self._producer
        await self.close()  # parameters changed the connection settings: a producer for the new ones
        # sarama: 0 (unset) means WaitForAll, 1 WaitForLocal, -1 WaitForAll
        acks: Any = 1 if spec.required_acks == 1 else "all"
        producer = AIOKafkaProducer(
            acks=acks, compression_type="snappy" if spec.compress else None,
            linger_ms=spec.flush_frequency or 0, request_timeout_ms=int(SEND_TIMEOUT * 1000),
            client_id=f"argo-events-{self.name}", **client_kwargs(spec.url, spec.tls, spec.sasl, self.ctx.secrets,
                                                                    where))
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer, self._config = producer, config
        return producer

    async def execute(self, firing: Firing) -> ActionResult:
        from aiokafka.errors import KafkaError

        spec = KafkaTrigger.model_validate(firing.body or {})
        if spec.schema_registry is not None:
            return ActionResult(False, "kafka schemaRegistry (Avro) is not supported here", retryable=False)
        headers = [(k, v.encode()) for k, v in (spec.headers or {}).items()]
        try:
            for h in spec.secure_headers or []:
                ref = h.value_from.secret_key_ref if h.value_from else None
                if ref is not None:
                    headers.append((h.name, self.ctx.secrets.get(ref, f"trigger {self.name}.kafka.secureHeaders").encode()))
            producer = await self._producer_for(spec)
        except ArgoEventsError as err:  # a missing secret, an unusable certificate: no retry helps
            return ActionResult(False, str(err), retryable=False)
        except (KafkaError, OSError) as err:
            await self.close()
            return ActionResult(False, f"kafka {spec.topic}: {redact_text(str(err)) or type(err).__name__}")
        headers.append((IDEMPOTENCY_HEADER, firing.id.encode()))
        key = (spec.partitioning_key if spec.partitioning_key is not None else firing.id).encode()
        value = json.dumps(firing.resolved).encode()
        try:
            meta = await asyncio.wait_for(producer.send_and_wait(spec.topic, value, key=key, headers=headers),
                                          SEND_TIMEOUT)
        except (KafkaError, OSError, asyncio.TimeoutError) as err:
            return ActionResult(False, f"kafka {spec.topic}: {redact_text(str(err)) or type(err).__name__}")
        return ActionResult(True, f"kafka {spec.topic}[{meta.partition}] offset {meta.offset}")

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
