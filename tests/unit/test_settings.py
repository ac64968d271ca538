from __future__ import annotations

import pytest

from airflow_argo_events.core.bus.settings import NatsSettings
from airflow_argo_events.core.spec.durations import parse_duration


@pytest.mark.parametrize(
    "url, expected",
    [
        ("nats://127.0.0.1:4222", {"servers": ("nats://127.0.0.1:4222",)}),
        ("127.0.0.1:4333", {"servers": ("nats://127.0.0.1:4333",)}),
        ("nats://a:1,b:2", {"servers": ("nats://a:1", "nats://b:2")}),
        ("nats://alice:pw@h:4222", {"user": "alice", "password": "pw"}),
        ("nats://s3cr3t@h:4222", {"token": "s3cr3t", "user": None}),
        ("nats://h?creds=/x/u.creds&name=etl", {"creds_file": "/x/u.creds", "name": "etl", "servers": ("nats://h:4222",)}),
        ("tls://h:4443?tls_ca=/ca.pem", {"tls_ca": "/ca.pem", "servers": ("tls://h:4443",)}),
        ("nats://h?nkey=/k.nk", {"nkey_seed_file": "/k.nk"}),
        # credentials on every server of a list: both hosts kept, the password not mangled
        ("nats://u:pw@h1,u:pw@h2:4223", {"servers": ("nats://h1:4222", "nats://h2:4223"), "user": "u",
                                          "password": "pw"}),
        ("nats://u:p%40x@h", {"password": "p@x"}),
    ],
)
def test_from_url(url, expected):
    s = NatsSettings.from_url(url)
    for key, value in expected.items():
        assert getattr(s, key) == value


def test_unknown_option_is_refused():
    with pytest.raises(ValueError, match="unknown option 'bogus'"):
        NatsSettings.from_url("nats://h?bogus=1")


def test_secrets_are_not_in_repr_or_label():
    s = NatsSettings.from_url("nats://alice:topsecret@h:4222")
    assert "topsecret" not in repr(s)
    assert "topsecret" not in s.describe()


def test_connect_kwargs():
    kw = NatsSettings(servers=("nats://h:1",), user="u", password="p", creds_file="/c").connect_kwargs()
    assert kw["user"] == "u" and kw["password"] == "p" and kw["user_credentials"] == "/c"
    assert "tls" not in kw


@pytest.mark.parametrize(
    "text, seconds",
    [("30s", 30), ("1m", 60), ("1h30m", 5400), ("168h", 604800), ("500ms", 0.5), ("2", 2), ("1.5h", 5400)],
)
def test_go_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "10x", "1m30"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)
