"""The awsLambda action against moto's server mode: real aiobotocore, real Lambda API over HTTP.

moto runs a function's code in a Docker container, and no Docker daemon runs here, so
this module swaps in a runtime that executes the function's uploaded zip (its
``lambda_function.handler``) in the test process, as Lambda would: the event is the
payload, ``context.client_context`` is the ClientContext for synchronous invocations
only, and an exception becomes a 200 with ``X-Amz-Function-Error: Unhandled``. The rest
(CreateFunction, Invoke's routing, status codes, ResourceNotFoundException) is moto's.
(moto's docker-free ``lambda_simple`` backend was not used: it answers any function
name, created or not, with the payload echoed.)
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from dataclasses import dataclass, field
from typing import Any

import pytest

from airflow_argo_events.core.actions.executor import ActionRunner
from airflow_argo_events.core.spec.loader import load_text
from airflow_argo_events.testing.plugin import unique_name

from .test_actions import Sleeps, fire, one_dep_sensor

pytestmark = pytest.mark.timeout(90)

KEYS = {"accessKey": {"name": "aws", "key": "access"}, "secretKey": {"name": "aws", "key": "secret"}}
PAYLOAD = [{"src": {"dependencyName": "d", "dataKey": "body.msg"}, "dest": "message"},
           {"src": {"dependencyName": "d", "dataKey": "body.n", "useRawData": True}, "dest": "n"}]

ECHO = """
def handler(event, context):
    return {"got": event}
"""
FAILS = """
def handler(event, context):
    raise ValueError("boom " + event["message"])
"""


@dataclass
class Invocation:
    function: str
    event: Any
    client_context: dict[str, Any] | None
    invocation_type: str


@dataclass
class InProcessLambda:
    """Runs moto's stored function code here, recording each invocation."""

    calls: list[Invocation] = field(default_factory=list)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from moto.awslambda.models import LambdaFunction

        runtime = self

        def invoke(fn: Any, body: str, request_headers: Any, response_headers: Any) -> bytes:
            return runtime.run(fn, body, request_headers, response_headers)

        monkeypatch.setattr(LambdaFunction, "invoke", invoke)

    def run(self, fn: Any, body: str, request_headers: Any, response_headers: Any) -> bytes:
        kind = request_headers.get("X-Amz-Invocation-Type", "RequestResponse")
        raw = request_headers.get("X-Amz-Client-Context")
        # Lambda hands the ClientContext to synchronous invocations only
        ctx = json.loads(base64.b64decode(raw)) if raw and kind == "RequestResponse" else None
        event = json.loads(body) if body else {}
        self.calls.append(Invocation(fn.function_name, event, ctx, kind))
        if kind == "DryRun":
            return b""
        module: dict[str, Any] = {}
        exec(zipfile.ZipFile(io.BytesIO(fn.code_bytes)).read("lambda_function.py").decode(), module)
        context = type("Context", (), {"client_context": type("CC", (), ctx or {})() if ctx else None})()
        try:
            result = module["handler"](event, context)
        except Exception as err:  # noqa: BLE001 - what the Lambda runtime does with it
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorMessage": str(err), "errorType": type(err).__name__}).encode()
        return json.dumps(result).encode()


@pytest.fixture
def aws_lambda(moto_server, monkeypatch) -> InProcessLambda:
    monkeypatch.setenv("ARGO_EVENTS_SECRET_AWS_ACCESS", "testing")
    monkeypatch.setenv("ARGO_EVENTS_SECRET_AWS_SECRET", "testing")
    runtime = InProcessLambda()
    runtime.install(monkeypatch)
    return runtime


def _client(url: str, service: str):  # noqa: ANN202 - an aiobotocore client context manager
    from aiobotocore.session import get_session

    return get_session().create_client(service, region_name="us-east-1", endpoint_url=url,
                                       aws_access_key_id="testing", aws_secret_access_key="testing")


async def create_function(url: str, code: str) -> str:
    """A real CreateFunction (with its IAM role) in moto; returns the function's name."""
    name = unique_name("fn")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("lambda_function.py", code)
    async with _client(url, "iam") as iam:
        role = (await iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "lambda.amazonaws.com"}}]})))
    async with _client(url, "lambda") as lam:
        await lam.create_function(FunctionName=name, Runtime="python3.11", Role=role["Role"]["Arn"],
                                  Handler="lambda_function.handler", Code={"ZipFile": buf.getvalue()})
    return name


def lambda_trigger(url: str, function: str, **extra: Any) -> dict[str, Any]:
    return {"awsLambda": {"functionName": function, "region": "us-east-1", "endpoint": url, **KEYS,
                          "payload": PAYLOAD, **extra}}


async def run(sensor, **runner_kwargs):  # noqa: ANN001, ANN201
    eng, f = fire(sensor)
    runner = ActionRunner(eng, **runner_kwargs)
    try:
        return f, await runner.run(f)
    finally:
        await runner.close()


async def test_invokes_the_function_with_the_payload_and_the_firing_id(moto_server, aws_lambda):
    fn = await create_function(moto_server.url, ECHO)
    f, out = await run(one_dep_sensor(lambda_trigger(moto_server.url, fn)))
    assert out.ok, out.detail
    assert (out.status, out.attempts, out.detail) == (200, 1, f"lambda {fn}: 200")
    (call,) = aws_lambda.calls
    assert (call.function, call.event, call.invocation_type) == (fn, {"message": "hi", "n": 3}, "RequestResponse")
    assert call.client_context == {"custom": {"idempotencyKey": f.id, "sensor": "s", "trigger": "t"}}


async def test_a_retried_firing_carries_the_same_id(moto_server, aws_lambda):
    fn = await create_function(moto_server.url, ECHO)
    sensor = one_dep_sensor(lambda_trigger(moto_server.url, fn))
    f1, _ = await run(sensor)
    f2, _ = await run(sensor)
    ids = [c.client_context["custom"]["idempotencyKey"] for c in aws_lambda.calls]
    assert f1.id != f2.id and ids == [f1.id, f2.id]  # two firings, two ids
    again = ActionRunner(fire(sensor)[0])
    try:
        assert (await again.run(f1)).ok  # the journal re-running firing 1: the function sees its id again
    finally:
        await again.close()
    assert aws_lambda.calls[-1].client_context["custom"]["idempotencyKey"] == f1.id


async def test_event_and_dry_run_invocations(moto_server, aws_lambda):
    fn = await create_function(moto_server.url, ECHO)
    _, out = await run(one_dep_sensor(lambda_trigger(moto_server.url, fn, invocationType="Event")))
    assert (out.ok, out.status) == (True, 202), out.detail
    _, out = await run(one_dep_sensor(lambda_trigger(moto_server.url, fn, invocationType="DryRun")))
    assert (out.ok, out.status) == (True, 204), out.detail
    assert [(c.invocation_type, c.client_context) for c in aws_lambda.calls] == [("Event", None), ("DryRun", None)]
    assert aws_lambda.calls[0].event == {"message": "hi", "n": 3}


async def test_an_unknown_function_fails_every_attempt(moto_server, aws_lambda):
    sleeps = Sleeps()
    _, out = await run(one_dep_sensor(lambda_trigger(moto_server.url, unique_name("missing")),
                                      retryStrategy={"steps": 3}), sleep=sleeps)
    assert not out.ok and out.attempts == 3 and len(sleeps.calls) == 2
    assert out.status == 404 and "ResourceNotFoundException" in out.detail
    assert aws_lambda.calls == []


async def test_a_function_error_is_a_success_as_in_argo(moto_server, aws_lambda):
    fn = await create_function(moto_server.url, FAILS)
    _, out = await run(one_dep_sensor(lambda_trigger(moto_server.url, fn), policy={"status": {"allow": [200]}}))
    assert out.ok and out.attempts == 1
    assert out.detail == f"lambda {fn}: 200, function error Unhandled: ValueError: boom hi"


async def test_status_policy_refuses_what_it_does_not_allow(moto_server, aws_lambda):
    fn = await create_function(moto_server.url, ECHO)
    _, out = await run(one_dep_sensor(lambda_trigger(moto_server.url, fn, invocationType="Event"),
                                      policy={"status": {"allow": [200]}}))
    assert not out.ok and out.status == 202 and "not in policy.status.allow [200]" in out.detail


async def test_parameters_pick_the_function_from_the_event(moto_server, aws_lambda):
    fn = await create_function(moto_server.url, ECHO)
    sensor = one_dep_sensor(lambda_trigger(moto_server.url, "placeholder", parameters=[
        {"src": {"dependencyName": "d", "dataKey": "body.fn"}, "dest": "functionName"}]))
    eng, f = fire(sensor, data={"body": {"msg": "hi", "n": 1, "fn": fn}})
    runner = ActionRunner(eng)
    try:
        out = await runner.run(f)
    finally:
        await runner.close()
    assert out.ok, out.detail
    assert [c.function for c in aws_lambda.calls] == [fn]


async def test_a_missing_secret_is_one_line_and_not_retried(moto_server, aws_lambda, monkeypatch):
    monkeypatch.delenv("ARGO_EVENTS_SECRET_AWS_SECRET")
    fn = await create_function(moto_server.url, ECHO)
    _, out = await run(one_dep_sensor(lambda_trigger(moto_server.url, fn), retryStrategy={"steps": 3}),
                       sleep=Sleeps())
    assert not out.ok and out.attempts == 1
    assert "trigger t.awsLambda.secretKey" in out.detail and "ARGO_EVENTS_SECRET_AWS_SECRET" in out.detail
    assert "\n" not in out.detail and aws_lambda.calls == []


@pytest.mark.parametrize("block, message", [
    ({"region": "us-east-1", "payload": []}, "spec.triggers[0].template.awsLambda.functionName: functionName is required"),
    ({"functionName": "f", "region": "us-east-1", "payload": [], "invocationType": "Async"},
     "spec.triggers[0].template.awsLambda.invocationType: must be one of RequestResponse, Event, DryRun, got 'Async'"),
    ({"functionName": "f", "region": "us-east-1", "payload": [], "accessKey": KEYS["accessKey"]},
     "spec.triggers[0].template.awsLambda.secretKey: accessKey and secretKey go together"),
    ({"functionName": "f", "region": "us-east-1"}, "spec.triggers[0].template.awsLambda.payload: payload is required"),
])
def test_bad_configuration_names_the_field(block, message):
    from airflow_argo_events.core.exceptions import SpecError

    text = json.dumps({"apiVersion": "argoproj.io/v1alpha1", "kind": "Sensor", "metadata": {"name": "s"}, "spec": {
        "dependencies": [{"name": "d", "eventSourceName": "es", "eventName": "e"}],
        "triggers": [{"template": {"name": "t", "awsLambda": block}}]}})
    with pytest.raises(SpecError) as err:
        load_text(text)
    assert message in str(err.value)
