"""The group-commit writer against real PostgreSQL; time driven by task.Clock where it matters."""

import time

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import DeferredList, ensureDeferred
from twisted.internet.task import Clock

from attolytics.config import WriterSettings, parse_config
from attolytics.outcomes import DatabaseUnavailable, RowsRefused, Stored, WriterBusy
from attolytics.storage.declarations import declared_types
from attolytics.storage.pool import ConnectionPool
from attolytics.storage.preparation import prepare_tables
from attolytics.storage.writer import Writer
from support.configs import GAME_CONFIG
from support.waiting import wait_for

pytestmark = pytest.mark.service

CONFIG = """
tables:
  hits:
    columns:
      - {name: n, type: i64, required: true}
apps:
  - {app_id: a, app_secret_key: k, event_types: [{event_type_id: hits}]}
"""


@pytest.fixture
def db_and_table(database_url, sql):
    """A one-connection pool and the `hits` table (n bigint not null, n >= 0)."""
    db = ConnectionPool(database_url, reactor, size=1)
    pytest_twisted.blockon(ensureDeferred(db.connect()))
    config = parse_config(CONFIG, "w.yaml")
    tables = pytest_twisted.blockon(ensureDeferred(prepare_tables(db, config, declared_types(config), reactor)))
    sql("alter table hits add constraint positive check (n >= 0)")
    yield db, tables["hits"]
    db.close()


def request(table, *numbers):
    return [(table, [table.row({"n": n}, i) for i, n in enumerate(numbers)])]


def transactions(sql):
    """How many transactions wrote the rows of `hits` (rows of one transaction share xmin)."""
    return sql("select count(distinct xmin::text) from hits")[0][0]


@pytest_twisted.ensureDeferred
async def test_requests_arriving_during_a_flush_share_the_next_transaction(db_and_table, sql):
    db, hits = db_and_table
    writer = Writer(db, reactor)
    first = writer.insert(request(hits, 1))  # takes the only connection at once
    rest = [writer.insert(request(hits, n, n + 100)) for n in range(2, 12)]
    assert writer.queued_rows == 21
    results = await DeferredList([first] + rest, fireOnOneErrback=True)
    assert [stored for _, stored in results] == [Stored(1)] + [Stored(2)] * 10
    assert sql("select count(*) from hits")[0][0] == 21
    assert transactions(sql) == 2
    assert writer.queued_rows == 0


@pytest_twisted.ensureDeferred
async def test_answer_comes_after_the_commit(db_and_table, sql):
    db, hits = db_and_table
    writer = Writer(db, reactor)
    seen_at_answer = []
    d = writer.insert(request(hits, 7, 8))
    d.addCallback(lambda count: seen_at_answer.append(sql("select count(*) from hits")[0][0]))
    await d
    # Another connection already saw both rows when the request was answered: committed.
    assert seen_at_answer == [2]


@pytest_twisted.ensureDeferred
async def test_a_large_request_is_never_split_across_transactions(db_and_table, sql):
    db, hits = db_and_table
    writer = Writer(db, reactor, WriterSettings(max_batch_rows=100))
    first = writer.insert(request(hits, *range(250)))
    second = writer.insert(request(hits, *range(30)))
    assert await first == Stored(250) and await second == Stored(30)
    assert sql("select count(distinct xmin::text) from hits where n >= 30")[0][0] == 1
    assert transactions(sql) == 2


@pytest_twisted.ensureDeferred
async def test_a_request_refused_by_postgres_fails_alone(db_and_table, sql):
    db, hits = db_and_table
    writer = Writer(db, reactor)
    blocker = writer.insert(request(hits, 0))
    good_before = writer.insert(request(hits, 1, 2))
    bad = writer.insert(request(hits, 3, -1))  # violates the check constraint
    good_after = writer.insert(request(hits, 4))
    await blocker
    assert await good_before == Stored(2)
    assert await good_after == Stored(1)
    with pytest.raises(RowsRefused) as refused:
        await bad
    assert "positive" in str(refused.value)
    assert sorted(n for (n,) in sql("select n from hits")) == [0, 1, 2, 4]


@pytest_twisted.ensureDeferred
async def test_unique_violation_is_reported_as_such(db_and_table, sql):
    db, hits = db_and_table
    sql("create unique index on hits (n)")
    writer = Writer(db, reactor)
    await writer.insert(request(hits, 1))
    with pytest.raises(RowsRefused) as refused:
        await writer.insert(request(hits, 2, 1))
    assert refused.value.unique_violation
    assert sql("select n from hits") == [(1,)]


@pytest_twisted.ensureDeferred
async def test_the_queue_cap_refuses_new_rows_and_frees_up(db_and_table, sql):
    db, hits = db_and_table
    writer = Writer(db, reactor, WriterSettings(max_queued_rows=10))
    accepted = [writer.insert(request(hits, *range(5))), writer.insert(request(hits, *range(5)))]
    with pytest.raises(WriterBusy):
        writer.insert(request(hits, 99))
    await DeferredList(accepted, fireOnOneErrback=True)
    assert writer.queued_rows == 0
    assert await writer.insert(request(hits, 99)) == Stored(1)
    assert sql("select count(*) from hits")[0][0] == 11


@pytest_twisted.ensureDeferred
async def test_flush_delay_gathers_rows_until_the_clock_says(db_and_table, sql):
    db, hits = db_and_table
    clock = Clock()
    writer = Writer(db, clock, WriterSettings(max_delay_ms=50))
    answers = [writer.insert(request(hits, n)) for n in range(3)]
    # Nothing was sent: the only connection is idle, and one flush waits for the clock.
    assert not any(d.called for d in answers)
    assert db.connected == 1 and not db._busy
    assert [call.getTime() for call in clock.getDelayedCalls()] == [0.05]
    assert sql("select count(*) from hits")[0][0] == 0
    clock.advance(0.05)
    await DeferredList(answers, fireOnOneErrback=True)
    assert transactions(sql) == 1


@pytest_twisted.ensureDeferred
async def test_a_full_batch_does_not_wait_for_the_delay(db_and_table, sql):
    db, hits = db_and_table
    clock = Clock()
    writer = Writer(db, clock, WriterSettings(max_delay_ms=10_000, max_batch_rows=4))
    small = writer.insert(request(hits, 1))
    big = writer.insert(request(hits, 2, 3, 4))
    assert await small == Stored(1) and await big == Stored(3)  # no clock.advance needed


@pytest_twisted.ensureDeferred
async def test_drain_waits_for_queued_rows(db_and_table, sql):
    db, hits = db_and_table
    writer = Writer(db, reactor)
    answers = [writer.insert(request(hits, n)) for n in range(5)]
    await writer.drain()
    assert all(d.called for d in answers)
    assert sql("select count(*) from hits")[0][0] == 5


@pytest_twisted.ensureDeferred
async def test_over_http_a_full_queue_is_503_with_retry_after(start, sql):
    running = await start(GAME_CONFIG + "writer: {connections: 1, max_queued_rows: 3}\n")
    writer = running.writer
    event = {"timestamp": 1, "event_type": "x"}
    sql("begin")
    sql("lock table game_events in access exclusive mode")  # every flush now waits
    first = ensureDeferred(running.client.post_events("mygame", "game_events", [event, event]))
    await wait_for(lambda: writer.queued_rows >= 2, what="the first request queued")
    second = ensureDeferred(running.client.post_events("mygame", "game_events", [event]))
    await wait_for(lambda: writer.queued_rows >= 3, what="the second request queued")
    refused = await running.client.post_events("mygame", "game_events", [event])
    assert refused.status == 503
    assert int(refused.headers["retry-after"]) > 0
    assert "retry" in refused.json()["error"]
    sql("commit")
    assert (await first).status == 200 and (await second).status == 200
    assert sql("select count(*) from game_events")[0][0] == 3


@pytest_twisted.ensureDeferred
async def test_a_trigger_refusing_one_request_fails_only_that_request(db_and_table, sql):
    db, hits = db_and_table
    sql("create function no_13() returns trigger language plpgsql as $$ begin"
        " if new.n = 13 then raise exception 'thirteen is unlucky'; end if; return new; end $$")
    sql("create trigger no_13 before insert on hits for each row execute function no_13()")
    writer = Writer(db, reactor)
    blocker = writer.insert(request(hits, 0))
    good = writer.insert(request(hits, 1))
    bad = writer.insert(request(hits, 2, 13))
    await blocker
    assert await good == Stored(1)
    with pytest.raises(RowsRefused) as refused:
        await bad
    assert "thirteen is unlucky" in str(refused.value)
    assert sorted(n for (n,) in sql("select n from hits")) == [0, 1]


@pytest_twisted.ensureDeferred
async def test_a_flush_without_answer_times_out_and_does_not_pile_up(db_and_table, sql):
    db, hits = db_and_table
    writer = Writer(db, reactor, WriterSettings(flush_timeout=0.5))
    sql("begin")
    sql("lock table hits in access exclusive mode")
    began = time.monotonic()
    answers = [writer.insert(request(hits, n)) for n in range(5)]
    results = await DeferredList(answers, consumeErrors=True)
    assert time.monotonic() - began < 3
    assert all(not ok and f.check(DatabaseUnavailable) for ok, f in results)
    # The first flush reached PostgreSQL, which may commit it once the lock is gone: its answer
    # says so. The others never left: its connection was closed, the only one.
    messages = [f.getErrorMessage() for _, f in results]
    assert "the events may or may not be stored" in messages[0]
    assert messages[1:] == ["no connection to the database"] * 4
    assert db._waiters == [] and writer.queued_rows == 0
    sql("commit")


@pytest_twisted.ensureDeferred
async def test_every_value_arrives_as_sent_whichever_way_the_rows_travel(start, sql):
    """Rows travel as jsonb, read once, but a table with a float column as json: jsonb's numbers
    have no negative zero."""
    running = await start("""
tables:
  readings:
    columns:
      - {name: f, type: double precision}
      - {name: r, type: real}
  notes:
    columns:
      - {name: n, type: "numeric(6,3)"}
      - {name: t, type: text}
      - {name: i, type: i64}
apps:
  - app_id: a
    app_secret_key: k
    event_types: [{event_type_id: readings}, {event_type_id: notes}]
""")
    answer = await running.client.request("POST", "/apps/a/events", {"secret_key": "k", "events": [
        {"_t": "readings", "f": -0.0, "r": -0.0}, {"_t": "readings", "f": 5e-324, "r": 1e-45},
        {"_t": "notes", "n": 1.500, "t": "é \\u00e9 \\\\ \"", "i": -9223372036854775808}]})
    assert answer.status == 200, answer.body
    assert sql("SELECT f::text, r::text FROM readings ORDER BY f") == [("-0", "-0"), ("5e-324", "1e-45")]
    assert sql("SELECT n::text, t, i FROM notes") == [("1.500", "é \\u00e9 \\\\ \"", -9223372036854775808)]
