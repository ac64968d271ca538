"""Event times at the edges of the calendar (years 1 and 9999) in a time filter (issue 11, finding 3)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import airflow_argo_events.core.events as ev_module
from airflow_argo_events.core.events import Event, EventDecodeError
from airflow_argo_events.core.sensor.filters import DependencyFilter
from airflow_argo_events.core.spec.sensor import EventDependencyFilter

UTC = timezone.utc


def _check(at: datetime, tz: str, start: str = "01:00:00", stop: str = "23:00:00") -> tuple[bool, str]:
    spec = EventDependencyFilter.model_validate({"time": {"start": start, "stop": stop, "timezone": tz}})
    verdict = DependencyFilter(spec).check(Event(id="1", source="es", subject="e", type="t", time=at, data={}))
    return verdict.passed, verdict.reason


# Expected values are Go's (Argo's filterTime): time.Time has no year-9999 bound, so the
# event is converted to the zone and its local time of day compared with the window.
@pytest.mark.parametrize("at, tz, passed", [
    # 10000-01-01 13:00 in Kiritimati (+14): inside [01:00, 23:00)
    (datetime(9999, 12, 31, 23, tzinfo=UTC), "Pacific/Kiritimati", True),
    # 10000-01-01 00:30 local: outside
    (datetime(9999, 12, 31, 10, 30, tzinfo=UTC), "Pacific/Kiritimati", False),
    # year 0 in Honolulu (LMT -10:31:26): 13:28:34 local, inside
    (datetime(1, 1, 1, 0, tzinfo=UTC), "Pacific/Honolulu", True),
    # an offset that puts the instant itself before year 1 in UTC
    (datetime(1, 1, 1, 0, tzinfo=timezone(timedelta(hours=14))), "Pacific/Kiritimati", False),
    (datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-14))), "Etc/GMT+12", True),
], ids=["9999-kiritimati-in", "9999-kiritimati-out", "0001-honolulu", "0001+14", "9999-14"])
def test_time_filter_at_calendar_edges_gives_a_verdict(at, tz, passed):
    ok, why = _check(at, tz)
    assert ok is passed, why


def test_sensor_test_cli_survives_year_9999(tmp_path):
    sensor = tmp_path / "s.yaml"
    sensor.write_text(
        "kind: Sensor\nmetadata: {name: s}\nspec:\n  dependencies:\n"
        "    - name: a\n      eventSourceName: es\n      eventName: a\n"
        "      filters: {time: {start: '01:00:00', stop: '02:00:00', timezone: Pacific/Kiritimati}}\n"
        "  triggers:\n    - template: {name: t, log: {}}\n")
    events = tmp_path / "e.jsonl"
    base = {"specversion": "1.0", "source": "es", "subject": "a", "type": "webhook", "data": {}}
    events.write_text("\n".join(json.dumps({**base, "id": str(i), "time": t}) for i, t in enumerate(
        ["9999-12-31T23:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T11:30:00Z"])) + "\n")
    out = subprocess.run([sys.executable, "-m", "airflow_argo_events.cli.main", "sensor", "test", str(sensor),
                          "--events", str(events), "--explain"], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 0
    # only 9999-12-31T11:30Z = 10000-01-01 01:30 Kiritimati lies in [01:00, 02:00)
    assert [json.loads(line)["events"]["a"] for line in out.stdout.splitlines()] == ["2"]


def test_conditions_reset_near_year_9999_stops_resetting_instead_of_raising():
    from airflow_argo_events.core.events import new_event
    from airflow_argo_events.core.sensor.engine import Engine
    from airflow_argo_events.core.spec.sensor import Sensor

    sensor = Sensor.model_validate({"metadata": {"name": "s"}, "spec": {
        "dependencies": [{"name": "a", "eventSourceName": "es", "eventName": "a"},
                         {"name": "b", "eventSourceName": "es", "eventName": "b"}],
        "triggers": [{"template": {"name": "t", "conditions": "a && b", "log": {},
                                   "conditionsReset": [{"byTime": {"cron": "0 0 * * *",
                                                                   "timezone": "Pacific/Kiritimati"}}]}}]}})
    eng = Engine(sensor)
    late = datetime(9999, 12, 31, 9, tzinfo=UTC)
    assert eng.process(new_event(source="es", subject="a", type="t", id="a1", time=late)) == []
    later = datetime(9999, 12, 31, 23, 59, tzinfo=UTC)
    (firing,) = eng.process(new_event(source="es", subject="b", type="t", id="b1", time=later))
    assert sorted(e.id for e in firing.events.values()) == ["a1", "b1"]


def test_event_time_past_what_utc_holds_is_not_a_cloudevent():
    from airflow_argo_events.core.events import decode
    from airflow_argo_events.core.exceptions import EventDecodeError

    raw = (b'{"specversion":"1.0","id":"x","source":"es","subject":"e","type":"t",'
           b'"time":"9999-12-31T23:59:00-14:00","data":{}}')
    with pytest.raises(EventDecodeError, match="invalid CloudEvent time"):
        decode(raw)


_TIMES = st.one_of(
    st.text(st.sampled_from(list("0123456789-:TtZz.+ W")), max_size=40),
    st.tuples(st.datetimes(), st.integers(0, 12), st.sampled_from(["Z", "z", "+02:00", "-05:30", "+14:00", ""])).map(
        lambda t: t[0].strftime("%Y-%m-%dT%H:%M:%S") + ("." + "7" * t[1] if t[1] else "") + t[2]),
)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the direct path is Python 3.11+'s")
@settings(max_examples=3000, deadline=None)
@given(value=_TIMES)
def test_event_time_read_directly_as_after_normalising(value):
    """3.11+ reads a CloudEvent time with fromisoformat as it is; 3.10 normalises it first
    (nanoseconds, "Z"). Both must give the same time, or refuse the same strings."""
    def parse(direct: bool) -> object:
        old = ev_module._ISO_ANY
        ev_module._ISO_ANY = direct
        try:
            return ev_module._parse_time(value)
        except EventDecodeError:
            return "refused"
        finally:
            ev_module._ISO_ANY = old

    assert parse(True) == parse(False)
