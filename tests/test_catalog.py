"""Tables the user created: columns, types, defaults and constraints come from PostgreSQL's catalog."""

import pytest
import pytest_twisted
from twisted.internet.defer import ensureDeferred

from support.configs import SECRET

pytestmark = pytest.mark.service

ALL_TYPES = """
create schema analytics;
create table analytics.everything (
    id bigint generated always as identity,
    flag boolean,
    small smallint,
    medium integer,
    big bigint,
    single real,
    double double precision,
    exact numeric,
    money numeric(5,2),
    note text,
    short varchar(5),
    code char(3),
    at timestamptz,
    local_at timestamp,
    day date,
    doc json,
    bdoc jsonb,
    ref uuid,
    created timestamptz not null default now(),
    origin cidr default '127.0.0.1',
    kind text not null default 'plain'
)
"""

CONFIG = """
apps:
  - app_id: app
    app_secret_key: %s
    event_types:
      - {event_type_id: everything, table: analytics.everything}
""" % SECRET


@pytest.fixture
def everything(start, sql):
    sql(ALL_TYPES)
    running = pytest_twisted.blockon(ensureDeferred(start(CONFIG)))
    assert running.fatal == []
    return running


async def send(running, *events):
    return await running.client.post_events("app", "everything", list(events))


@pytest_twisted.ensureDeferred
async def test_every_supported_type_is_stored_exactly(everything, sql):
    raw = (
        '{"secret_key": "%s", "events": [{"flag": true, "small": -32768, "medium": 2147483647,'
        ' "big": 9223372036854775807, "single": 1.5, "double": 0.1, '
        '"exact": 3.14159265358979323846264338327950288, "money": 999.99, "note": "h\\u00e9llo",'
        ' "short": "abcde", "code": "XYZ", "at": "2019-04-01T15:09:40.123456+02:00",'
        ' "local_at": 1554130180.5, "day": "2019-04-01", "doc": {"a": [1, 2.50]},'
        ' "bdoc": {"n": 12345678901234567890.123}, "ref": "12345678-1234-5678-1234-567812345678"}]}'
        % SECRET
    ).encode()
    answer = await everything.client.request(
        "POST", "/apps/app/events/everything", raw, {"Content-Type": "application/json"}
    )
    assert (answer.status, answer.json()) == (200, {"inserted": 1})
    row = sql(
        "select flag, small, medium, big, single, double, exact::text, money::text, note, short,"
        " code, to_char(at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'),"
        " to_char(local_at, 'YYYY-MM-DD HH24:MI:SS.US'), day::text, doc::text,"
        " bdoc->>'n', ref::text, kind, origin::text from analytics.everything"
    )[0]
    assert row == (
        True, -32768, 2147483647, 9223372036854775807, 1.5, 0.1,
        "3.14159265358979323846264338327950288", "999.99", "héllo", "abcde", "XYZ",
        "2019-04-01 13:09:40.123456", "2019-04-01 14:49:40.500000", "2019-04-01",
        '{"a":[1,2.50]}', "12345678901234567890.123",
        "12345678-1234-5678-1234-567812345678", "plain", "127.0.0.1/32",
    )


@pytest_twisted.ensureDeferred
async def test_missing_keys_take_null_or_the_default(everything, sql):
    answer = await send(everything, {"note": "only this"})
    assert answer.status == 200
    assert sql("select flag, kind, created is not null from analytics.everything") == [
        (None, "plain", True)
    ]


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("small", 32768, "out of range for smallint"),
        ("medium", -2147483649, "out of range for integer"),
        ("single", 1e39, "out of range for real"),
        ("money", 1000, "out of range for numeric(5,2)"),
        ("money", 1.234, "digits after the point"),
        ("short", "abcdef", "longer than the 5 allowed by varchar(5)"),
        ("code", "ABCD", "longer than the 3 allowed by char(3)"),
        ("at", "2019-04-01T15:09:40", "time zone"),
        ("day", "2019-02-30", "not a valid date"),
        ("ref", "not-a-uuid", "not a valid UUID"),
        ("flag", 1, "expected true or false"),
        ("kind", None, "required"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_values_the_column_cannot_hold_are_refused(everything, sql, field, value, words):
    answer = await send(everything, {"note": "fine"}, {field: value})
    assert answer.status == 400
    body = answer.json()
    assert (body["event"], body["field"]) == (1, field)
    assert words in body["error"]
    assert sql("select count(*) from analytics.everything")[0][0] == 0


@pytest.mark.parametrize("field", ["id", "origin"])
@pytest_twisted.ensureDeferred
async def test_columns_postgres_fills_may_not_be_sent(everything, field):
    answer = await send(everything, {field: "1"})
    assert answer.status == 400
    assert answer.json()["field"] == field
    assert "filled by PostgreSQL" in answer.json()["error"]


@pytest_twisted.ensureDeferred
async def test_odd_column_names_are_quoted(start, sql):
    sql('create table odd ("select" text, "50%" int, "a""b" text)')
    running = await start(CONFIG.replace("analytics.everything", "odd"))
    event = {"select": "drop table odd", "50%": 50, 'a"b': "q"}
    answer = await running.client.post_events("app", "everything", [event])
    assert answer.status == 200, answer.body
    # Without the key that needs an escape, the body has none (the fast path cannot name a"b).
    answer = await running.client.post_events("app", "everything", [{"select": "s", "50%": 51}])
    assert answer.status == 200, answer.body
    assert sql('select "select", "50%", "a""b" from odd order by 2') == [("drop table odd", 50, "q"), ("s", 51, None)]


@pytest_twisted.ensureDeferred
async def test_check_constraint_violation_is_400_with_postgres_message(start, sql):
    sql("create table scores (score int check (score >= 0))")
    running = await start(CONFIG.replace("analytics.everything", "scores"))
    answer = await running.client.post_events("app", "everything", [{"score": 1}, {"score": -1}])
    assert answer.status == 400
    assert "check constraint" in answer.json()["error"]
    assert sql("select count(*) from scores")[0][0] == 0


@pytest_twisted.ensureDeferred
async def test_unique_violation_is_409(start, sql):
    sql("create table ids (id int primary key)")
    running = await start(CONFIG.replace("analytics.everything", "ids"))
    assert (await running.client.post_events("app", "everything", [{"id": 1}])).status == 200
    answer = await running.client.post_events("app", "everything", [{"id": 2}, {"id": 1}])
    assert answer.status == 409
    assert "duplicate key" in answer.json()["error"]
    assert sql("select id from ids") == [(1,)]


@pytest_twisted.ensureDeferred
async def test_unsupported_column_without_default_stops_start_up(start, sql):
    sql("create table shapes (id int, outline point)")
    running = await start(CONFIG.replace("analytics.everything", "shapes"))
    assert running.fatal == [
        "test.conf.yaml: table 'shapes', column 'outline': type point cannot be filled from JSON;"
        " give it a default or change its type"
    ]
    answer = await running.client.post_events("app", "everything", [{"id": 1}])
    assert answer.status == 503


@pytest_twisted.ensureDeferred
async def test_view_is_not_a_table(start, sql):
    sql("create view numbers as select 1 as n")
    running = await start(CONFIG.replace("analytics.everything", "numbers"))
    assert running.fatal and "'numbers'" in running.fatal[0] and "is not a table" in running.fatal[0]

