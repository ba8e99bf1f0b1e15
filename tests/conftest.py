"""Fixtures: a real PostgreSQL, a fresh database per test, the real service over HTTP; and the
markers that let a developer run a part of the suite (`pytest -m unit`)."""

import os
import shutil

import psycopg2
import pytest
import pytest_twisted
from hypothesis import settings
from twisted.internet.defer import ensureDeferred

from attolytics.storage.embedded import EmbeddedPostgres
from support.configs import GAME_CONFIG
from support.examples import THOROUGH_DEFAULT
from support.postgres import OwnPostgres, fresh_database
from support.services import start_service
from support.twistd import REPO

# CI (and ATTOLYTICS_HYPOTHESIS=thorough) explores every example the tests ask for, the same ones
# every run, so a landing never hangs on a lucky draw; a developer's run draws a tenth as many
# (support.examples), new ones each time.
settings.register_profile("thorough", derandomize=True, deadline=None, max_examples=THOROUGH_DEFAULT)
settings.register_profile("quick", deadline=None, max_examples=THOROUGH_DEFAULT // 10)
settings.load_profile(os.environ.get("ATTOLYTICS_HYPOTHESIS") or ("thorough" if os.environ.get("CI") else "quick"))

# Each test module says what it needs with one of these (pytest.ini describes them).
KINDS = ("unit", "service", "twistd", "browser")


def pytest_configure(config):
    """schemathesis' plugin (pytest.ini keeps it from loading by itself) for every run but the
    unit tier's, which has no test of it and starts a second sooner without it."""
    if config.option.markexpr.strip() != "unit":
        config.pluginmanager.import_plugin("schemathesis.pytest.plugin")


def pytest_collection_modifyitems(config, items):
    """Every test has exactly one kind, so that `-m` selects each test exactly once."""
    for item in items:
        kinds = [kind for kind in KINDS if item.get_closest_marker(kind)]
        if len(kinds) != 1:
            raise pytest.UsageError(f"{item.nodeid} must be marked with exactly one of {KINDS}, not {kinds}")


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


@pytest.fixture
def workdir(tmp_path):
    """A folder holding example.conf.yaml as attolytics.conf.yaml, the file twistd reads by default."""
    shutil.copy(REPO / "example.conf.yaml", tmp_path / "attolytics.conf.yaml")
    return tmp_path


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


@pytest.fixture
def start(database_url):
    """start(config_text) starts the service against the test database; stopped after the test.

    start(config_text, url=..., wait=False) starts it against another server without waiting;
    start(config_text, path=...) reads the configuration from that file, as a reload does;
    start(config_text, clock=...) has partitions follow that clock's time.
    """
    started = []

    async def run(config_text: str = GAME_CONFIG, url: str | None = None, wait: bool = True, path=None,
                  clock=None):
        running = await start_service(config_text, url or database_url, wait, path, clock)
        started.append(running)
        return running

    yield run
    for running in started:
        pytest_twisted.blockon(running.stop())


@pytest.fixture
def game(start):
    """The service running on the game_events configuration (table game_events, app mygame)."""
    running = pytest_twisted.blockon(ensureDeferred(start()))
    assert running.fatal == []
    return running


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium driven by selenium, one per test module (missing: fails under CI,
    skipped elsewhere)."""
    from support.browser import chromium  # selenium only for the tests that drive a browser

    with chromium() as driver:
        yield driver


@pytest.fixture
def pages():
    """A web server of another origin than the service's, for the pages a browser loads."""
    from support.browser import Pages

    served = Pages()
    yield served
    pytest_twisted.blockon(served.stop())


@pytest.fixture
def logged():
    """The messages Attolytics logs during the test (in this process)."""
    from twisted.logger import formatEvent, globalLogPublisher

    messages = []

    def observe(event):
        if event.get("log_namespace", "").startswith("attolytics"):
            messages.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    yield messages
    globalLogPublisher.removeObserver(observe)
