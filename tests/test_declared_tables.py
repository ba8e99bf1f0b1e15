"""Map-form apps writing to declared tables: the `_t` route, declared PostgreSQL types, header
columns, indexes, existing tables checked against their declaration, and CORS."""

import pytest
import pytest_twisted
from twisted.internet.defer import ensureDeferred

from support.configs import DECLARED_CONFIG, GAME_KEY, GAME_ORIGIN, OPEN_KEY

pytestmark = pytest.mark.service

SESSION = {"_t": "sessions", "ts": "2019-04-01T15:09:40Z", "player": "ann", "level": 3}
PURCHASE = {"_t": "purchases", "ts": 1554130180, "amount": 9.99}
COUNTRY = {"X-Country": "NL"}


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
async def test_a_bad_event_in_one_table_stores_nothing_in_any(declared, sql):
    answer = await post(declared, [SESSION, PURCHASE, dict(PURCHASE, amount="lots")], headers=COUNTRY)
    assert answer.status == 400
    assert (answer.json()["event"], answer.json()["field"]) == (2, "amount")
    assert counts(sql) == (0, 0)


@pytest.mark.parametrize(
    "event, field_error",
    [
        ({"ts": 1}, "_t is missing"),
        ({"_t": 5, "ts": 1}, "_t must be a string"),
        ({"_t": None, "ts": 1}, "_t is missing"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_missing_or_non_string_t_is_400(declared, sql, event, field_error):
    answer = await post(declared, [SESSION, event])
    assert answer.status == 400
    body = answer.json()
    assert (body["event"], body["field"]) == (1, "_t")
    assert field_error in body["error"]
    assert counts(sql) == (0, 0)


@pytest.mark.parametrize("app, key, table", [("game", GAME_KEY, "nowhere"), ("open", OPEN_KEY, "purchases")])
@pytest_twisted.ensureDeferred
async def test_table_unknown_or_not_allowed_is_404(declared, sql, app, key, table):
    answer = await post(declared, [SESSION, dict(PURCHASE, _t=table)], key=key, app=app, headers=COUNTRY)
    assert answer.status == 404
    assert (answer.json()["event"], answer.json()["field"]) == (1, "_t")
    assert counts(sql) == (0, 0)


@pytest_twisted.ensureDeferred
async def test_auth_and_shape_rules_are_those_of_the_typed_route(declared):
    assert (await post(declared, [SESSION], key="wrong")).status == 403
    no_key = await declared.client.request("POST", "/apps/game/events", {"events": [SESSION]})
    assert no_key.status == 401
    assert (await post(declared, [SESSION], app="nobody")).status == 404
    wrong_type = await declared.client.request(
        "POST", "/apps/game/events", b"{}", {"Content-Type": "text/csv"}
    )
    assert wrong_type.status == 415
    assert (await declared.client.request("GET", "/apps/game/events")).status == 405


@pytest_twisted.ensureDeferred
async def test_the_typed_route_serves_the_same_config(declared, sql):
    event = {k: v for k, v in SESSION.items() if k != "_t"}
    answer = await post(declared, [event], path="/apps/game/events/sessions")
    assert (answer.status, answer.json()) == (200, {"inserted": 1})
    with_t = await post(declared, [SESSION], path="/apps/game/events/sessions")
    assert with_t.status == 400 and with_t.json()["field"] == "_t"
    assert counts(sql) == (1, 0)


# Declared columns: PostgreSQL types, required


@pytest_twisted.ensureDeferred
async def test_declared_postgres_types_are_enforced(declared, sql):
    answer = await post(declared, [dict(SESSION, player="x" * 21)])
    assert answer.status == 400 and "varchar(20)" in answer.json()["error"]
    answer = await post(declared, [dict(PURCHASE, amount=1.005)], headers=COUNTRY)
    assert answer.status == 400 and "numeric(10,2)" in answer.json()["error"]
    assert sql(
        "select format_type(atttypid, atttypmod) from pg_attribute"
        " where attrelid = 'purchases'::regclass and attname in ('ts', 'amount') order by attnum"
    ) == [("timestamp with time zone",), ("numeric(10,2)",)]


@pytest_twisted.ensureDeferred
async def test_required_declared_column_is_not_null(declared, sql):
    answer = await post(declared, [{"_t": "sessions", "player": "ann"}])
    assert answer.status == 400 and answer.json()["field"] == "ts"
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


@pytest_twisted.ensureDeferred
async def test_missing_required_header_is_400(declared, sql):
    answer = await post(declared, [PURCHASE])
    assert answer.status == 400
    body = answer.json()
    assert (body["event"], body["field"]) == (0, "country")
    assert "X-Country" in body["error"]
    assert counts(sql) == (0, 0)


@pytest_twisted.ensureDeferred
async def test_body_cannot_set_a_header_column(declared, sql):
    answer = await post(declared, [dict(SESSION, user_agent="forged")], headers={"User-Agent": "real"})
    assert answer.status == 400
    assert answer.json()["field"] == "user_agent"
    assert "User-Agent" in answer.json()["error"]
    assert counts(sql) == (0, 0)


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
        ("create table sessions (ts timestamptz not null, level int, user_agent varchar)",
         "column 'player' (character varying(20)) is missing"),
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


def preflight_headers(origin):
    return {"Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"}


@pytest.mark.parametrize("path", ["/apps/game/events", "/apps/game/events/sessions"])
@pytest_twisted.ensureDeferred
async def test_preflight_from_an_allowed_origin(declared, path):
    answer = await declared.client.request("OPTIONS", path, headers=preflight_headers(GAME_ORIGIN))
    assert answer.status == 204
    h = answer.headers
    assert h["access-control-allow-origin"] == GAME_ORIGIN
    assert "POST" in h["access-control-allow-methods"]
    assert "content-type" in h["access-control-allow-headers"].lower()
    assert int(h["access-control-max-age"]) > 0
    assert "Origin" in h["vary"]


@pytest_twisted.ensureDeferred
async def test_preflight_from_another_origin_gets_no_allow_header(declared):
    answer = await declared.client.request(
        "OPTIONS", "/apps/game/events", headers=preflight_headers("https://evil.example")
    )
    assert answer.status == 204
    assert "access-control-allow-origin" not in answer.headers
    assert "access-control-allow-methods" not in answer.headers


@pytest_twisted.ensureDeferred
async def test_app_without_origins_allows_all(declared):
    answer = await declared.client.request(
        "OPTIONS", "/apps/open/events", headers=preflight_headers("https://anyone.example")
    )
    assert answer.status == 204
    assert answer.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize("key, status", [(GAME_KEY, 200), ("wrong", 403)])
@pytest_twisted.ensureDeferred
async def test_post_answers_carry_the_allow_header_errors_included(declared, key, status):
    answer = await post(declared, [SESSION], key=key, headers={"Origin": GAME_ORIGIN})
    assert answer.status == status
    assert answer.headers["access-control-allow-origin"] == GAME_ORIGIN
    refused = await post(declared, [SESSION], key=key, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in refused.headers


@pytest.mark.parametrize("content_type", ["application/json", "text/plain;charset=UTF-8"])
@pytest.mark.parametrize("origin", ["https://evil.example", "null", ""])
@pytest.mark.parametrize("path", ["/apps/game/events", "/apps/game/events/sessions"])
@pytest_twisted.ensureDeferred
async def test_a_page_of_an_origin_not_listed_stores_nothing(declared, sql, content_type, origin, path):
    headers = {"Origin": origin, "Content-Type": content_type}
    event = SESSION if path.endswith("/events") else {k: v for k, v in SESSION.items() if k != "_t"}
    refused = await post(declared, [event], headers=headers, path=path)
    assert refused.status == 403
    assert f"{origin!r} may not post to app 'game'" in refused.json()["error"]
    assert sql("select count(*) from sessions") == [(0,)]
    allowed = await post(declared, [event], headers={**headers, "Origin": GAME_ORIGIN}, path=path)
    assert allowed.status == 200


@pytest_twisted.ensureDeferred
async def test_early_413_carries_the_allow_header(start):
    running = await start("max_body_bytes: 100\n" + DECLARED_CONFIG)
    answer = await post(running, [SESSION] * 10, headers={"Origin": GAME_ORIGIN})
    assert answer.status == 413
    assert answer.headers["access-control-allow-origin"] == GAME_ORIGIN


@pytest_twisted.ensureDeferred
async def test_405_allows_post_and_options(declared):
    answer = await declared.client.request("PUT", "/apps/game/events")
    assert answer.status == 405
    assert set(answer.headers["allow"].replace(" ", "").split(",")) == {"POST", "OPTIONS"}
