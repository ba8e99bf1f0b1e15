"""The installed twistd plugin as a user runs it: foreground, daemon, config mistakes, restarts."""

import os
import signal
import subprocess
import sys

import pytest

from support.configs import EXAMPLE_KEY, GAME_CONFIG, GAME_EVENTS, SECRET
from support.http import free_port, post
from support.postgres import query
from support.twistd import STOP_TIMEOUT, listen_on, run_twistd, serve, wait_until_served
from support.waiting import wait_until

pytestmark = pytest.mark.twistd

EVENTS_PATH = "/apps/mygame/events/game_events"


def test_plugin_is_registered(tmp_path):
    result = run_twistd(tmp_path, "--help")
    assert "attolytics" in result.output


def test_example_config_runs_on_embedded_postgres_and_keeps_data(workdir):
    port = free_port()
    for _ in range(2):
        with serve(workdir, "--listen", listen_on(port)) as run:
            assert wait_until_served(port, run) == (200, {"inserted": 0})
            status, body = post(port, EVENTS_PATH, {"secret_key": EXAMPLE_KEY, "events": GAME_EVENTS})
            assert (status, body) == (200, {"inserted": 2})
        output = run.output
        assert run.returncode == 0, output
        assert "psql 'postgresql://" in output
        assert "Traceback" not in output
        # The embedded server was stopped at shutdown.
        assert not (workdir / "attolytics-data" / "postmaster.pid").exists()
    # Both runs' events are there: the data survived the restart. (pgserver, not twistd, in a
    # process of its own, reads the data directory the service left.)
    server_output = subprocess.run(
        [sys.executable, "-c", "import pgserver, sys; s = pgserver.get_server(sys.argv[1], cleanup_mode='stop');"
         "print(s.psql('select count(*) from game_events;'))", str(workdir / "attolytics-data")],
        capture_output=True, text=True, timeout=60,
    ).stdout
    assert "4" in server_output.split()


def test_daemon_mode(workdir):
    port = free_port()
    pid_file = workdir / "twistd.pid"
    result = run_twistd(workdir, "--pidfile=twistd.pid", "--logfile=twistd.log", "attolytics",
                        "--listen", listen_on(port))
    assert result.returncode == 0, result.errors
    pid = int(pid_file.read_text())
    try:
        assert wait_until_served(port) == (200, {"inserted": 0})
    finally:
        os.kill(pid, signal.SIGTERM)
        try:
            # The daemon removes its pid file as it exits.
            wait_until(lambda: not pid_file.exists(), STOP_TIMEOUT,
                       f"the daemon removes {pid_file.name} within {STOP_TIMEOUT} s of SIGTERM")
        except AssertionError:
            os.kill(pid, signal.SIGKILL)
            raise
    assert not pid_file.exists()
    assert "embedded PostgreSQL stopped" in (workdir / "twistd.log").read_text()


@pytest.mark.parametrize(
    "text, words",
    [
        ("apps: [\n  - app_id: a\n", "YAML syntax error at line"),
        ("apps:\n  - app_id: a\n", "apps[0].app_secret_key: missing"),
        ("apps:\n  - {app_id: a, app_secret_key: k}\n  - {app_id: a, app_secret_key: k}\n",
         "apps[1]: duplicate app id 'a'"),
        ("colour: blue\napps: []\n", "colour: unknown key"),
        ("apps:\n  - {app_id: a, app_secret_key: k}\ntables:\n  t:\n    columns: [{name: c, type: point}]\n",
         "tables.t.columns[0].type: unknown column type 'point'"),
    ],
)
def test_config_mistake_exits_1_with_a_short_message(tmp_path, text, words):
    (tmp_path / "bad.yaml").write_text(text)
    result = run_twistd(tmp_path, "-n", "--pidfile=", "attolytics", "-c", "bad.yaml")
    assert result.returncode == 1
    assert f"bad.yaml: {words}" in result.errors
    assert "Traceback" not in result.errors + result.output


def test_missing_config_file(tmp_path):
    result = run_twistd(tmp_path, "-n", "--pidfile=", "attolytics")
    assert result.returncode == 1
    assert "attolytics.conf.yaml: cannot read the configuration file" in result.errors


def test_bad_listen_description(tmp_path):
    (tmp_path / "attolytics.conf.yaml").write_text(GAME_CONFIG)
    result = run_twistd(tmp_path, "-n", "--pidfile=", "attolytics", "--listen", "carrier-pigeon:9")
    assert result.returncode == 1
    assert "listen" in result.errors and "carrier-pigeon" in result.errors


@pytest.mark.parametrize(
    "setup, config, words",
    [
        (None,
         "apps:\n  - {app_id: a, app_secret_key: k, event_types: [{event_type_id: clicks}]}\n",
         "table 'clicks' (event type 'clicks' of app 'a') does not exist"),
        ("create table shapes (id int, outline point)",
         "apps:\n  - {app_id: a, app_secret_key: k, event_types: [{event_type_id: s, table: shapes}]}\n",
         "table 'shapes', column 'outline': type point cannot be filled from JSON"),
    ],
)
def test_schema_mismatch_stops_start_up(tmp_path, database_url, setup, config, words):
    if setup:
        query(database_url, setup)
    (tmp_path / "app.yaml").write_text(config)
    result = run_twistd(tmp_path, "-n", "--pidfile=", "attolytics", "-c", "app.yaml",
                        "--db-url", database_url, "--listen", listen_on(free_port()))
    assert result.returncode == 1
    assert f"app.yaml: {words}" in result.output
    assert "Traceback" not in result.output + result.errors


def test_db_url_option_overrides_the_config_and_listen_key_is_used(tmp_path, database_url):
    port = free_port()
    config = GAME_CONFIG.replace(SECRET, EXAMPLE_KEY)
    config += f"listen: {listen_on(port)}\ndatabase: {{url: postgresql://nobody@/none}}\n"
    (tmp_path / "attolytics.conf.yaml").write_text(config)
    with serve(tmp_path, "--db-url", database_url) as run:
        wait_until_served(port, run)
        assert post(port, EVENTS_PATH, {"secret_key": EXAMPLE_KEY, "events": GAME_EVENTS}) == (
            200, {"inserted": 2})
    assert query(database_url, "select count(*) from game_events") == [(2,)]
    assert not (tmp_path / "attolytics-data").exists()
