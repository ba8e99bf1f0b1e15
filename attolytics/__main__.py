"""`python -m attolytics check`: check a configuration against its database without serving."""

import argparse
import sys
import time

import psycopg2
from twisted.internet.defer import Deferred, succeed

from attolytics.config import ConfigError, load_config
from attolytics.storage.declarations import declared_types
from attolytics.storage.embedded import EmbeddedInUse, EmbeddedPostgres
from attolytics.storage.preparation import plan_tables


class _BlockingDatabase:
    """The query method the table checks need, over a plain blocking connection: a command-line
    check has no reactor to keep responsive."""

    def __init__(self, url: str):
        self.connection = psycopg2.connect(url)
        self.connection.autocommit = True

    def runQuery(self, sql, params=None):
        with self.connection.cursor() as cur:
            cur.execute(sql, params)
            return succeed(cur.fetchall())


class _WallClock:
    """Now, through the seconds() a reactor offers (check runs no reactor)."""

    @staticmethod
    def seconds() -> float:
        """The time in seconds since the epoch."""
        return time.time()


def check(config_path: str, db_url: str | None, out=sys.stdout) -> int:
    """Check and report; the exit status: 0 when start-up would succeed, else 1."""
    try:
        config = load_config(config_path)
        types = declared_types(config)
    except ConfigError as e:
        out.write(f"problem: {e}\n")
        return 1
    embedded = None
    url = db_url or config.database.url
    if url is None:
        embedded = EmbeddedPostgres(config.database.embedded_path)
        url = _embedded_url(embedded, out)
        if url is None:
            return 1
    try:
        try:
            db = _BlockingDatabase(url)
        except psycopg2.Error as e:
            out.write(f"problem: cannot connect to PostgreSQL: {str(e).strip()}\n")
            return 1
        # The walk start-up takes, with nothing applied; every query runs synchronously.
        outcome, failed = Deferred.fromCoroutine(plan_tables(db, config, types, _WallClock())), []
        outcome.addErrback(failed.append)
        plan = outcome.result
        db.connection.close()
    finally:
        if embedded is not None:
            embedded.stop()
    if failed:
        out.write(f"problem: cannot check the tables: {failed[0].getErrorMessage().strip()}\n")
        return 1
    for statement in plan.statements:
        out.write(f"would run: {statement.sql};\n")
    for sql in plan.drops:
        out.write(f"would run, once started: {sql};\n")
    for problem in plan.problems:
        for line in problem.lines():
            out.write(f"problem: {line}\n")
    if not plan.problems:
        count = len(config.table_names())
        out.write(f"ok: {config_path} fits the database ({count} table{'' if count == 1 else 's'})\n")
    return 1 if plan.problems else 0


def _embedded_url(embedded: EmbeddedPostgres, out) -> str | None:
    """The embedded server's URL: started here (with initdb on a new directory; stopped after the
    check), or the one another process serves, left as it is; None when neither can be had."""
    try:
        return embedded.start()
    except EmbeddedInUse:
        url = embedded.running_url()
        if url is None:
            out.write(f"problem: the embedded PostgreSQL in {embedded.path} is in use by another process "
                      "but not running yet; try again once it serves\n")
            return None
        out.write(f"note: another process serves the embedded PostgreSQL in {embedded.path}; "
                  "checking against its server, left running\n")
        return url
    except Exception as e:
        reason = str(e).strip() or repr(e)
        out.write(f"problem: cannot start the embedded PostgreSQL in {embedded.path}: {reason}\n")
        return None


def main(argv=None) -> int:
    """The command line: `check --config FILE [--db-url URL]`; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m attolytics")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("check", help="check the configuration against the database")
    command.add_argument("--config", "-c", default="attolytics.conf.yaml")
    command.add_argument("--db-url")
    args = parser.parse_args(argv)
    return check(args.config, args.db_url)


if __name__ == "__main__":
    sys.exit(main())
