"""core/redact.py: what is hidden, what stays readable, and the logging safety net."""

from __future__ import annotations

import io
import logging

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from airflow_argo_events.core.redact import (
    RedactingFilter,
    install_log_filter,
    is_secret_name,
    redact_headers,
    redact_text,
    redact_url,
    url_host,
)

URLS = [
    # (id, given, expected)
    ("plain", "http://example.com/a?b=1#c", "http://example.com/a?b=1#c"),
    ("user-password", "nats://alice:s3cret@127.0.0.1:4222", "nats://alice:***@127.0.0.1:4222"),
    ("token-only", "nats://TOKEN123@127.0.0.1:4222", "nats://***@127.0.0.1:4222"),
    ("empty-user", "redis://:pa55@localhost:6379/0", "redis://:***@localhost:6379/0"),
    ("amqp", "amqp://guest:guest@rabbit:5672/vhost", "amqp://guest:***@rabbit:5672/vhost"),
    ("mqtt-tls", "ssl://u:p@broker:8883", "ssl://u:***@broker:8883"),
    ("nats-cluster", "nats://a:pw@h1:4222,a:pw@h2:4222,a:pw@h3:4222",
     "nats://a:***@h1:4222,a:***@h2:4222,a:***@h3:4222"),
    ("nats-cluster-tokens", "nats://tok@h1,tok@h2", "nats://***@h1,***@h2"),
    ("cluster-one-credential", "nats://u:pw@h1:4222,h2:4222", "nats://u:***@h1:4222,h2:4222"),
    ("password-with-comma", "nats://u:a,b@h1:4222", "nats://u:***@h1:4222"),
    ("password-with-at", "http://u:p@ss@host/x", "http://u:***@host/x"),
    ("password-with-at-comma-http", "http://u:a@b,c@host/x", "http://u:***@host/x"),
    ("password-with-at-comma-nats", "nats://u:p@,q@h1:4222", "nats://u:***@h1:4222"),
    ("credential-without-host", "nats://u:p@/x", "nats://u:***@/x"),
    ("percent-encoded", "http://u:p%40ss%2F@host/", "http://u:***@host/"),
    ("no-scheme", "alice:s3cret@10.0.0.1:4222", "alice:***@10.0.0.1:4222"),
    ("no-scheme-plain", "10.0.0.1:4222", "10.0.0.1:4222"),
    ("query-token", "https://h/hook?token=abc&x=1", "https://h/hook?token=***&x=1"),
    ("query-case", "https://h/?Access_Token=abc&API-KEY=k&Sig=s", "https://h/?Access_Token=***&API-KEY=***&Sig=***"),
    ("query-many", "https://h/?apikey=1&key=2&secret=3&password=4&pass=5&pwd=6&signature=7&auth=8&code=9",
     "https://h/?apikey=***&key=***&secret=***&password=***&pass=***&pwd=***&signature=***&auth=***&code=***"),
    ("s3-presigned", "https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA%2F&X-Amz-Signature=abc&X-Amz-Expires=60",
     "https://b.s3.amazonaws.com/k?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Expires=60"),
    ("client-secret", "https://h/token?client_id=app&client_secret=xyz", "https://h/token?client_id=app&client_secret=***"),
    ("nats-options", "nats://h:4222?token=t&nkey_seed=SU123&name=etl", "nats://h:4222?token=***&nkey_seed=***&name=etl"),
    ("fragment-token", "https://h/cb#access_token=abc&state=1", "https://h/cb#access_token=***&state=1"),
    ("empty-value-kept", "https://h/?token=&x=1", "https://h/?token=&x=1"),
    ("userinfo-and-query", "http://bob:pw@127.0.0.1:8080/hook?token=t&x=1",
     "http://bob:***@127.0.0.1:8080/hook?token=***&x=1"),
    ("slack-webhook", "https://hooks.slack.com/services/T000/B000/XXXXSECRET", "https://hooks.slack.com/***"),
    ("discord-webhook", "https://discord.com/api/webhooks/123/SECRET", "https://discord.com/***"),
    ("teams-webhook", "https://acme.webhook.office.com/webhookb2/SECRET", "https://acme.webhook.office.com/***"),
    ("ipv6", "http://u:p@[::1]:8080/", "http://u:***@[::1]:8080/"),
    ("empty", "", ""),
]


@pytest.mark.parametrize(("given", "expected"), [(g, e) for _, g, e in URLS], ids=[i for i, _, _ in URLS])
def test_redact_url(given, expected):
    assert redact_url(given) == expected


@pytest.mark.parametrize(("name", "secret"), [
    ("token", True), ("TOKEN", True), ("access_token", True), ("X-Amz-Signature", True), ("api-key", True),
    ("apikey", True), ("key", True), ("sig", True), ("code", True), ("pwd", True), ("client_secret", True),
    ("aws_access_key", True), ("refresh_token", True), ("nkey_seed", True),
    ("x", False), ("name", False), ("page", False), ("X-Amz-Expires", False), ("monkey", False),
    ("X-Request-Id", False), ("Content-Type", False),
])
def test_is_secret_name(name, secret):
    assert is_secret_name(name) is secret


def test_redact_headers_keeps_the_scheme_word_and_hides_values():
    out = redact_headers({
        "Authorization": "Bearer eyJabc", "Proxy-Authorization": "Basic dTpw", "Cookie": "sid=1",
        "X-Gitlab-Token": "glt", "X-Api-Key": "k", "X-Hub-Signature-256": "sha256=ab", "Set-Cookie": "a=b",
        "Content-Type": "application/json", "X-Request-Id": "r1", "Location": "http://u:pw@h/",
        "Authorization-Raw": "opaque",
    })
    assert out == {
        "Authorization": "Bearer ***", "Proxy-Authorization": "Basic ***", "Cookie": "***",
        "X-Gitlab-Token": "***", "X-Api-Key": "***", "X-Hub-Signature-256": "***", "Set-Cookie": "***",
        "Content-Type": "application/json", "X-Request-Id": "r1", "Location": "http://u:***@h/",
        "Authorization-Raw": "***",
    }


def test_redact_text_finds_urls_in_messages():
    text = ("NATS trigger t (nats://alice:pw1@h1:4222,alice:pw1@h2:4222): cannot connect; "
            "POST http://bob:pw2@h/x?token=t0k: 200 and 'amqp://g:pw3@r/' (redis://:pw4@r:6379)")
    out = redact_text(text)
    for secret in ("pw1", "pw2", "t0k", "pw3", "pw4"):
        assert secret not in out
    assert "nats://alice:***@h1:4222,alice:***@h2:4222" in out and "POST http://bob:***@h/x?token=***: 200" in out
    assert redact_text("no urls here: user@example.com token=x") == "no urls here: user@example.com token=x"


def test_url_host():
    assert url_host("https://hooks.slack.com/services/T/B/SECRET") == "hooks.slack.com"
    assert url_host("http://u:p@127.0.0.1:9/x?y") == "127.0.0.1:9"


# ------------------------------------------------------------------ property: the password never survives

# Characters a password may hold unescaped in a URL's userinfo (RFC 3986 unreserved and
# sub-delims, ':' and '@' included; '/', '?', '#' must be percent-encoded there).
_PASSWORD = st.text(alphabet=st.sampled_from(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@%"), min_size=6, max_size=40)
_NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=12)
_HOST = st.from_regex(r"[a-z][a-z0-9.-]{0,20}(:[0-9]{1,5})?", fullmatch=True)
_SCHEME = st.sampled_from(["nats", "tls", "http", "https", "amqp", "amqps", "redis", "rediss", "mqtt", "tcp", "ws"])
_TAIL = st.sampled_from(["", "/", "/path", "/a/b?x=1", "?name=etl", "#frag"])


@given(scheme=_SCHEME, user=_NAME, password=_PASSWORD, host=_HOST, tail=_TAIL)
def test_password_never_in_redacted_url(scheme, user, password, host, tail):
    assume(password not in f"{scheme}://{user}:" and password not in f"@{host}{tail}")
    url = f"{scheme}://{user}:{password}@{host}{tail}"
    out = redact_url(url)
    assert password not in out
    if scheme not in ("nats", "tls", "ws") or "," not in password:  # a NATS server list is ambiguous then
        assert out == f"{scheme}://{user}:***@{host}{tail}"
    assert password not in redact_text(f"connecting to {url} failed")


@given(token=_PASSWORD.filter(lambda t: "," not in t and ":" not in t), hosts=st.lists(_HOST, min_size=1, max_size=4))
def test_token_never_in_redacted_server_list(token, hosts):
    assume(all(token not in h for h in hosts) and token not in "nats://")
    url = "nats://" + ",".join(f"{token}@{h}" for h in hosts)
    out = redact_url(url)
    assert token not in out
    assert out == "nats://" + ",".join(f"***@{h}" for h in hosts)


@given(name=st.sampled_from(["token", "access_token", "api_key", "apikey", "key", "secret", "password", "pass",
                             "pwd", "signature", "sig", "auth", "code", "X-Amz-Signature", "TOKEN", "Api-Key"]),
       value=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._~%+", min_size=6, max_size=30),
       before=st.sampled_from(["", "a=1&", "x=y&z=w&"]), after=st.sampled_from(["", "&b=2", "#frag"]))
def test_secret_query_value_never_survives(name, value, before, after):
    assume(value not in f"https://h/p?{before}{name}=" and value not in after)
    out = redact_url(f"https://h/p?{before}{name}={value}{after}")
    assert value not in out
    assert f"{name}=***" in out


# ------------------------------------------------------------------ the logging safety net

def _format(record: logging.LogRecord) -> str:
    return logging.Formatter("%(message)s").format(record)


def test_filter_redacts_message_args_and_tracebacks():
    f = RedactingFilter()
    rec = logging.LogRecord("airflow_argo_events.x", logging.WARNING, __file__, 1, "connect %s failed: %s",
                            ("nats://u:topsecret@h:4222", "nope"), None)
    assert f.filter(rec) is True
    assert _format(rec) == "connect nats://u:***@h:4222 failed: nope"
    try:
        raise ValueError("bad url http://u:tracesecret@h/")
    except ValueError:
        import sys

        rec = logging.LogRecord("airflow_argo_events.x", logging.ERROR, __file__, 1, "crashed", (), sys.exc_info())
    f.filter(rec)
    assert "tracesecret" not in _format(rec) and "http://u:***@h/" in _format(rec)


def test_filter_leaves_other_records_untouched():
    rec = logging.LogRecord("airflow_argo_events.x", logging.INFO, __file__, 1, "n=%d user@example.com", (3,), None)
    RedactingFilter().filter(rec)
    assert (rec.msg, rec.args) == ("n=%d user@example.com", (3,))


def test_every_logger_of_the_hierarchy_is_covered(caplog):
    """Records of child loggers reach the redacting handler before the root's handlers."""
    install_log_filter()
    install_log_filter()  # idempotent
    top = logging.getLogger("airflow_argo_events")
    assert sum(type(h).__name__ == "_ScrubHandler" for h in top.handlers) == 1
    caplog.set_level(logging.INFO)
    logging.getLogger("airflow_argo_events.some.new.module").info("at %s", "amqp://g:childsecret@r:5672/")
    assert "childsecret" not in caplog.text and "amqp://g:***@r:5672/" in caplog.text


def test_last_resort_still_prints_warnings_when_logging_is_not_configured(monkeypatch):
    """Our handler must not swallow warnings that Python would print when nobody configured logging."""
    stream = io.StringIO()
    monkeypatch.setattr(logging, "lastResort", logging.StreamHandler(stream))
    logging.lastResort.setLevel(logging.WARNING)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    logging.getLogger("airflow_argo_events.quiet").warning("visible %s", "nats://t0ken@h")
    logging.getLogger("airflow_argo_events.quiet").info("below last resort's level")
    assert stream.getvalue() == "visible nats://***@h\n"
