"""Keep secrets out of logs and error details: one helper for URLs, headers and free text.

What is a secret here:

- the userinfo of a URL: ``scheme://user:PASSWORD@host`` keeps the user and hides the
  password; a userinfo without ``:`` is a token (``nats://TOKEN@host``) and is hidden
  whole. NATS lists of servers (``nats://u:p@h1:4222,u:p@h2:4222``) are handled item by item;
- query and fragment values whose name looks secret (token, access_token, api_key, key,
  secret, password, pass, pwd, signature, sig, auth, code, X-Amz-Signature, ...; any
  case, ``-`` or ``_``);
- the path of a chat webhook URL (Slack, Discord, Teams): the path *is* the credential, so
  only the host is shown;
- header values whose name looks secret (Authorization keeps its scheme word, Cookie,
  X-*-Token, X-Api-Key, ...).

Every place that logs a URL, a connection or headers, or puts one into an error or an
action's outcome, goes through this module. ``install_log_filter`` adds a last line of
defence on the ``airflow_argo_events`` logger hierarchy.

>>> redact_url("nats://alice:s3cret@10.0.0.1:4222,alice:s3cret@10.0.0.2:4222")
'nats://alice:***@10.0.0.1:4222,alice:***@10.0.0.2:4222'
>>> redact_url("https://user:pw@example.com/hook?token=abc&x=1")
'https://user:***@example.com/hook?token=***&x=1'
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

MASK = "***"

_SECRET_NAMES = frozenset({
    "token", "access_token", "api_key", "apikey", "key", "secret", "password", "pass", "passwd", "pwd",
    "signature", "sig", "auth", "code", "client_secret", "x_amz_signature", "x_amz_credential",
    "x_amz_security_token", "jwt", "nkey_seed", "session", "sessionid", "cookie", "private_key", "accesskey",
    "secretkey", "authkey", "delegation",
})
_SECRET_PARTS = ("token", "secret", "passw", "signature", "apikey", "api_key", "credential", "auth", "seed",
                 "session", "cookie", "private")
_SECRET_HEADERS = frozenset({"authorization", "proxy_authorization", "cookie", "set_cookie"})
_SERVER_LIST_SCHEMES = frozenset({"", "nats", "tls", "ws", "wss"})
"""Schemes whose URLs may list several servers, comma-separated (as NATS clients accept)."""
_WEBHOOK_HOSTS = ("hooks.slack.com", "discord.com", "discordapp.com", "webhook.office.com", "outlook.office.com")

# A URL inside free text: a scheme, then everything up to whitespace (a password may hold
# quotes or brackets); punctuation that ends a sentence or closes a quote is put back.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://\S+")
_TRAILING = ".,;:!?'\")]}>`"


def is_secret_name(name: str) -> bool:
    """True for a query parameter or header name that usually carries a credential."""
    n = name.strip().lower().replace("-", "_")
    if n in _SECRET_NAMES or n.endswith("_key"):
        return True
    return any(part in n for part in _SECRET_PARTS)


def redact_userinfo(userinfo: str) -> str:
    """``user:password`` -> ``user:***``; a token (no ``:``) -> ``***``."""
    user, sep, _ = userinfo.partition(":")
    return f"{user}:{MASK}" if sep else MASK


def _redact_authority(authority: str, server_list: bool) -> str:
    """Userinfo of the server, or of each server of a NATS-style comma-separated list.

    In a list, items without ``@`` (or with nothing after it) that come before one with
    ``@`` are counted as part of its userinfo, since a password may hold ``,`` and ``@``:
    nothing of a credential survives a split.
    """
    if "@" not in authority:
        return authority
    if not server_list:
        cred, _, host = authority.rpartition("@")
        return f"{redact_userinfo(cred)}@{host}"
    out: list[str] = []
    pending: list[str] = []
    for item in authority.split(","):
        cred, at, host = item.rpartition("@")
        if at and host:
            out.append(redact_userinfo(",".join([*pending, cred])) + "@" + host)
            pending = []
        else:
            pending.append(item)
    if any("@" in p for p in pending):  # a credential with no host after it
        cred, _, host = ",".join(pending).rpartition("@")
        pending = [f"{redact_userinfo(cred)}@{host}"]
    return ",".join(out + pending)


def _redact_params(params: str) -> str:
    """``a=1&token=x`` -> ``a=1&token=***`` (order, separators and other values kept)."""
    if "=" not in params:
        return params
    parts = re.split(r"([&;])", params)
    for i in range(0, len(parts), 2):
        name, eq, value = parts[i].partition("=")
        if eq and value and is_secret_name(_unquote(name)):
            parts[i] = f"{name}={MASK}"
    return "".join(parts)


def _unquote(text: str) -> str:
    from urllib.parse import unquote_plus

    return unquote_plus(text)


def redact_url(url: str) -> str:
    """``url`` with credentials hidden; the scheme, hosts, ports and the rest stay readable.

    Works on anything URL-shaped, including NATS server lists and URLs without a scheme
    (``user:pw@host:4222``). Never raises.
    """
    if not url:
        return url
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
        if "@" not in rest.split("/", 1)[0]:
            return _redact_tail(rest)
    end = len(rest)
    for ch in "/?#":
        i = rest.find(ch)
        if i != -1:
            end = min(end, i)
    authority, tail = rest[:end], rest[end:]
    authority = _redact_authority(authority, scheme.lower() in _SERVER_LIST_SCHEMES)
    host = authority.rpartition("@")[2].split(",")[0].split(":")[0].lower()
    if tail.startswith("/") and any(host == h or host.endswith("." + h) for h in _WEBHOOK_HOSTS):
        tail = "/" + MASK
    return f"{scheme}{sep}{authority}{_redact_tail(tail)}"


def _redact_tail(tail: str) -> str:
    """Secret-looking values in the query and the fragment of a URL's remainder."""
    path, qmark, rest = tail.partition("?")
    if qmark:
        query, hash_, fragment = rest.partition("#")
        return f"{path}?{_redact_params(query)}{hash_}{_redact_params(fragment)}"
    path, hash_, fragment = tail.partition("#")
    return f"{path}{hash_}{_redact_params(fragment)}"


def url_host(url: str) -> str:
    """Only the host (and port) of ``url``: for URLs whose path is itself a secret."""
    rest = url.partition("://")[2] or url
    for ch in "/?#":
        rest = rest.split(ch, 1)[0]
    return rest.rpartition("@")[2]


def redact_text(text: str) -> str:
    """Every URL inside ``text`` redacted; text without ``://`` is returned as it is."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(_redact_match, text)


def _redact_match(match: re.Match[str]) -> str:
    url = match.group(0)
    core = url.rstrip(_TRAILING)
    return redact_url(core) + url[len(core):]


def redact_header(name: str, value: str) -> str:
    """A header value as it may be shown: ``Bearer ***`` for Authorization, ``***`` for others."""
    n = name.strip().lower().replace("-", "_")
    if n in _SECRET_HEADERS or is_secret_name(n):
        if n.endswith("authorization"):
            scheme, space, _ = value.strip().partition(" ")
            return f"{scheme} {MASK}" if space else MASK
        return MASK
    return redact_text(value)


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``headers`` fit for a log line."""
    return {k: redact_header(k, str(v)) for k, v in headers.items()}


# ------------------------------------------------------------------ the logging safety net

class RedactingFilter(logging.Filter):
    """Redacts URL credentials in a record's formatted message (and traceback text).

    Cheap on the hot path: a record is only formatted when its template or arguments may
    hold a URL with credentials, and rewritten only when redaction changed something.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            self._scrub(record)
        except Exception:  # a log line must never fail because of us
            pass
        return True

    @staticmethod
    def _scrub(record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "://" in message and ("@" in message or "=" in message):
            redacted = redact_text(message)
            if redacted != message:
                record.msg, record.args = redacted, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            redacted = redact_text(text)
            if redacted != text:
                record.exc_text = redacted


class _ScrubHandler(logging.Handler):
    """A handler that emits nothing: its filter rewrites each record in place.

    A filter on a logger sees only records logged on that very logger, not its children's;
    a handler on the top logger of the hierarchy sees every record that propagates up, and
    it runs before the handlers of the root logger (where Airflow, pytest and the CLI put
    theirs). When nothing else would handle a record, it hands it to ``logging.lastResort``
    as the logging module would have done without us.
    """

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.addFilter(RedactingFilter())

    def emit(self, record: logging.LogRecord) -> None:
        last = logging.lastResort
        if last is None or record.levelno < last.level:
            return
        top = logging.getLogger(_TOP)
        logger = top.parent if top.propagate else None
        while logger is not None:
            if logger.handlers:
                return
            logger = logger.parent if logger.propagate else None
        last.handle(record)


_TOP = "airflow_argo_events"


def install_log_filter() -> None:
    """Add the redacting handler to the ``airflow_argo_events`` logger (once)."""
    top = logging.getLogger(_TOP)
    if not any(isinstance(h, _ScrubHandler) for h in top.handlers):
        top.addHandler(_ScrubHandler())


install_log_filter()
