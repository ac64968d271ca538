"""A secret reference resolved through an Airflow Variable inside the real triggerer (conftest.py
stores the Variable in the metadata database; the trigger reads it through Airflow's API)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from tests.e2e.conftest import WEBHOOK_TOKEN

pytestmark = [pytest.mark.timeout(600), pytest.mark.e2e]


def _post(port: int, token: str, body: dict) -> int | None:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/hook", data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:  # not listening (yet)
        return None


def test_webhook_auth_secret_from_an_airflow_variable_in_the_triggerer(airflow):
    port = int(airflow.env["E2E_WEBHOOK_PORT"])
    deadline = time.monotonic() + 120
    status = _post(port, "wrong", {"n": 0})
    while status is None and time.monotonic() < deadline:
        time.sleep(0.5)
        status = _post(port, "wrong", {"n": 0})
    assert status == 401, f"a wrong token must be refused; logs in {airflow.home}"
    assert _post(port, WEBHOOK_TOKEN, {"n": 1}) == 200
    airflow.wait_for(lambda: airflow.runs("webhook_consumer"), timeout=180, what="a run of webhook_consumer")
    for path in airflow.home.rglob("*"):
        if path.is_file() and (path.suffix == ".log" or "logs" in path.parts):
            assert WEBHOOK_TOKEN not in path.read_text(errors="replace"), f"the token is in {path}"
