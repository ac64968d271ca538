"""Argo's awsLambda trigger (aiobotocore): invoke a function with the payload built from parameters.

What counts as a failure is Argo's (``pkg/sensors/triggers/aws-lambda``):

1. The Invoke call fails (the function does not exist, access denied, throttled after the
   SDK's own retries, Lambda unreachable): a failed attempt, retried by ``retryStrategy``.
2. ``policy.status.allow`` is set and Invoke's StatusCode (200 RequestResponse, 202
   Event, 204 DryRun) is not in it.
3. The *function* raising an error is not a failure: Lambda answers 200 with
   ``FunctionError`` set, and Argo reports success. The outcome's detail says so.

Idempotency: every invocation carries the firing id in its ClientContext
(``context.client_context.custom["idempotencyKey"]`` in a Python function), so a
retried firing can be recognised by the function. Lambda hands the ClientContext to
synchronous (RequestResponse) invocations only; for ``Event``, put the event ids in the
payload (``contextKey: id``), from which the firing id derives.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from typing import TYPE_CHECKING, Any

from airflow_argo_events.core.actions.base import Action, ActionContext, ActionResult
from airflow_argo_events.core.exceptions import ArgoEventsError
from airflow_argo_events.core.redact import redact_text
from airflow_argo_events.core.spec.sensor import AWSLambdaTrigger

if TYPE_CHECKING:
    from airflow_argo_events.core.sensor.engine import Firing

IDEMPOTENCY_KEY = "idempotencyKey"
"""The ClientContext ``custom`` key holding the firing id."""
MAX_CLIENT_CONTEXT = 3583
"""Lambda's limit on the base64 ClientContext, in bytes."""
READ_TIMEOUT = 905.0
"""A synchronous invocation may run 15 minutes: the HTTP read must outlast it, or the SDK
would retry a read timeout and run the function a second time while the first still runs."""
SDK_ATTEMPTS = 4
"""aws-sdk-go v1 (Argo's client) retries throttling and 5xx three times before giving up."""


def client_context(firing: Firing) -> str:
    """The base64 ClientContext naming the firing (and, when it fits, its sensor and trigger)."""
    custom = {IDEMPOTENCY_KEY: firing.id, "sensor": firing.sensor, "trigger": firing.trigger}
    text = base64.b64encode(json.dumps({"custom": custom}, separators=(",", ":")).encode()).decode()
    if len(text) > MAX_CLIENT_CONTEXT:  # names near Kubernetes' 253 characters: the id alone
        text = base64.b64encode(json.dumps({"custom": {IDEMPOTENCY_KEY: firing.id}}).encode()).decode()
    return text


class AwsLambdaAction(Action):
    """One Lambda client per trigger, made on first use and reused (Argo keeps one per trigger name too).

    >>> action = AwsLambdaAction("lambda-trigger", ActionContext())   # doctest: +SKIP
    >>> await action.execute(firing)                                  # doctest: +SKIP
    ActionResult(ok=True, detail='lambda hello: 200', status=200, ...)
    """

    kind = "awsLambda"

    def __init__(self, name: str, ctx: ActionContext) -> None:
        super().__init__(name, ctx)
        self._client: Any = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._config = ""

    async def _client_for(self, spec: AWSLambdaTrigger, sensor: str) -> Any:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        from airflow_argo_events.core.sources.aws import client_args

        config = json.dumps([spec.region, spec.endpoint, spec.role_arn, spec.access_key.dump() if spec.access_key
                             else None, spec.secret_key.dump() if spec.secret_key else None])
        if self._client is not None and config == self._config:
            return self._client
        await self.close()  # parameters changed the region, keys or role: a client for the new ones
        session = get_session()
        # the sensor's name also names the STS session with roleARN (at most 64 characters)
        args = await client_args(spec, self.ctx.secrets, f"trigger {self.name}.awsLambda", sensor[:52], session)
        stack = contextlib.AsyncExitStack()
        self._client = await stack.enter_async_context(session.create_client(
            "lambda", config=AioConfig(read_timeout=READ_TIMEOUT, connect_timeout=10,
                                       retries={"mode": "standard", "total_max_attempts": SDK_ATTEMPTS}), **args))
        self._stack, self._config = stack, config
        return self._client

    async def execute(self, firing: Firing) -> ActionResult:
        from botocore.exceptions import BotoCoreError, ClientError

        spec = AWSLambdaTrigger.model_validate(firing.body or {})
        fn = spec.function_name
        try:
            client = await self._client_for(spec, firing.sensor)
            reply = await client.invoke(
                FunctionName=fn, InvocationType=spec.invocation_type or "RequestResponse",
                Payload=json.dumps(firing.resolved if firing.resolved is not None else {}).encode(),
                ClientContext=client_context(firing))
            body = await reply["Payload"].read()
        except ArgoEventsError as err:  # a missing secret: no retry helps
            return ActionResult(False, str(err), retryable=False)
        except ClientError as err:
            # expired assumed-role keys included: the next attempt builds a new client
            await self.close()
            error = err.response.get("Error", {})
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return ActionResult(False, f"lambda {fn}: {error.get('Code', 'error')}: "
                                       f"{redact_text(str(error.get('Message', '')))}", status=status)
        except (BotoCoreError, OSError, asyncio.TimeoutError) as err:
            await self.close()
            return ActionResult(False, f"lambda {fn}: {type(err).__name__}: {redact_text(str(err))}")
        status = int(reply["StatusCode"])
        policy = firing.trigger_spec.policy if firing.trigger_spec else None
        allow = policy.status.allow if policy and policy.status else None
        if allow is not None and status not in allow:
            return ActionResult(False, f"lambda {fn}: status {status} not in policy.status.allow {allow}",
                                status=status)
        detail = f"lambda {fn}: {status}"
        if reply.get("FunctionError"):
            # Argo counts it as success too: the invocation happened, the function failed
            detail += f", function error {reply['FunctionError']}: {_short(body)}"
        return ActionResult(True, detail, status=status, ref=str(reply.get("ResponseMetadata", {}).get("RequestId", "")))

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()


def _short(body: bytes) -> str:
    """The function's error document (``{"errorType", "errorMessage"}``) in one short line."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and "errorMessage" in doc:
        text = f"{doc.get('errorType', 'Error')}: {doc['errorMessage']}"
    else:
        text = body.decode(errors="replace")
    return redact_text(" ".join(text.split()))[:300]
