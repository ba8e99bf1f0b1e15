"""Shared fixtures: a real PostgreSQL, a fresh database per test, the real service over HTTP."""

import contextlib
import json
import os
import uuid
from dataclasses import dataclass, replace

import psycopg2
import pytest
import pytest_twisted
import treq
from hypothesis import settings
from psycopg2.extensions import make_dsn, parse_dsn
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.internet.threads import deferToThread
from twisted.web.client import HTTPConnectionPool

from attolytics.config import DatabaseLocation, parse_config
from attolytics.service import attolytics_service
from attolytics.storage.embedded import EmbeddedPostgres

SECRET = "s3cret-key"

# CI explores the same examples every run, so a landing never hangs on a lucky draw; runs on
# a developer's machine keep drawing new ones.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def server_url(tmp_path_factory):
    """A PostgreSQL server: ATTOLYTICS_TEST_DATABASE_URL when set, else an embedded one."""
    url = os.environ.get("ATTOLYTICS_TEST_DATABASE_URL")
    if url:
        yield url
        return
    server = EmbeddedPostgres(str(tmp_path_factory.mktemp("pg") / "data"))
    yield server.start()
    server.stop()


@contextlib.contextmanager
def fresh_database(server_url: str):
    """The URL of a new, empty database on the test server, dropped on leaving."""
    name = "attolytics_test_" + uuid.uuid4().hex[:12]
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        params = parse_dsn(server_url)
        params["dbname"] = name
        yield make_dsn(**params)
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


@pytest.fixture
def database_url(server_url):
    """A new, empty database for the test."""
    with fresh_database(server_url) as url:
        yield url


@pytest.fixture(scope="module")
def module_database(server_url):
    """A database shared by the tests of one module (for a twistd the module runs once)."""
    with fresh_database(server_url) as url:
        yield url


class OwnPostgres:
    """A PostgreSQL server of the test's own, which the test may stop and start."""

    def __init__(self, path):
        self.server = EmbeddedPostgres(str(path))
        self.url = self.server.start()

    def start(self):
        return deferToThread(self.server.start)

    def kill(self):
        """Pull the plug: an immediate stop, as a crash would."""
        return deferToThread(self.server.stop, "immediate")

    def count(self, sql_text):
        with psycopg2.connect(self.url) as connection, connection.cursor() as cur:
            cur.execute(sql_text)
            return cur.fetchall()


@pytest.fixture
def own_postgres(tmp_path):
    """A server the test may kill and restart, unlike the shared one."""
    postgres = OwnPostgres(tmp_path / "pg")
    yield postgres
    postgres.server.stop()


@pytest.fixture
def sql(database_url):
    """Run SQL synchronously on the test database: sql("select ...", params) -> rows or None."""
    connection = psycopg2.connect(database_url)
    connection.autocommit = True

    def run(statement, params=None):
        with connection.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else None

    yield run
    connection.close()


@dataclass
class Answer:
    """An HTTP answer: status code, headers (lower-case names) and body."""

    status: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


class Client:
    """Talks HTTP to a running service on 127.0.0.1."""

    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"
        self.pool = HTTPConnectionPool(reactor, persistent=False)

    async def request(self, method: str, path: str, body=None, headers=None) -> Answer:
        """Send a request; `body` may be bytes, or anything else to send as JSON."""
        headers = dict(headers or {})
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        response = await treq.request(
            method, self.base + path, data=body, headers=headers, pool=self.pool
        )
        content = await response.content()
        names = {
            name.decode().lower(): [v.decode() for v in values]
            for name, values in response.headers.getAllRawHeaders()
        }
        return Answer(response.code, {k: v[0] for k, v in names.items()}, content)

    async def post_events(self, app_id, event_type, events, secret=SECRET, headers=None) -> Answer:
        """POST events to the seed's route."""
        body = {"secret_key": secret, "events": events}
        return await self.request("POST", f"/apps/{app_id}/events/{event_type}", body, headers)


class Running:
    """A started AttolyticsService and a client for it; `fatal` collects start-up failures."""

    def __init__(self, service, client, fatal):
        self.service = service
        self.client = client
        self.fatal = fatal

    @property
    def port(self):
        return self.service.getServiceNamed("http").port

    @property
    def writer(self):
        return self.service.getServiceNamed("writer").writer


async def start_service(config_text: str, database_url: str, wait: bool = True) -> Running:
    """Start the real service on an ephemeral port with this configuration and database.

    With `wait`, return once start-up has ended (ready, or a fatal error recorded).
    """
    config = parse_config(config_text, "test.conf.yaml")
    config = replace(config, listen="tcp:0:interface=127.0.0.1", database=DatabaseLocation(url=database_url))
    fatal = []
    service = attolytics_service(config, reactor, on_fatal=fatal.append)
    service.startService()
    if wait:
        await service.getServiceNamed("database").starting
    running = Running(service, None, fatal)
    running.client = Client(running.port.getHost().port)
    return running


# The seed's table, declared.
SEED_TABLES = """
tables:
  game_events:
    columns:
      - {name: timestamp, type: i64, required: true}
      - {name: event_type, type: string, required: true}
      - {name: score, type: i64}
"""

SEED_CONFIG = SEED_TABLES + f"""
apps:
  - app_id: mygame
    app_secret_key: {SECRET}
    event_types:
      - event_type_id: game_events
"""


@pytest.fixture
def start(database_url):
    """start(config_text) starts the service against the test database; stopped after the test.

    start(config_text, url=..., wait=False) starts it against another server without waiting.
    """
    started = []

    async def run(config_text: str = SEED_CONFIG, url: str | None = None, wait: bool = True) -> Running:
        running = await start_service(config_text, url or database_url, wait)
        started.append(running)
        return running

    yield run
    for running in started:
        pytest_twisted.blockon(running.service.stopService())


@pytest.fixture
def seed(start):
    """The service running on the seed's configuration (table game_events, app mygame)."""
    running = pytest_twisted.blockon(ensureDeferred(start()))
    assert running.fatal == []
    return running
