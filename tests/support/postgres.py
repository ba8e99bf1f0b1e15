"""PostgreSQL for the tests: fresh databases on the test server, and servers a test may kill."""

import contextlib
import uuid

import psycopg2
from psycopg2.extensions import make_dsn, parse_dsn
from twisted.internet.threads import deferToThread

from attolytics.storage.embedded import EmbeddedPostgres


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


def query(url: str, statement: str, params=None):
    """Run one statement on its own connection: its rows, or None when it returns none."""
    connection = psycopg2.connect(url)
    connection.autocommit = True
    try:
        with connection.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else None
    finally:
        connection.close()


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
        return query(self.url, sql_text)
