"""Event ids at their edges: keys PostgreSQL takes for equal that Python does not, unique indexes
ON CONFLICT cannot name, odd names, foreign keys across the tables of a request, and several
statements for one table."""

import json
import uuid

import pytest
import pytest_twisted

from support.configs import SECRET

pytestmark = pytest.mark.service


def declared(column: str) -> str:
    return f"""
tables:
  things:
    columns:
      - {column}
      - {{name: page, type: text}}
apps:
  web:
    secret_key: {SECRET}
    tables: [things]
"""


def user_made(*event_types: str) -> str:
    lines = "".join(f"      - {event_type}\n" for event_type in event_types)
    return f"apps:\n  - app_id: shop\n    app_secret_key: {SECRET}\n    event_types:\n{lines}"


async def post_raw(running, path: str, events_json: str):
    body = ('{"secret_key": "%s", "events": %s}' % (SECRET, events_json)).encode()
    return await running.client.request("POST", path, body, {"Content-Type": "application/json"})


@pytest.mark.parametrize("column, events", [
    ("{name: id, type: char(8), unique: true}", '[{"id": "abc"}, {"id": "abc "}]'),
    ("{name: id, type: jsonb, unique: true}", '[{"id": {"a": 1, "b": 2}}, {"id": {"b": 2, "a": 1}}]'),
    ("{name: id, type: real, unique: true}", '[{"id": 1.5}, {"id": 1.50}]'),
    ("{name: id, type: inet, unique: true}", '[{"id": "10.0.0.1"}, {"id": "10.0.0.1/32"}]'),
], ids=["char", "jsonb", "real", "inet"])
@pytest_twisted.ensureDeferred
async def test_keys_postgresql_takes_for_equal_are_counted_as_one(start, sql, column, events):
    running = await start(declared(column))
    assert running.fatal == []
    answer = await post_raw(running, "/apps/web/events/things", events)
    assert (answer.status, answer.json()) == (200, {"inserted": 1, "duplicates": 1})
    assert sql("select count(*) from things") == [(1,)]


@pytest_twisted.ensureDeferred
async def test_a_unique_index_with_nulls_not_distinct_cannot_skip_duplicates(start, sql):
    # With it a second NULL id would be skipped, where an event without an id is always stored.
    sql("create table hits (id uuid, page text, unique nulls not distinct (id))")
    running = await start(user_made("{event_type_id: hits, skip_duplicates: [id]}"))
    assert len(running.fatal) == 1 and "needs a unique index or primary key" in running.fatal[0]


@pytest_twisted.ensureDeferred
async def test_the_include_columns_of_a_unique_index_are_not_its_key(start, sql):
    sql("create table hits (id uuid, page text)")
    sql("create unique index on hits (id) include (page)")
    wider = await start(user_made("{event_type_id: hits, skip_duplicates: [id, page]}"))
    assert len(wider.fatal) == 1 and "skip_duplicates (id, page) needs a unique index" in wider.fatal[0]
    running = await start(user_made("{event_type_id: hits, skip_duplicates: [id]}"))
    assert running.fatal == []
    event = {"id": str(uuid.uuid4()), "page": "/"}
    assert (await running.client.post_events("shop", "hits", [event])).json() == {"inserted": 1, "duplicates": 0}
    assert (await running.client.post_events("shop", "hits", [event])).json() == {"inserted": 0, "duplicates": 1}


@pytest_twisted.ensureDeferred
async def test_a_column_named_like_the_row_position_is_just_a_column(start, sql):
    sql('create table hits (id uuid primary key, "attolytics#row" int)')
    running = await start(user_made("{event_type_id: hits, skip_duplicates: [id]}"))
    assert running.fatal == []
    event = {"id": str(uuid.uuid4()), "attolytics#row": 1}
    assert (await running.client.post_events("shop", "hits", [event])).status == 200
    again = await running.client.post_events("shop", "hits", [event])
    assert (again.status, again.json()) == (200, {"inserted": 0, "duplicates": 1})


@pytest_twisted.ensureDeferred
async def test_odd_names_are_quoted_on_the_path_that_skips(start, sql):
    sql('create schema "s%{x}"')
    sql('create table "s%{x}"."t%""{}" ("i%d""{}" uuid primary key, "p%s" text default \'d\')')
    running = await start(user_made('{event_type_id: t, table: "s%{x}.t%\\"{}", skip_duplicates: ["i%d\\"{}"]}'))
    assert running.fatal == []
    known, other = {'i%d"{}': str(uuid.uuid4()), "p%s": "x"}, {'i%d"{}': str(uuid.uuid4())}
    first = await running.client.post_events("shop", "t", [known, other, known])
    again = await running.client.post_events("shop", "t", [known, other, {'i%d"{}': str(uuid.uuid4())}])
    assert (first.json(), again.json()) == ({"inserted": 2, "duplicates": 1}, {"inserted": 1, "duplicates": 2})


FAMILY = user_made("{event_type_id: parents, skip_duplicates: [id]}", "{event_type_id: children}")


@pytest_twisted.ensureDeferred
async def test_a_resent_parent_with_a_new_child_keeps_the_tables_in_order(start, sql):
    sql("create table parents (id uuid primary key)")
    sql("create table children (parent uuid not null references parents (id))")
    running = await start(FAMILY)
    assert running.fatal == []
    known, new = str(uuid.uuid4()), str(uuid.uuid4())
    first = await running.client.request("POST", "/apps/shop/events",
                                         {"secret_key": SECRET, "events": [{"_t": "parents", "id": known}]})
    assert first.status == 200
    events = [{"_t": "parents", "id": known}, {"_t": "parents", "id": new}, {"_t": "children", "parent": new}]
    again = await running.client.request("POST", "/apps/shop/events", {"secret_key": SECRET, "events": events})
    assert (again.status, again.json()) == (200, {"inserted": 2, "duplicates": 1})
    assert sql("select count(*) from children") == [(1,)]


@pytest_twisted.ensureDeferred
async def test_rows_leaving_different_columns_to_their_default_are_counted_right(start, sql):
    sql("create table hits (id uuid primary key default gen_random_uuid(), page text default '/', n int default 0)")
    running = await start(user_made("{event_type_id: hits, skip_duplicates: [id]}"))
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    assert (await running.client.post_events("shop", "hits", [{"id": a}])).json() == {"inserted": 1, "duplicates": 0}
    answer = await running.client.post_events("shop", "hits", [
        {"id": a, "page": "/x"}, {"id": b}, {"id": c, "n": 1}, {"id": b, "page": "/y"}, {"page": "/z"}])
    assert answer.json() == {"inserted": 3, "duplicates": 2}
    assert sql("select count(*) from hits") == [(4,)]


@pytest_twisted.ensureDeferred
async def test_equal_spellings_of_numbers_and_moments_are_one_id(start, sql):
    running = await start(declared("{name: id, type: timestamptz, unique: true}"))
    answer = await post_raw(running, "/apps/web/events/things", json.dumps(
        [{"id": "2019-04-01T15:09:40Z"}, {"id": "2019-04-01T17:09:40+02:00"}, {"id": 1554131380}]))
    assert answer.json() == {"inserted": 1, "duplicates": 2}
