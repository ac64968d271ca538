from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest

from airflow_argo_events.core.events import decode, encode, event_from_json, format_time, new_event
from airflow_argo_events.core.exceptions import EventDecodeError


def test_structured_json_has_argo_fields():
    ev = new_event(source="webhook-es", subject="example", type="webhook", data={"body": {"x": 1}})
    wire = json.loads(encode(ev))
    assert wire["specversion"] == "1.0"
    assert wire["source"] == "webhook-es"
    assert wire["subject"] == "example"
    assert wire["type"] == "webhook"
    assert wire["datacontenttype"] == "application/json"
    assert wire["data"] == {"body": {"x": 1}}
    assert re.fullmatch(r"[0-9a-f]{32}", wire["id"]), "Argo ids are the hex of a UUID"
    assert wire["time"].endswith("Z")


def test_round_trip_keeps_every_attribute():
    t = datetime(2024, 5, 1, 10, 0, 0, 123000, tzinfo=timezone.utc)
    ev = new_event(source="s", subject="e", type="calendar", data={"a": [1, 2.5, None, "x"]}, id="abc", time=t,
                   extensions={"traceparent": "00-1"})
    back = decode(encode(ev))
    assert back == ev


def test_decodes_what_argo_go_sdk_writes():
    # Go's SDK writes RFC3339Nano times and data inline when the content type is JSON.
    wire = (b'{"specversion":"1.0","id":"1c3a2f","source":"ws","type":"webhook","subject":"example",'
            b'"datacontenttype":"application/json","time":"2024-01-02T03:04:05.123456789Z",'
            b'"data":{"header":{"A":["b"]},"body":{"message":"hi"}}}')
    ev = decode(wire)
    assert ev.data["body"] == {"message": "hi"}
    assert ev.time.astimezone(timezone.utc).replace(microsecond=0) == datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_binary_mode_headers():
    headers = {"ce-specversion": "1.0", "ce-id": "42", "ce-source": "shop", "ce-type": "nats",
               "ce-subject": "order", "ce-time": "2024-01-01T00:00:00+02:00", "content-type": "application/json"}
    ev = decode(b'{"n": 1}', headers)
    assert (ev.id, ev.source, ev.subject, ev.type, ev.data) == ("42", "shop", "order", "nats", {"n": 1})
    assert ev.time.utcoffset() == timedelta(hours=2)


def test_non_json_data_stays_bytes():
    headers = {"ce-id": "1", "ce-source": "s", "ce-type": "t", "content-type": "application/json"}
    assert decode(b"not json", headers).data == b"not json"


@pytest.mark.parametrize(
    "payload, headers",
    [
        (b"", None),
        (b"garbage", None),
        (b"[1,2]", None),
        (b'{"id":"1"}', None),
        (b'{"specversion":"1.0","id":"1","source":"s","type":"t","time":"yesterday"}', None),
        (b"x", {"ce-id": "1", "ce-source": "s"}),
    ],
    ids=["empty", "garbage", "array", "missing-attrs", "bad-time", "binary-missing-type"],
)
def test_malformed_messages_raise_one_clear_error(payload, headers):
    with pytest.raises(EventDecodeError) as info:
        decode(payload, headers)
    assert "\n" not in str(info.value).strip() or "CloudEvent" in str(info.value)


def test_event_from_json_line():
    ev = event_from_json({"specversion": "1.0", "id": "e1", "source": "s", "subject": "d", "type": "webhook",
                          "time": "2024-01-01T10:00:00Z", "datacontenttype": "application/json", "data": {"k": 1}})
    assert ev.id == "e1" and ev.data == {"k": 1}
    assert format_time(ev.time) == "2024-01-01T10:00:00Z"
