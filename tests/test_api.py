"""The typed route over real HTTP against real PostgreSQL: what a write or a real socket means
(rows stored exactly, the body limit on the wire, 503 from a database that is not there).
The rules decided before any write are in test_routes_in_memory."""

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
async def test_strings_written_in_escapes_are_stored_as_the_text_they_stand_for(game, sql):
    body = ('{"secret_key": "%s", "events": [{"timestamp": 1, "event_type": '
            '"caf\\u00e9 \\ud83d\\ude00 \\"q\\": \\\\ \\/ \\n\\t\\u2028"}]}' % SECRET).encode()
    answer = await game.client.request("POST", ROUTE, body, {"Content-Type": "application/json"})
    assert (answer.status, answer.json()) == (200, {"inserted": 1})
    assert sql("select event_type from game_events") == [('caf\u00e9 \U0001F600 "q": \\ / \n\t\u2028',)]


@pytest_twisted.ensureDeferred
async def test_a_nul_or_a_lone_surrogate_written_in_escapes_is_refused_naming_the_field(game, sql):
    for escape, why in (("\\u0000", "must not contain a NUL character"), ("\\ud800", "unpaired UTF-16 surrogate")):
        body = ('{"secret_key": "%s", "events": [{"timestamp": 1, "event_type": "a%sb"}]}' % (SECRET, escape)).encode()
        answer = await game.client.request("POST", ROUTE, body, {"Content-Type": "application/json"})
        refusal = answer.json()
        assert (answer.status, refusal["event"], refusal["field"]) == (400, 0, "event_type"), answer.body
        assert why in refusal["error"], answer.body
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
