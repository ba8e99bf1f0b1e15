"""Tables partitioned by time, against a real PostgreSQL and the real service, with the time moved
by the test: partitions made ahead at start-up, the hourly upkeep that makes new ones and drops
old ones, the partition made on the spot, the 400 outside the range kept, a unique id on a
partitioned table, and services sharing a database taking turns."""

import io
import json
from datetime import datetime, timezone

import psycopg2
import pytest
import pytest_twisted
from twisted.internet.defer import ensureDeferred, gatherResults
from twisted.internet.task import Clock

from attolytics.__main__ import check
from attolytics.storage.preparation import SCHEMA_LOCK
from support.configs import SECRET
from support.metrics import scrape, value

pytestmark = pytest.mark.service

DAY = 86400
HOUR = 3600
NOW = datetime(2026, 11, 30, 12, tzinfo=timezone.utc)


def config(partition: str = "{column: ts, interval: day, ahead: 2, keep: 3}", *extra: str) -> str:
    columns = "".join(f"      - {column}\n" for column in (
        "{name: ts, type: timestamptz, required: true}", "{name: name, type: string}", *extra))
    return (f"tables:\n  events:\n    partition: {partition}\n    columns:\n{columns}"
            f"apps:\n  - app_id: game\n    app_secret_key: {SECRET}\n    event_types: [{{event_type_id: events}}]\n")


def clock_at(moment: datetime = NOW) -> Clock:
    clock = Clock()
    clock.advance(moment.timestamp())
    return clock


def partitions(sql, table: str = "events") -> list[str]:
    return [name for (name,) in sql(
        "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid "
        "where i.inhparent = %s::regclass order by c.relname", (table,))]


async def upkeep(running):
    """Wait for the upkeep under way (start-up's, or the one the clock's move started)."""
    await running.service.getServiceNamed("maintenance").run()


async def started(start, text: str, clock: Clock):
    running = await start(text, clock=clock)
    assert running.fatal == []
    await upkeep(running)
    return running


def run_check(tmp_path, text: str, database_url: str) -> tuple[int, list[str]]:
    (tmp_path / "app.yaml").write_text(text)
    out = io.StringIO()
    return check(str(tmp_path / "app.yaml"), database_url, out), out.getvalue().splitlines()


@pytest_twisted.ensureDeferred
async def test_start_up_makes_the_table_and_the_partitions_ahead(start, sql, tmp_path, database_url):
    status, lines = run_check(tmp_path, config(), database_url)
    assert status == 0
    assert lines[0].startswith('would run: CREATE TABLE IF NOT EXISTS "events" (') and lines[0].endswith(
        ') PARTITION BY RANGE ("ts");')
    # check runs on the wall clock: whatever today is, three days from it.
    assert [line.split(" PARTITION OF")[0][len("would run: CREATE TABLE IF NOT EXISTS "):]
            for line in lines[1:4]] == [f'"events_p{day}"' for day in _days_from_today(3)]
    running = await started(start, config(), clock_at())
    assert partitions(sql) == ["events_p20261130", "events_p20261201", "events_p20261202"]
    assert sql("select pg_get_expr(c.relpartbound, c.oid) from pg_class c where relname = 'events_p20261201'") == [
        ("FOR VALUES FROM ('2026-12-01 00:00:00+00') TO ('2026-12-02 00:00:00+00')",)]
    answer = await running.client.post_events("game", "events", [
        {"ts": "2026-11-30T13:00:00Z", "name": "today"}, {"ts": "2026-12-02T23:59:59Z", "name": "ahead"}])
    assert answer.status == 200
    assert sql("select tableoid::regclass::text, name from events order by ts") == [
        ("events_p20261130", "today"), ("events_p20261202", "ahead")]
    metrics = await scrape(running.client)
    assert value(metrics, "attolytics_partitions", table="events") == 3
    assert ("attolytics_partitions_dropped_total", frozenset({("table", "events")})) in metrics
    assert value(metrics, "attolytics_partitions_missing", table="events") == 0
    document = (await running.client.request("GET", "/openapi.json")).json()
    ts = document["components"]["schemas"]["game.events"]["properties"]["ts"]
    assert ts["description"].endswith("Picks the event's partition: the time must fall within the 3 days kept "
                                      "(UTC, the current one included) or the 2 days after it; any other is "
                                      "refused with 400.")


def test_check_says_which_partitions_the_upkeep_would_drop(sql, tmp_path, database_url):
    sql("create table events (ts timestamptz not null, name varchar) partition by range (ts)")
    sql("create table events_p20000101 partition of events for values from ('2000-01-01') to ('2000-01-02')")
    sql("create table events_archive partition of events for values from ('2000-01-02') to ('2000-01-03')")
    status, lines = run_check(tmp_path, config(), database_url)
    assert status == 0
    assert 'would run, once started: DROP TABLE IF EXISTS "public"."events_p20000101";' in lines
    assert not [line for line in lines if "events_archive" in line]
    assert len(partitions(sql)) == 2


def _days_from_today(count: int) -> list[str]:
    today = datetime.now(timezone.utc).timestamp()
    return [datetime.fromtimestamp(today + n * DAY, timezone.utc).strftime("%Y%m%d") for n in range(count)]


@pytest_twisted.ensureDeferred
async def test_as_time_passes_the_upkeep_makes_new_partitions_and_drops_old_ones(start, sql, logged):
    clock = clock_at()
    running = await started(start, config(), clock)
    answer = await running.client.post_events("game", "events", [
        {"ts": "2026-11-30T13:00:00Z", "name": "old"}, {"ts": "2026-12-02T08:00:00Z", "name": "kept"}])
    assert answer.status == 200
    for _ in range(24 * 3):  # three days, hour by hour: the upkeep runs once an hour
        clock.advance(HOUR)
        await upkeep(running)
    # Now 2026-12-03 12:00: keep 3 is the 1st to the 3rd, ahead 2 is up to the 5th.
    assert partitions(sql) == ["events_p20261201", "events_p20261202", "events_p20261203",
                               "events_p20261204", "events_p20261205"]
    assert sql("select name from events") == [("kept",)]
    metrics = await scrape(running.client)
    assert value(metrics, "attolytics_partitions", table="events") == 5
    assert value(metrics, "attolytics_partitions_dropped_total", table="events") == 1
    assert 'dropped partition events_p20261130 of events: DROP TABLE IF EXISTS "public"."events_p20261130"' in logged
    assert any(line.startswith("created partition events_p20261205 of events: CREATE TABLE") for line in logged)


@pytest_twisted.ensureDeferred
async def test_an_event_in_a_kept_interval_without_a_partition_gets_one_on_the_spot(start, sql):
    running = await started(start, config("{column: ts, interval: week, ahead: 0, keep: 8}"), clock_at())
    assert partitions(sql) == ["events_p20261130"]
    answer = await running.client.post_events("game", "events", [
        {"ts": "2026-11-30T13:00:00Z", "name": "now"}, {"ts": "2026-10-20T08:00:00+02:00", "name": "late"},
        {"ts": 1793145600, "name": "later"}])
    assert (answer.status, answer.json()) == (200, {"inserted": 3})
    assert partitions(sql) == ["events_p20261019", "events_p20261026", "events_p20261130"]
    assert sql("select tableoid::regclass::text, name from events order by ts") == [
        ("events_p20261019", "late"), ("events_p20261026", "later"), ("events_p20261130", "now")]


@pytest_twisted.ensureDeferred
async def test_a_partition_that_cannot_be_made_yet_gets_503_and_nothing_is_stored(start, sql, database_url):
    running = await started(start, config("{column: ts, interval: day, ahead: 0, keep: 30}"), clock_at())
    running.service.getServiceNamed("maintenance").lock_timeout = "50ms"
    reader = psycopg2.connect(database_url)  # a dashboard's long query: making a partition waits for it
    try:
        with reader.cursor() as cur:
            cur.execute("select count(*) from events")
        answer = await running.client.post_events("game", "events", [
            {"ts": "2026-11-30T13:00:00Z"}, {"ts": "2026-11-10T13:00:00Z"}])
        assert answer.status == 503
        assert answer.json()["error"] == "a partition these events need could not be made yet; retry later"
    finally:
        reader.rollback()
        reader.close()
    assert sql("select count(*) from events") == [(0,)]
    again = await running.client.post_events("game", "events", [
        {"ts": "2026-11-30T13:00:00Z"}, {"ts": "2026-11-10T13:00:00Z"}])
    assert again.status == 200
    assert partitions(sql) == ["events_p20261110", "events_p20261130"]


@pytest_twisted.ensureDeferred
async def test_a_partition_ahead_the_upkeep_could_not_make_is_counted_missing_until_it_is(start, sql,
                                                                                           database_url):
    clock = clock_at()
    running = await started(start, config(), clock)
    running.service.getServiceNamed("maintenance").lock_timeout = "50ms"
    reader = psycopg2.connect(database_url)  # a dashboard's long query: making a partition waits for it
    try:
        with reader.cursor() as cur:
            cur.execute("select count(*) from events")
        clock.advance(DAY)
        await upkeep(running)
        assert value(await scrape(running.client), "attolytics_partitions_missing", table="events") == 1
    finally:
        reader.rollback()
        reader.close()
    clock.advance(HOUR)
    await upkeep(running)
    assert value(await scrape(running.client), "attolytics_partitions_missing", table="events") == 0


@pytest_twisted.ensureDeferred
async def test_an_event_older_than_keep_or_later_than_ahead_is_refused_with_the_range(start, sql):
    running = await started(start, config("{column: ts, interval: month, ahead: 1, keep: 2}"), clock_at())
    for moment in ("2026-09-30T23:59:59Z", "2027-01-01T00:00:00Z"):
        answer = await running.client.post_events("game", "events", [
            {"ts": "2026-11-30T13:00:00Z"}, {"ts": moment}])
        assert answer.status == 400
        assert answer.json() == {
            "error": f"{moment.replace('Z', '+00:00')} is outside the time range kept: from "
                     f"2026-10-01T00:00:00+00:00 to before 2027-01-01T00:00:00+00:00",
            "event": 1, "field": "ts"}
    assert sql("select count(*) from events") == [(0,)]
    assert partitions(sql) == ["events_p20261101", "events_p20261201"]


@pytest_twisted.ensureDeferred
async def test_a_unique_id_on_a_partitioned_table_skips_a_resent_event(start, sql):
    running = await started(start, config("{column: ts, interval: day, ahead: 1, keep: 30}",
                                          "{name: id, type: uuid, unique: true}"), clock_at())
    assert sql("select pg_get_indexdef('events_id_key'::regclass)") == [
        ('CREATE UNIQUE INDEX events_id_key ON ONLY public.events USING btree (id, ts)',)]
    event = {"id": "0190f5a4-0000-7000-8000-000000000001", "ts": "2026-11-20T10:00:00Z", "name": "a"}
    first = await running.client.post_events("game", "events", [event])
    again = await running.client.post_events("game", "events", [event, dict(event, id=event["id"][:-1] + "2")])
    assert (first.status, first.json()) == (200, {"inserted": 1, "duplicates": 0})
    assert (again.status, again.json()) == (200, {"inserted": 1, "duplicates": 1})
    assert sql("select count(*) from events") == [(2,)]


@pytest_twisted.ensureDeferred
async def test_the_upkeep_waits_its_turn_while_another_service_holds_the_lock(start, sql, database_url):
    clock = clock_at()
    running = await started(start, config(), clock)
    holder = psycopg2.connect(database_url)
    try:
        with holder.cursor() as cur:
            cur.execute("select pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        clock.advance(DAY)
        await upkeep(running)
        assert partitions(sql)[-1] == "events_p20261202"  # skipped: the other holds the turn
    finally:
        holder.rollback()
        holder.close()
    clock.advance(HOUR)
    await upkeep(running)
    assert partitions(sql)[-1] == "events_p20261203"


@pytest_twisted.ensureDeferred
async def test_two_services_sharing_a_database_keep_the_partitions_without_a_clash(start, sql, logged):
    clock = clock_at()
    text = config("{column: ts, interval: day, ahead: 1, keep: 4}")
    first, second = await gatherResults([ensureDeferred(start(text, clock=clock)) for _ in range(2)])
    assert first.fatal == second.fatal == []
    await gatherResults([ensureDeferred(upkeep(first)), ensureDeferred(upkeep(second))])
    for _ in range(5):
        clock.advance(DAY)  # both run their upkeep at once
        await gatherResults([ensureDeferred(upkeep(first)), ensureDeferred(upkeep(second))])
        # Both store an event of three days ago at once: the first two times, its partition
        # was never made and is made on the spot.
        answers = await gatherResults([
            ensureDeferred(service.client.post_events("game", "events", [{"ts": clock.seconds() - 3 * DAY - HOUR}]))
            for service in (first, second)])
        assert [answer.status for answer in answers] == [200, 200]
    # Now 2026-12-05 12:00: keep 4 is from the 2nd, ahead 1 up to the 6th.
    assert partitions(sql) == ["events_p20261202", "events_p20261203", "events_p20261204",
                               "events_p20261205", "events_p20261206"]
    assert sql("select count(*) from events") == [(2,)]  # those of the 2nd; older ones dropped
    assert not [line for line in logged if "failed" in line or "could not" in line]
    made = [line for line in logged if line.startswith("created partition events_p2026112")]
    assert [line.split(" of ")[0] for line in made] == ["created partition events_p20261128",
                                                       "created partition events_p20261129"]
    dropped = [value(await scrape(s.client), "attolytics_partitions_dropped_total", table="events")
               for s in (first, second)]
    assert sum(dropped) == 4  # the 28th to the 1st, each by one of them


@pytest_twisted.ensureDeferred
async def test_a_received_at_partition_column_is_filled_and_partitioned(start, sql):
    text = config("{column: at, interval: month, ahead: 0, keep: 1}",
                  "{name: at, type: timestamptz, source: received_at}").replace(
        "{name: ts, type: timestamptz, required: true}", "{name: ts, type: timestamptz}")
    running = await started(start, text, Clock())  # the epoch: received_at is today, not in it
    assert partitions(sql) == ["events_p19700101"]
    answer = await running.client.post_events("game", "events", [{"name": "a"}])
    assert answer.status == 200  # today's month made on the spot
    today = datetime.now(timezone.utc)
    assert partitions(sql)[-1] == f"events_p{today:%Y%m}01"


@pytest_twisted.ensureDeferred
async def test_an_existing_table_partitioned_otherwise_is_refused(start, sql):
    sql("create table events (ts timestamptz not null, name varchar)")
    running = await start(config(), clock=clock_at())
    assert running.fatal == [
        "test.conf.yaml: table 'events' exists but does not match its declaration: it is not partitioned, "
        "and is declared partitioned by range (ts); a table cannot be partitioned once made: rename it, "
        "let Attolytics create it, and copy its rows over"]
    sql("drop table events")
    sql("create table events (ts timestamptz not null, name varchar) partition by list (name)")
    running = await start(config(), clock=clock_at())
    assert "it is partitioned by list (name)" in running.fatal[0]


@pytest_twisted.ensureDeferred
async def test_a_changed_interval_is_refused_naming_the_partition_in_the_way(start, sql):
    running = await started(start, config("{column: ts, interval: day, ahead: 2, keep: 3}"), clock_at())
    await running.stop()
    running = await start(config("{column: ts, interval: month, ahead: 1, keep: 3}"), clock=clock_at())
    assert running.fatal == [
        "test.conf.yaml: table 'events' exists but does not match its declaration: the month from "
        "2026-11-01 to 2026-12-01 overlaps partition events_p20261130 (from 2026-11-30 00:00 to 2026-12-01 "
        "00:00 UTC): a partitioned table keeps the interval it was made with; the month from 2026-12-01 to "
        "2027-01-01 overlaps partition events_p20261201 (from 2026-12-01 00:00 to 2026-12-02 00:00 UTC): a "
        "partitioned table keeps the interval it was made with"]
    assert partitions(sql) == ["events_p20261130", "events_p20261201", "events_p20261202"]


@pytest_twisted.ensureDeferred
async def test_a_user_made_list_partitioned_table_works_as_before(start, sql):
    sql("create table events (ts timestamptz not null, name varchar) partition by list (name)")
    sql("create table events_a partition of events for values in ('a')")
    text = config().replace("    partition: {column: ts, interval: day, ahead: 2, keep: 3}\n", "")
    running = await start(text)
    assert running.fatal == []
    ok = await running.client.post_events("game", "events", [{"ts": 0, "name": "a"}])
    refused = await running.client.post_events("game", "events", [{"ts": 0, "name": "b"}])
    assert ok.status == 200
    assert refused.status == 400 and "no partition of relation" in refused.json()["error"]
    assert sql("select name from events") == [("a",)]


@pytest_twisted.ensureDeferred
async def test_a_reload_adds_a_partitioned_table_with_its_partitions(start, sql, tmp_path):
    path = tmp_path / "app.yaml"
    clock = clock_at()
    text = config().replace("    partition: {column: ts, interval: day, ahead: 2, keep: 3}\n", "")
    running = await start(text, path=path, clock=clock)
    assert running.fatal == []
    path.write_text(text.replace("tables:\n", "tables:\n  clicks:\n    partition: {column: ts, interval: month, "
                                 "ahead: 1, keep: 12}\n    columns:\n      - {name: ts, type: timestamp without time zone, "
                                 "required: true}\n").replace("[{event_type_id: events}]",
                                                              "[{event_type_id: events}, {event_type_id: clicks}]"))
    assert await running.service.reload() is True
    await upkeep(running)
    assert partitions(sql, "clicks") == ["clicks_p20261101", "clicks_p20261201"]
    assert sql("select pg_get_expr(c.relpartbound, c.oid) from pg_class c where relname = 'clicks_p20261201'") == [
        ("FOR VALUES FROM ('2026-12-01 00:00:00') TO ('2027-01-01 00:00:00')",)]
    answer = await running.client.post_events("game", "clicks", [{"ts": "2026-11-30T12:00:00Z"}])
    assert answer.status == 200
    assert json.loads(json.dumps(sql("select ts::text from clicks"))) == [["2026-11-30 12:00:00"]]
