"""The embedded PostgreSQL over TCP (database.listen), for Metabase, Cube.js and Grafana, which
cannot reach its unix socket."""

import shutil

import psycopg2
import pytest

from attolytics.config import ConfigError, parse_config
from support.configs import EXAMPLE_KEY, GAME_EVENTS
from support.http import free_port, post
from support.twistd import REPO, listen_on, serve, wait_until_served

APP = "apps: [{app_id: a, app_secret_key: k}]\n"


@pytest.mark.unit
@pytest.mark.parametrize("written, listen", [
    ("true", ("127.0.0.1", 5432)),
    ("5433", ("127.0.0.1", 5433)),
    ("127.0.0.1", ("127.0.0.1", 5432)),
    ("0.0.0.0:6543", ("0.0.0.0", 6543)),
    ("'[::1]:6543'", ("::1", 6543)),
    ("false", None),
])
def test_listen_is_read(written, listen):
    config = parse_config(APP + f"database: {{embedded: data, listen: {written}}}\n", "c.yaml")
    assert config.database.embedded_listen == listen
    assert config.database.embedded_path.endswith("/data")


@pytest.mark.unit
@pytest.mark.parametrize("written, words", [
    ("tcp:5432", "c.yaml: database.listen: expected true, a port, an IP address, or ADDRESS:PORT such as "
                 "127.0.0.1:5432, got 'tcp:5432'"),
    ("70000", "c.yaml: database.listen: expected a port from 1 to 65535, got 70000"),
    ("db.example.com:5432", "c.yaml: database.listen: expected true"),
])
def test_listen_mistakes_name_the_file_and_key(written, words):
    with pytest.raises(ConfigError) as raised:
        parse_config(APP + f"database: {{embedded: data, listen: '{written}'}}\n", "c.yaml")
    assert str(raised.value).startswith(words)


@pytest.mark.unit
def test_listen_is_for_the_embedded_server_only():
    with pytest.raises(ConfigError, match="c.yaml: database.listen: listen is for the embedded PostgreSQL"):
        parse_config(APP + "database: {url: 'postgresql://db/x', listen: true}\n", "c.yaml")


@pytest.mark.twistd
def test_with_listen_a_client_reaches_the_embedded_server_over_tcp(tmp_path):
    pg_port, port = free_port(), free_port()
    config = (REPO / "example.conf.yaml").read_text()
    (tmp_path / "attolytics.conf.yaml").write_text(
        config + f"\ndatabase:\n  embedded: data\n  listen: 127.0.0.1:{pg_port}\n")
    with serve(tmp_path, "--listen", listen_on(port)) as run:
        assert wait_until_served(port, run) == (200, {"inserted": 0})
        assert post(port, "/apps/mygame/events/game_events",
                    {"secret_key": EXAMPLE_KEY, "events": GAME_EVENTS}) == (200, {"inserted": 2})
        # As Metabase or Grafana would: host, port, user postgres, database postgres.
        connection = psycopg2.connect(host="127.0.0.1", port=pg_port, user="postgres", dbname="postgres")
        try:
            with connection.cursor() as cur:
                cur.execute("select count(*) from game_events")
                assert cur.fetchone() == (2,)
        finally:
            connection.close()
        assert f"over TCP, postgresql://postgres@127.0.0.1:{pg_port}/postgres" in run.output
    assert run.returncode == 0, run.output
    assert "embedded PostgreSQL stopped" in run.output
    shutil.rmtree(tmp_path / "data")
