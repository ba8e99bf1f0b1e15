"""Services sharing a database (the workers of one parent) plan the same schema changes at a
reload; each change is made, and logged, by one of them only."""

import psycopg2
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred, gatherResults
from twisted.logger import globalLogPublisher

from attolytics.config import parse_config
from attolytics.storage.declarations import declared_types
from attolytics.storage.pool import ConnectionPool
from attolytics.storage.preparation import SCHEMA_LOCK, prepare_tables
from support.configs import SECRET
from support.waiting import wait_for

pytestmark = pytest.mark.service

CONFIG = f"""
tables:
  scores:
    columns:
      - {{name: n, type: i64}}
      - {{name: level, type: i32}}
  fresh:
    columns:
      - {{name: player, type: text, indexed: true}}
  analytics.visits:
    partition: {{column: ts, interval: day, ahead: 1, keep: 2}}
    columns:
      - {{name: ts, type: timestamptz, required: true}}
apps:
  - app_id: game
    app_secret_key: {SECRET}
    event_types: [{{event_type_id: scores}}, {{event_type_id: fresh}}, {{event_type_id: visits, table: analytics.visits}}]
"""
SERVICES = 3
# What the services make besides partitions, each logged once.
MADE = ["added column level to scores", "created table fresh", "created index fresh_player_idx on fresh",
        "created table analytics.visits"]
WAITING = ("select count(*) from pg_locks where locktype = 'advisory' and not granted "
           "and database = (select oid from pg_database where datname = current_database())")


def schema_messages(events: list[dict]) -> list[str]:
    """The schema changes logged (without a partition's SQL)."""
    return sorted(event["log_format"].format(**event).split(":")[0] for event in events
                  if event.get("log_namespace") == "attolytics.storage.preparation"
                  and not event["log_format"].startswith("table {table}"))


@pytest_twisted.ensureDeferred
async def test_each_change_is_logged_by_the_one_service_that_made_it(database_url, sql):
    sql("create table scores (n bigint)")
    sql("create schema analytics")
    config = parse_config(CONFIG, "app.yaml")
    pools = [ConnectionPool(database_url, reactor, size=1) for _ in range(SERVICES)]
    events = []
    holder = psycopg2.connect(database_url)
    globalLogPublisher.addObserver(events.append)
    try:
        for pool in pools:
            await pool.connect()
        # The lock held here until every service has planned and waits for its turn: each plans
        # every change, as workers reloading together do.
        with holder.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        preparing = gatherResults([ensureDeferred(prepare_tables(pool, config, declared_types(config), reactor))
                                   for pool in pools])
        await wait_for(lambda: sql(WAITING) == [(SERVICES,)], what="every service waiting for the lock")
        holder.commit()
        prepared = await preparing
    finally:
        globalLogPublisher.removeObserver(events.append)
        holder.close()
        for pool in pools:
            pool.close()
    assert [set(tables) for tables in prepared] == [{"scores", "fresh", "analytics.visits"}] * SERVICES
    messages = schema_messages(events)
    assert len(messages) == len(set(messages)), messages
    partitions = [message for message in messages if message.startswith("created partition")]
    assert sorted(set(messages) - set(partitions)) == sorted(MADE)
    made = sql("select count(*) from pg_inherits where inhparent = 'analytics.visits'::regclass")[0][0]
    assert len(partitions) == made > 0
