"""The typed route over real HTTP against real PostgreSQL: every status code and validation rule."""

from datetime import datetime, timezone

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from support.configs import GAME_EVENTS, SECRET, START
from support.http import free_port, raw_exchange

pytestmark = pytest.mark.service

ROUTE = "/apps/mygame/events/game_events"


def count(sql, table="game_events"):
    return sql(f"select count(*) from {table}")[0][0]


# 200


@pytest_twisted.ensureDeferred
async def test_the_readme_events_are_stored_as_sent(game, sql):
    answer = await game.client.post_events("mygame", "game_events", GAME_EVENTS)
    assert answer.status == 200, answer.body
    assert answer.json() == {"inserted": 2}
    assert sql("select timestamp, event_type, score from game_events order by timestamp") == [
        (1554130180, "game_start", None),
        (1554130213, "game_end", 42),
    ]


@pytest_twisted.ensureDeferred
async def test_empty_events_list_inserts_nothing(game, sql):
    answer = await game.client.post_events("mygame", "game_events", [])
    assert (answer.status, answer.json()) == (200, {"inserted": 0})
    assert count(sql) == 0


@pytest_twisted.ensureDeferred
async def test_charset_parameter_is_accepted(game, sql):
    body = {"secret_key": SECRET, "events": [START]}
    answer = await game.client.request(
        "POST", ROUTE, body, {"Content-Type": "application/json; charset=UTF-8"}
    )
    assert (answer.status, answer.json()) == (200, {"inserted": 1})
    assert count(sql) == 1


@pytest_twisted.ensureDeferred
async def test_answer_is_json(game):
    answer = await game.client.post_events("mygame", "game_events", [START])
    assert answer.headers["content-type"] == "application/json"


# 400: the body


@pytest.mark.parametrize(
    "raw, words",
    [
        (b"{not json", "not valid JSON"),
        (b"", "not valid JSON"),
        (b'{"secret_key": "\xff\xfe", "events": []}', "not valid UTF-8"),
        (b"[1, 2]", "JSON object"),
        (b'{"secret_key": "%s", "events": {}}' % SECRET.encode(), "events must be"),
        (b'{"secret_key": "%s", "events": [], "extra": 1}' % SECRET.encode(), "unknown key 'extra'"),
        (b'{"secret_key": 5, "events": []}', "secret_key must be a string"),
        (b'{"secret_key": "%s", "events": [NaN]}' % SECRET.encode(), "NaN"),
        (b'{"secret_key": "%s", "events": [Infinity]}' % SECRET.encode(), "Infinity"),
        (b'{"secret_key": "%s", "secret_key": "x", "events": []}' % SECRET.encode(), "duplicate key"),
        (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_malformed_body_is_400(game, sql, raw, words):
    answer = await game.client.request("POST", ROUTE, raw, {"Content-Type": "application/json"})
    assert answer.status == 400
    assert words in answer.json()["error"]
    assert count(sql) == 0


# 400: the events, with the event index and the field


async def rejected(game, events):
    answer = await game.client.post_events("mygame", "game_events", events)
    assert answer.status == 400, answer.body
    return answer.json()


@pytest_twisted.ensureDeferred
async def test_event_that_is_not_an_object(game, sql):
    body = await rejected(game, [START, "game_end"])
    assert body["event"] == 1 and "must be a JSON object" in body["error"]
    assert count(sql) == 0


@pytest_twisted.ensureDeferred
async def test_unknown_key_is_refused_by_name(game, sql):
    body = await rejected(game, [dict(START, level=3)])
    assert (body["event"], body["field"]) == (0, "level")
    assert "no column 'level'" in body["error"]


@pytest_twisted.ensureDeferred
async def test_sql_in_a_key_is_just_an_unknown_key(game, sql):
    key = 'score"); drop table game_events; --'
    body = await rejected(game, [dict(START, **{key: 1})])
    assert body["field"] == key
    assert count(sql) == 0


@pytest_twisted.ensureDeferred
async def test_missing_required_field(game, sql):
    body = await rejected(game, [START, {"timestamp": 1554130213}])
    assert (body["event"], body["field"]) == (1, "event_type")
    assert "required" in body["error"] and "missing" in body["error"]


@pytest_twisted.ensureDeferred
async def test_null_required_field(game):
    body = await rejected(game, [{"timestamp": None, "event_type": "x"}])
    assert (body["event"], body["field"]) == (0, "timestamp")
    assert "null" in body["error"]


@pytest.mark.parametrize("value", [True, 1.5, "42", 2**63, [1], {"a": 1}])
@pytest_twisted.ensureDeferred
async def test_wrong_value_for_bigint(game, sql, value):
    body = await rejected(game, [START, dict(START, score=value)])
    assert (body["event"], body["field"]) == (1, "score")
    assert count(sql) == 0


@pytest_twisted.ensureDeferred
async def test_huge_number_is_refused_not_lost(game, sql):
    raw = b'{"secret_key": "%s", "events": [{"timestamp": 1e400, "event_type": "x"}]}' % SECRET.encode()
    answer = await game.client.request("POST", ROUTE, raw, {"Content-Type": "application/json"})
    assert answer.status == 400
    assert answer.json()["field"] == "timestamp"


@pytest.mark.parametrize("text", ["nul\x00byte", "lone \ud800 surrogate"])
@pytest_twisted.ensureDeferred
async def test_strings_postgres_cannot_store_are_refused(game, sql, text):
    raw = ('{"secret_key": "%s", "events": [{"timestamp": 1, "event_type": %s}]}' % (
        SECRET, __import__("json").dumps(text))).encode()
    answer = await game.client.request("POST", ROUTE, raw, {"Content-Type": "application/json"})
    assert answer.status == 400
    assert answer.json()["field"] == "event_type"
    assert count(sql) == 0


@pytest_twisted.ensureDeferred
async def test_one_bad_event_stores_nothing(game, sql):
    events = [dict(START, timestamp=i) for i in range(500)] + [dict(START, score="high")]
    body = await rejected(game, events)
    assert (body["event"], body["field"]) == (500, "score")
    assert count(sql) == 0


# 401, 403, 404, 405, 415


@pytest_twisted.ensureDeferred
async def test_missing_secret_key_is_401(game, sql):
    answer = await game.client.request("POST", ROUTE, {"events": [START]})
    assert answer.status == 401 and "secret_key" in answer.json()["error"]
    assert count(sql) == 0


@pytest_twisted.ensureDeferred
async def test_wrong_secret_key_is_403(game, sql):
    answer = await game.client.post_events("mygame", "game_events", [START], secret="guess")
    assert answer.status == 403 and "secret_key" in answer.json()["error"]
    assert count(sql) == 0


@pytest.mark.parametrize(
    "path", ["/apps/othergame/events/game_events", "/apps/mygame/events/other", "/nowhere", "/"]
)
@pytest_twisted.ensureDeferred
async def test_unknown_app_event_type_or_route_is_404(game, path):
    answer = await game.client.request("POST", path, {"secret_key": SECRET, "events": [START]})
    assert answer.status == 404
    assert answer.json()["error"]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
@pytest_twisted.ensureDeferred
async def test_other_methods_are_405_with_allow(game, method):
    answer = await game.client.request(method, ROUTE)
    assert answer.status == 405
    assert "POST" in answer.headers["allow"]
    assert answer.json()["error"]


@pytest.mark.parametrize("content_type", [None, "text/html", "application/x-www-form-urlencoded",
                                          "application/json; charset=latin-1"])
@pytest_twisted.ensureDeferred
async def test_other_content_types_are_415(game, sql, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    raw = b'{"secret_key": "%s", "events": []}' % SECRET.encode()
    answer = await game.client.request("POST", ROUTE, raw, headers)
    assert answer.status == 415
    assert answer.json()["error"]


# 413


LIMITED = """
max_body_bytes: 1000
apps:
  - app_id: mygame
    app_secret_key: %s
    event_types: [{event_type_id: game_events}]
tables:
  game_events:
    columns: [{name: timestamp, type: i64}, {name: event_type}, {name: score, type: i64}]
""" % SECRET


@pytest_twisted.ensureDeferred
async def test_declared_length_over_limit_is_413_before_the_body(start, sql):
    running = await start(LIMITED)
    port = running.port
    head = (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5000000\r\n\r\n" % ROUTE.encode())
    # Only the head is sent: the answer must come without waiting for the 5 MB.
    answer = await deferToThread(raw_exchange, port, head)
    assert answer.startswith(b"HTTP/1.1 413")
    assert b'"error"' in answer


@pytest_twisted.ensureDeferred
async def test_chunked_body_over_limit_is_cut_off_with_413(start, sql):
    running = await start(LIMITED)
    port = running.port
    chunk = b"x" * 600
    request = (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n" % ROUTE.encode())
    request += (b"%x\r\n%s\r\n" % (len(chunk), chunk)) * 2 + b"0\r\n\r\n"
    answer = await deferToThread(raw_exchange, port, request)
    assert answer.startswith(b"HTTP/1.1 413")
    assert count(sql) == 0


@pytest_twisted.ensureDeferred
async def test_body_just_under_limit_is_served(start, sql):
    running = await start(LIMITED)
    events = [dict(START, timestamp=i) for i in range(12)]
    answer = await running.client.post_events("mygame", "game_events", events)
    assert answer.status == 200
    too_many = await running.client.post_events("mygame", "game_events", events * 3)
    assert too_many.status == 413
    assert count(sql) == 12


# 503


@pytest_twisted.ensureDeferred
async def test_database_unreachable_is_503_with_retry_after(start):
    url = f"postgresql://nobody@127.0.0.1:{free_port()}/none"
    running = await start(url=url, wait=False)
    answer = await running.client.post_events("mygame", "game_events", [START])
    assert answer.status == 503
    assert int(answer.headers["retry-after"]) > 0
    assert "retry" in answer.json()["error"]


@pytest.mark.parametrize("path", ["/apps/%ff/events/game_events", "/apps/mygame/events/%C3%28"])
@pytest_twisted.ensureDeferred
async def test_url_that_is_not_utf8_is_a_json_400(game, path):
    answer = await game.client.request("POST", path, {"secret_key": SECRET, "events": []})
    assert answer.status == 400
    assert "UTF-8" in answer.json()["error"]


@pytest_twisted.ensureDeferred
async def test_answers_have_a_content_length(game):
    body = b'{"secret_key": "%s", "events": []}' % SECRET.encode()
    request = (b"POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (ROUTE.encode(), len(body), body))
    answer = await deferToThread(raw_exchange, game.port, request)
    head, _, content = answer.partition(b"\r\n\r\n")
    assert b"\r\nContent-Length: %d\r\n" % len(content) in head + b"\r\n"
    assert content == b'{"inserted": 0}'


MOMENTS_CONFIG = f"""
tables:
  moments:
    columns:
      - {{name: at, type: timestamp, required: true}}
apps:
  mygame:
    secret_key: {SECRET}
    tables: [moments]
"""


@pytest_twisted.ensureDeferred
async def test_a_utc_offset_of_16_hours_or_more_is_stored_as_the_same_moment(start, sql):
    # RFC 3339 allows offsets up to 23:59; PostgreSQL reads them below 16:00 only.
    running = await start(MOMENTS_CONFIG)
    events = [{"at": "2019-04-01T15:09:40+16:00"}, {"at": "2019-04-01T15:09:40-23:59"}]
    answer = await running.client.post_events("mygame", "moments", events)
    assert (answer.status, answer.json()) == (200, {"inserted": 2})
    assert [row[0] for row in sql("select at from moments order by at")] == [
        datetime(2019, 3, 31, 23, 9, 40, tzinfo=timezone.utc),
        datetime(2019, 4, 2, 15, 8, 40, tzinfo=timezone.utc),
    ]
