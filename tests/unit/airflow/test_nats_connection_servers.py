"""The ``nats`` connection's server list: ``extra.servers`` as a list or one string, or Host
listing the nodes; bare hosts get the scheme and the port."""

from __future__ import annotations

import pytest

from airflow_argo_events.hooks.nats import NatsHook


class Conn:
    def __init__(self, host=None, port=None, **extra):
        self.conn_id, self.host, self.port, self.login, self.password = "nats_default", host, port, None, None
        self.extra_dejson = extra


@pytest.mark.parametrize("conn, servers", [
    (Conn(servers=["nats://n1:4222", "nats://n2:4222", "nats://n3:4222"]),
     ("nats://n1:4222", "nats://n2:4222", "nats://n3:4222")),
    (Conn(servers="n1, n2:4333 ,nats://n3"), ("nats://n1:4222", "nats://n2:4333", "nats://n3:4222")),
    (Conn(host="n1,n2,n3:5000", port=4333), ("nats://n1:4333", "nats://n2:4333", "nats://n3:5000")),
    (Conn(host="n1,n2", servers=["nats://a:1"]), ("nats://a:1",)),  # servers replaces Host and Port
    (Conn(servers=["n1", "n2"], tls_ca="/ca.pem"), ("tls://n1:4222", "tls://n2:4222")),
    (Conn(), ("nats://127.0.0.1:4222",)),
], ids=["json-list", "comma-string", "host-list", "servers-win", "tls", "default"])
def test_server_lists(conn, servers):
    settings, _ = NatsHook.settings_from_connection(conn)
    assert settings.servers == servers
    assert ",".join(servers) in settings.describe()


def test_a_port_that_is_not_a_number_is_named():
    with pytest.raises(ValueError, match=r"NATS server 'nats://n1:x42': the port is not a number"):
        NatsHook.settings_from_connection(Conn(servers="n1:x42"))
