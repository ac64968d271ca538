"""The provider's metadata and its docs agree, as the Airflow docs site and ProvidersManager read them:
every module listed imports, every how-to page exists, every page names real classes, and the
changelog has the current version."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from airflow_argo_events import __version__
from airflow_argo_events.get_provider_info import get_provider_info

ROOT = Path(__file__).resolve().parents[3]
PAGES = ["index", "connections", "operators", "sensors", "triggers"]


def test_provider_info_has_the_fields_the_docs_site_reads():
    info = get_provider_info()
    for key in ("package-name", "name", "description", "state", "versions", "integrations", "operators", "sensors",
                "hooks", "triggers", "connection-types", "queues"):
        assert info.get(key), key
    assert info["versions"][0] == __version__
    (integration,) = info["integrations"]
    assert integration["external-doc-url"].startswith("https://")
    for guide in integration["how-to-guide"]:
        assert (ROOT / guide.lstrip("/")).is_file(), guide


@pytest.mark.parametrize("kind", ["operators", "sensors", "hooks", "triggers"])
def test_every_listed_module_imports(kind):
    for entry in get_provider_info()[kind]:
        for module in entry["python-modules"]:
            importlib.import_module(module)


def test_connection_types_and_queues_resolve():
    info = get_provider_info()
    for conn in info["connection-types"]:
        module, _, name = conn["hook-class-name"].rpartition(".")
        hook = getattr(importlib.import_module(module), name)
        assert hook.conn_type == conn["connection-type"]
    for path in info["queues"]:
        module, _, name = path.rpartition(".")
        assert getattr(importlib.import_module(module), name).scheme == "nats"


@pytest.mark.parametrize("page", PAGES)
def test_pages_name_real_classes_and_parameters(page):
    text = (ROOT / "docs" / "airflow" / f"{page}.md").read_text()
    from airflow_argo_events import operators, sensors, triggers

    public = {n for m in (operators, sensors, triggers) for n in getattr(m, "__all__", dir(m))}
    for name in set(re.findall(r"`((?:Event|Publish|Action|Sensor|EventSource)\w*(?:Operator|Sensor|Trigger))`", text)):
        assert name in public, f"{page}.md names {name}, which the package does not export"


def test_changelog_has_the_current_version():
    assert f"## {__version__}" in (ROOT / "docs" / "changelog.md").read_text()


def test_nav_lists_every_page():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in PAGES:
        assert f"airflow/{page}.md" in nav
    assert "changelog.md" in nav
