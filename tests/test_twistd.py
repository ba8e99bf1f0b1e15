"""The installed twistd plugin as a user runs it: foreground, daemon, config mistakes, restarts."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg2
import pytest

from support.configs import GAME_CONFIG

REPO = Path(__file__).resolve().parent.parent
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
EXAMPLE_KEY = "change-me-to-a-long-random-string"
GAME_EVENTS = [
    {"timestamp": 1554130180, "event_type": "game_start"},
    {"timestamp": 1554130213, "event_type": "game_end", "score": 42},
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def twistd(cwd, *args, timeout=60):
    """Run twistd to completion in `cwd` (outside the repo, so only the installed plugin is seen)."""
    return subprocess.run(
        TWISTD + list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def post(port, path, body, timeout=5):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def wait_until_served(port, process=None, seconds=60):
    """Poll until the service answers something other than 503; return that answer."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"twistd exited early with {process.returncode}")
        try:
            status, body = post(port, "/apps/mygame/events/game_events",
                                {"secret_key": EXAMPLE_KEY, "events": []})
            if status != 503:
                return status, body
        except (ConnectionError, urllib.error.URLError, socket.timeout):
            pass
        time.sleep(0.2)
    raise AssertionError("the service did not become ready")


@pytest.fixture
def workdir(tmp_path):
    shutil.copy(REPO / "example.conf.yaml", tmp_path / "attolytics.conf.yaml")
    return tmp_path


def test_plugin_is_registered(tmp_path):
    result = twistd(tmp_path, "--help")
    assert "attolytics" in result.stdout


def test_example_config_runs_on_embedded_postgres_and_keeps_data(workdir):
    port = free_port()
    args = TWISTD + ["-n", "--pidfile=", "attolytics", "--listen", f"tcp:{port}:interface=127.0.0.1"]
    for run in range(2):
        process = subprocess.Popen(args, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert wait_until_served(port, process) == (200, {"inserted": 0})
            status, body = post(port, "/apps/mygame/events/game_events",
                                {"secret_key": EXAMPLE_KEY, "events": GAME_EVENTS})
            assert (status, body) == (200, {"inserted": 2})
        finally:
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=30)
        assert process.returncode == 0, output
        assert "psql 'postgresql://" in output
        assert "Traceback" not in output
        # The embedded server was stopped at shutdown.
        assert not (workdir / "attolytics-data" / "postmaster.pid").exists()
    # Both runs' events are there: the data survived the restart.
    server_output = subprocess.run(
        [sys.executable, "-c", "import pgserver, sys; s = pgserver.get_server(sys.argv[1], cleanup_mode='stop');"
         "print(s.psql('select count(*) from game_events;'))", str(workdir / "attolytics-data")],
        capture_output=True, text=True, timeout=60,
    ).stdout
    assert "4" in server_output.split()


def test_daemon_mode(workdir):
    port = free_port()
    result = twistd(workdir, "--pidfile=twistd.pid", "--logfile=twistd.log", "attolytics",
                    "--listen", f"tcp:{port}:interface=127.0.0.1")
    assert result.returncode == 0, result.stderr
    pid = int((workdir / "twistd.pid").read_text())
    try:
        assert wait_until_served(port) == (200, {"inserted": 0})
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while (workdir / "twistd.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    assert not (workdir / "twistd.pid").exists()
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
    result = twistd(tmp_path, "-n", "--pidfile=", "attolytics", "-c", "bad.yaml")
    assert result.returncode == 1
    assert f"bad.yaml: {words}" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_missing_config_file(tmp_path):
    result = twistd(tmp_path, "-n", "--pidfile=", "attolytics")
    assert result.returncode == 1
    assert "attolytics.conf.yaml: cannot read the configuration file" in result.stderr


def test_bad_listen_description(tmp_path):
    (tmp_path / "attolytics.conf.yaml").write_text(GAME_CONFIG)
    result = twistd(tmp_path, "-n", "--pidfile=", "attolytics", "--listen", "carrier-pigeon:9")
    assert result.returncode == 1
    assert "listen" in result.stderr and "carrier-pigeon" in result.stderr


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
        with psycopg2.connect(database_url) as connection, connection.cursor() as cur:
            cur.execute(setup)
    (tmp_path / "app.yaml").write_text(config)
    result = twistd(tmp_path, "-n", "--pidfile=", "attolytics", "-c", "app.yaml",
                    "--db-url", database_url, "--listen", f"tcp:{free_port()}:interface=127.0.0.1")
    assert result.returncode == 1
    assert f"app.yaml: {words}" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_db_url_option_overrides_the_config_and_listen_key_is_used(tmp_path, database_url):
    port = free_port()
    config = GAME_CONFIG.replace("s3cret-key", EXAMPLE_KEY)
    config += f"listen: tcp:{port}:interface=127.0.0.1\ndatabase: {{url: postgresql://nobody@/none}}\n"
    (tmp_path / "attolytics.conf.yaml").write_text(config)
    process = subprocess.Popen(
        TWISTD + ["-n", "--pidfile=", "attolytics", "--db-url", database_url],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        wait_until_served(port, process)
        assert post(port, "/apps/mygame/events/game_events",
                    {"secret_key": EXAMPLE_KEY, "events": GAME_EVENTS}) == (200, {"inserted": 2})
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    with psycopg2.connect(database_url) as connection, connection.cursor() as cur:
        cur.execute("select count(*) from game_events")
        assert cur.fetchone()[0] == 2
    assert not (tmp_path / "attolytics-data").exists()
