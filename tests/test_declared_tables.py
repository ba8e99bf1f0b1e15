"""Map-form apps writing to declared tables, against real PostgreSQL: the `_t` route, declared
PostgreSQL types, header columns, indexes, existing tables checked against their declaration,
and CORS. What is refused before any write is in test_routes_in_memory."""

import pytest
import pytest_twisted
from twisted.internet.defer import ensureDeferred

from support.configs import COUNTRY, DECLARED_CONFIG, GAME_KEY, GAME_ORIGIN, PURCHASE, SESSION

pytestmark = pytest.mark.service



@pytest.fixture
def declared(start):
    running = pytest_twisted.blockon(ensureDeferred(start(DECLARED_CONFIG)))
    assert running.fatal == []
    return running


async def post(running, events, key=GAME_KEY, app="game", headers=None, path=None):
    body = {"secret_key": key, "events": events}
    return await running.client.request("POST", path or f"/apps/{app}/events", body, headers)


def counts(sql):
    return sql("select (select count(*) from sessions), (select count(*) from purchases)")[0]


# The _t route


@pytest_twisted.ensureDeferred
async def test_one_request_fills_several_tables(declared, sql):
    answer = await post(declared, [SESSION, PURCHASE, dict(SESSION, player="bob")], headers=COUNTRY)
    assert (answer.status, answer.json()) == (200, {"inserted": 3})
    assert sql("select player, level from sessions order by player") == [("ann", 3), ("bob", 3)]
    assert sql("select amount::text, country from purchases") == [("9.99", "NL")]


@pytest_twisted.ensureDeferred
async def test_the_typed_route_serves_the_same_config(declared, sql):
    event = {k: v for k, v in SESSION.items() if k != "_t"}
    answer = await post(declared, [event], path="/apps/game/events/sessions")
    assert (answer.status, answer.json()) == (200, {"inserted": 1})
    assert counts(sql) == (1, 0)


# Declared columns: PostgreSQL types, required


@pytest_twisted.ensureDeferred
async def test_declared_postgres_types_are_created_as_declared(declared, sql):
    assert sql(
        "select format_type(atttypid, atttypmod) from pg_attribute"
        " where attrelid = 'purchases'::regclass and attname in ('ts', 'amount') order by attnum"
    ) == [("timestamp with time zone",), ("numeric(10,2)",)]


@pytest_twisted.ensureDeferred
async def test_required_declared_column_is_created_not_null(declared, sql):
    assert sql("select attnotnull from pg_attribute where attrelid = 'sessions'::regclass"
               " and attname = 'ts'") == [(True,)]


# Header columns


@pytest_twisted.ensureDeferred
async def test_header_column_is_filled_from_the_header_case_insensitively(declared, sql):
    answer = await post(declared, [SESSION, PURCHASE],
                        headers={"user-agent": "Game/1.0", "x-country": "SE"})
    assert answer.status == 200
    assert sql("select user_agent from sessions") == [("Game/1.0",)]
    assert sql("select country from purchases") == [("SE",)]


@pytest_twisted.ensureDeferred
async def test_missing_optional_header_gives_null(declared, sql):
    # treq sends no User-Agent unless asked; an empty mapping keeps it out.
    answer = await post(declared, [SESSION])
    assert answer.status == 200
    assert sql("select user_agent is null from sessions") == [(True,)]


# Indexes


INDEXES = "select indexname from pg_indexes where tablename = 'sessions' order by indexname"


@pytest_twisted.ensureDeferred
async def test_indexed_columns_get_stable_indexes_once(start, sql):
    await start(DECLARED_CONFIG)
    assert sql(INDEXES) == [("sessions_player_idx",), ("sessions_ts_idx",)]
    again = await start(DECLARED_CONFIG)  # a second start against the existing tables
    assert again.fatal == []
    assert sql(INDEXES) == [("sessions_player_idx",), ("sessions_ts_idx",)]


# Existing declared tables are checked


@pytest.mark.parametrize(
    "existing, words",
    [
        ("create table sessions (ts bigint not null, player varchar(20), level int, user_agent varchar)",
         "column 'ts' is declared timestamp with time zone but is bigint"),
        ("create table sessions (player varchar(20), level int, user_agent varchar);"
         " insert into sessions (player) values ('ann')",
         "column 'ts' (timestamp with time zone NOT NULL) is missing, and cannot be added to a table "
         "that has rows without a default"),
        ("create table sessions (ts timestamptz not null, player varchar(20), level int,"
         " user_agent varchar, secret text not null)",
         "column 'secret' (text NOT NULL, no default) is not declared"),
        ("create table sessions (ts timestamptz, player varchar(20), level int, user_agent varchar)",
         "column 'ts' is declared required but allows NULL"),
        ("create table sessions (ts timestamptz not null, player varchar(30), level int, user_agent varchar)",
         "column 'player' is declared character varying(20) but is character varying(30)"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_mismatched_existing_table_stops_start_up(start, sql, existing, words):
    sql(existing)
    running = await start(DECLARED_CONFIG)
    assert len(running.fatal) == 1
    assert running.fatal[0].startswith("test.conf.yaml: table 'sessions' exists but does not match")
    assert words in running.fatal[0]
    assert (await post(running, [SESSION])).status == 503


@pytest_twisted.ensureDeferred
async def test_matching_existing_table_is_used_and_undeclared_columns_are_refused(start, sql):
    sql("create table sessions (ts timestamptz not null, player varchar(20), level int,"
        " user_agent varchar, note text, added timestamptz default now())")
    running = await start(DECLARED_CONFIG)
    assert running.fatal == []
    answer = await post(running, [dict(SESSION, note="hi")])
    assert answer.status == 400
    assert answer.json()["field"] == "note" and "not declared" in answer.json()["error"]
    assert (await post(running, [SESSION])).status == 200
    assert sql("select note is null, added is not null from sessions") == [(True, True)]


# CORS


@pytest.mark.parametrize("content_type", ["application/json", "text/plain;charset=UTF-8"])
@pytest.mark.parametrize("path", ["/apps/game/events", "/apps/game/events/sessions"])
@pytest_twisted.ensureDeferred
async def test_a_page_of_a_listed_origin_stores_its_events(declared, sql, content_type, path):
    headers = {"Origin": GAME_ORIGIN, "Content-Type": content_type}
    event = SESSION if path.endswith("/events") else {k: v for k, v in SESSION.items() if k != "_t"}
    allowed = await post(declared, [event], headers=headers, path=path)
    assert allowed.status == 200
    assert sql("select count(*) from sessions") == [(1,)]


@pytest_twisted.ensureDeferred
async def test_early_413_carries_the_allow_header(start):
    running = await start("max_body_bytes: 100\n" + DECLARED_CONFIG)
    answer = await post(running, [SESSION] * 10, headers={"Origin": GAME_ORIGIN})
    assert answer.status == 413
    assert answer.headers["access-control-allow-origin"] == GAME_ORIGIN
