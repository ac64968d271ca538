"""The "Argo Events" page in a real Airflow, opened in headless Chromium.

The shared Airflow (conftest.py) runs this provider's SensorTriggers in its triggerer; its
API server loads the plugin from the ``airflow.plugins`` entry point. The test publishes an
event, waits for the DAG run its firing creates, and waits for that firing to appear on the
page, inside the Airflow UI, as a logged-in user sees it. The screenshot goes to
docs/img/airflow-ui-argo-events.png, which docs/operations.md shows.

Chromium is Debian's (``/usr/bin/chromium``, installed by .ci/run), driven by Playwright's
Python package with ``executable_path``: no browser is downloaded.
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.e2e.test_airflow_e2e import ev, publish

pytestmark = [pytest.mark.timeout(600), pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "img" / "airflow-ui-argo-events.png"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("Debian's chromium is not installed (apt-get install -y chromium; .ci/run does it)")
    return path


def _get(airflow, path, token=None):
    req = urllib.request.Request(f"http://127.0.0.1:{airflow.port}{path}",
                                 headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_the_plugin_is_registered_and_needs_a_reader(airflow):
    plugins = airflow.api("GET", "/plugins")["plugins"]
    ours = [p for p in plugins if p["name"] == "argo_events"]
    assert ours, [p["name"] for p in plugins]
    assert {v["url_route"] for v in ours[0]["external_views"]} == {"argo-events", "argo-events-dag"}
    assert ours[0]["fastapi_apps"][0]["url_prefix"] == "/argo-events"
    status, _ = _get(airflow, "/argo-events/api/sensors")
    assert status == 401
    status, body = _get(airflow, "/argo-events/api/sensors", airflow.token())
    assert status == 200, body
    names = {v["sensor"] for v in json.loads(body)}
    assert {"pair", "burst", "plain"} <= names, names


def test_a_firing_appears_on_the_page_in_a_real_browser(airflow, nats_url, stream_name):
    from playwright.sync_api import sync_playwright

    before = len(airflow.runs("burst_target"))
    publish(nats_url, stream_name, [ev("burst", {"ui": "screenshot"})])
    airflow.wait_for(lambda: len(airflow.runs("burst_target")) > before, timeout=120, what="the firing's DAG run")
    run_id = airflow.runs("burst_target")[-1][0]
    firing_id = run_id.removeprefix("argo-events__")
    base = f"http://127.0.0.1:{airflow.port}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), headless=True, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(viewport={"width": 1500, "height": 1100})
            # Logged in as the UI logs in: the JWT in Airflow's session cookie.
            context.add_cookies([{"name": "_token", "value": airflow.token(), "url": base}])
            page = context.new_page()
            page.goto(f"{base}/plugin/argo-events", wait_until="domcontentloaded", timeout=120_000)
            frame = page.frame_locator('iframe[title="Argo Events"]')
            burst = frame.locator('section.sensor[data-sensor="burst"]')
            # The DAG run the firing created (from Airflow's database) and the firing in the
            # sensor's state (read from NATS): the page refreshes every 5 s until both show.
            burst.locator(f'a.run[href$="{quote(run_id, safe="")}"]').first.wait_for(timeout=120_000)
            burst.locator("code.firing", has_text=firing_id).first.wait_for(timeout=120_000)
            assert burst.locator("svg").count() >= 1  # the sensor's graph
            burst.scroll_into_view_if_needed()
            page.wait_for_timeout(500)  # let the iframe finish painting before the picture
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=False)

            # The DAG's own tab lists only the sensors of that DAG.
            page.goto(f"{base}/dags/burst_target/plugin/argo-events-dag", wait_until="domcontentloaded",
                      timeout=120_000)
            tab = page.frame_locator('iframe[title="Argo Events"]')
            tab.locator('section.sensor[data-sensor="burst"]').wait_for(timeout=120_000)
            assert tab.locator("section.sensor").count() == 1
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 10_000
