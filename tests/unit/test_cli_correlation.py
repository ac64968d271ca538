"""The correlation extension from the command line: validate (--argo-only) and sensor test --explain."""

from __future__ import annotations

import json

from .test_cli_sensor import EXAMPLES, run

ORDERS = EXAMPLES / "sensors" / "orders-payments.yaml"
EVENTS = EXAMPLES / "events" / "orders-payments.jsonl"


def test_validate_names_the_extensions_a_manifest_uses():
    out = run("validate", ORDERS, EXAMPLES / "sensors" / "trigger-conditions.yaml")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert f"{ORDERS}: Sensor orders: ok" in lines
    assert (f"{ORDERS}: Sensor orders: uses extensions beyond Argo Events: correlation keys "
            "(spec.triggers[0].template.correlation.keys), correlation window (spec.triggers[0].template."
            "correlation.window), correlation maxPending (spec.triggers[0].template.correlation.maxPending)") in lines
    # a plain Argo manifest: one line, as before
    assert [x for x in lines if "trigger-conditions" in x] == [
        f"{EXAMPLES / 'sensors' / 'trigger-conditions.yaml'}: Sensor trigger-conditions: ok"]


def test_validate_argo_only_refuses_extensions_and_passes_plain_argo():
    out = run("validate", "--argo-only", ORDERS)
    assert out.returncode == 2
    assert (f"{ORDERS}: spec.triggers[0].template.correlation.keys: correlation keys is an extension, "
            "not Argo Events (refused by --argo-only)") in out.stderr.splitlines()
    assert "ok" not in out.stdout
    plain = run("validate", "--argo-only", *sorted((EXAMPLES / "argo").glob("*.yaml")))
    assert plain.returncode == 0, plain.stderr


def test_sensor_test_pairs_each_order_with_its_payment():
    out = run("sensor", "test", ORDERS, "--events", EVENTS)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert len(lines) == 20
    for i, line in enumerate(lines, 1):
        assert line == {"trigger": "ship", "events": {"order": f"o{i}", "payment": f"p{i}"},
                        "resolved": {"order": str(i), "paid": str(10 * i)}, "key": str(i)}


def test_sensor_test_explain_shows_key_rejections_and_pending_keys(tmp_path):
    events = tmp_path / "e.jsonl"
    kept = [x for x in EVENTS.read_text().splitlines() if '"id":"p2"' not in x]
    events.write_text("\n".join(kept) + "\n")
    out = run("sensor", "test", ORDERS, "--events", events, "--explain")
    assert out.returncode == 0, out.stderr
    err = out.stderr.splitlines()
    assert "  dependency payment: rejected by trigger ship: correlation key body.orderId: missing from the event" \
        in err
    assert "  ship[1]: condition 'order && payment' met with ['order', 'payment']" in err
    tail = err[err.index("end of events:"):]
    assert tail == ["end of events:", "  ship: 1 pending key(s):", "    2: saved ['order']; waits for payment"]
