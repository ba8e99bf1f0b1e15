"""--log-format json: one JSON object per line, with an access line per request."""

import json

import pytest

from support.configs import EXAMPLE_KEY, GAME_CONFIG, GAME_EVENTS, SECRET
from support.http import free_port, post
from support.twistd import listen_on, run_twistd, serve, wait_until_served

pytestmark = pytest.mark.twistd


def test_json_log_lines_with_an_access_line_per_request(tmp_path, database_url):
    (tmp_path / "attolytics.conf.yaml").write_text(GAME_CONFIG.replace(SECRET, EXAMPLE_KEY))
    port = free_port()
    with serve(tmp_path, "--log-format", "json", "--db-url", database_url,
               "--listen", listen_on(port)) as run:
        wait_until_served(port, run)
        assert post(port, "/apps/mygame/events/game_events",
                    {"secret_key": EXAMPLE_KEY, "events": GAME_EVENTS}) == (200, {"inserted": 2})
    assert run.returncode == 0
    records = [json.loads(line) for line in run.output.splitlines() if line.strip()]
    assert all({"time", "level", "namespace", "message"} <= r.keys() for r in records)
    access = [r for r in records if r.get("namespace") == "attolytics.site" and r.get("events") == 2]
    assert len(access) == 1
    line = access[0]
    assert line["app"] == "mygame"
    assert line["route"] == "/apps/{app}/events/{event_type}"
    assert line["status"] == 200 and line["bytes"] == len('{"inserted": 2}')
    assert line["duration"] >= 0 and line["level"] == "info"


def test_unknown_log_format_is_a_usage_error(tmp_path):
    result = run_twistd(tmp_path, "-n", "--pidfile=", "attolytics", "--log-format", "xml")
    assert result.returncode != 0
    assert "--log-format is text or json" in result.output + result.errors
