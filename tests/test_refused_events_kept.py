"""Refused events are kept in the rejected_events table, when the request carried the app's key:
every event of the request, the one at fault marked; the client's answer unchanged."""

import gzip
import json
from datetime import datetime, timezone

import psycopg2

import pytest
import pytest_twisted
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock

from support.configs import SECRET
from support.metrics import scrape, value
from support.waiting import wait_for

pytestmark = pytest.mark.service

KEEPING = f"""
rejected_events: refused
max_body_bytes: 10000
tables:
  scores:
    columns:
      - {{name: player, type: text, required: true}}
      - {{name: score, type: i32}}
apps:
  - app_id: game
    app_secret_key: {SECRET}
    event_types:
      - event_type_id: scores
      - event_type_id: orders
"""
COLUMNS = "status, app, event_type, error, field, event_index, at_fault, event"


@pytest.fixture
def keeping(start, sql):
    sql("create table orders (number int primary key)")
    running = pytest_twisted.blockon(ensureDeferred(start(KEEPING)))
    assert running.fatal == []
    return running


def kept(sql, where="true"):
    return sql(f"select {COLUMNS} from refused where {where} order by event_index nulls first")


async def wait_kept(sql, count):
    await wait_for(lambda: len(kept(sql)) >= count, what=f"{count} refused events kept")


async def post(running, path, body: bytes, headers=None):
    return await running.client.request("POST", path, body, {"Content-Type": "application/json", **(headers or {})})


def document(events, key=SECRET):
    return json.dumps({"secret_key": key, "events": events}).encode()


@pytest_twisted.ensureDeferred
async def test_an_event_that_fails_its_check_is_kept_with_the_rest_of_its_request(keeping, sql):
    events = [{"player": "ann", "score": 1}, {"player": "bob", "score": "lots"}, {"player": "cy"}]
    answer = await post(keeping, "/apps/game/events/scores", document(events))
    assert answer.status == 400 and answer.json()["field"] == "score"
    await wait_kept(sql, 3)
    error = answer.json()["error"]
    assert kept(sql) == [
        (400, "game", "scores", error, None, 0, False, events[0]),
        (400, "game", "scores", error, "score", 1, True, events[1]),
        (400, "game", "scores", error, None, 2, False, events[2]),
    ]
    assert sql("select count(*) from scores") == [(0,)]
    assert sql("select count(*) from refused where received_at > now() - interval '1 minute'") == [(3,)]


@pytest_twisted.ensureDeferred
async def test_a_t_naming_no_event_type_of_the_app_is_kept_as_404(keeping, sql):
    events = [{"_t": "scores", "player": "ann"}, {"_t": "nowhere\u0000", "x": "\ud800"}]
    raw = json.dumps({"secret_key": SECRET, "events": events}).encode("utf-8", "surrogatepass")
    answer = await post(keeping, "/apps/game/events", raw)
    assert answer.status == 404
    await wait_kept(sql, 2)
    rows = kept(sql)
    assert [(r[0], r[2], r[4], r[5], r[6]) for r in rows] == [
        (404, "scores", None, 0, False), (404, "nowhere\ufffd", "_t", 1, True)]
    # What jsonb cannot hold (NUL, a lone surrogate) is replaced; the rest is as sent.
    assert rows[1][7] == {"_t": "nowhere\ufffd", "x": "\ufffd"}


@pytest_twisted.ensureDeferred
async def test_a_row_postgresql_refuses_is_kept_as_409_without_knowing_which_event(keeping, sql):
    assert (await post(keeping, "/apps/game/events/orders", document([{"number": 1}]))).status == 200
    answer = await post(keeping, "/apps/game/events/orders", document([{"number": 2}, {"number": 1}]))
    assert answer.status == 409
    await wait_kept(sql, 2)
    assert [(r[0], r[2], r[4], r[5], r[6], r[7]) for r in kept(sql)] == [
        (409, "orders", None, 0, None, {"number": 2}), (409, "orders", None, 1, None, {"number": 1})]


@pytest_twisted.ensureDeferred
async def test_a_body_that_is_not_json_is_kept_as_its_text(keeping, sql):
    answer = await post(keeping, "/apps/game/events/scores", b'{"events": [1, \xff oops',
                        {"Authorization": f"Bearer {SECRET}"})
    assert answer.status == 400
    await wait_kept(sql, 1)
    assert kept(sql) == [(400, "game", "scores", answer.json()["error"], None, None, True,
                          '{"events": [1, \ufffd oops')]


@pytest_twisted.ensureDeferred
async def test_a_body_of_the_wrong_shape_is_kept_without_its_key(keeping, sql):
    answer = await post(keeping, "/apps/game/events/scores", json.dumps(
        {"secret_key": SECRET, "events": {"player": "ann"}}).encode())
    assert answer.status == 400
    await wait_kept(sql, 1)
    assert kept(sql) == [(400, "game", "scores", "events must be a JSON array of event objects", None, None,
                          True, {"events": {"player": "ann"}})]


@pytest_twisted.ensureDeferred
async def test_a_body_inflating_past_the_limit_is_kept_as_413(keeping, sql):
    bomb = gzip.compress(b"[" + b" " * 200_000 + b"]")
    answer = await post(keeping, "/apps/game/events/scores", bomb,
                        {"Content-Encoding": "gzip", "Authorization": f"Bearer {SECRET}"})
    assert answer.status == 413
    await wait_kept(sql, 1)
    assert [(r[0], r[5], r[6]) for r in kept(sql)] == [(413, None, True)]


@pytest.mark.parametrize("key, bearer", [("wrong-key", None), (None, None), (None, "wrong-key"),
                                         (SECRET, "wrong-key")])
@pytest_twisted.ensureDeferred
async def test_a_request_without_the_apps_key_keeps_nothing(keeping, sql, key, bearer):
    body = {"events": [{"player": "ann", "score": "x"}]}
    if key:
        body["secret_key"] = key
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    answer = await post(keeping, "/apps/game/events/scores", json.dumps(body).encode(), headers)
    assert answer.status in (401, 403)
    not_json = await post(keeping, "/apps/game/events/scores", b"not json")
    assert not_json.status == 400
    # A refusal that is kept is written at once: one after these shows nothing of them was.
    await post(keeping, "/apps/game/events/scores", document([{"player": "marker", "score": "x"}]))
    await wait_kept(sql, 1)
    assert [r[7] for r in kept(sql)] == [{"player": "marker", "score": "x"}]


@pytest_twisted.ensureDeferred
async def test_an_unwritable_table_of_refused_events_changes_no_answer_and_counts_the_loss(keeping, sql):
    sql("alter table refused add constraint nothing_fits check (false) not valid")
    refused = await post(keeping, "/apps/game/events/scores", document([{"player": "ann", "score": "x"}] * 3))
    assert refused.status == 400 and refused.json()["field"] == "score"
    stored = await post(keeping, "/apps/game/events/scores", document([{"player": "bob", "score": 7}]))
    assert (stored.status, stored.json()) == (200, {"inserted": 1})

    async def dropped():
        return value(await scrape(keeping.client), "attolytics_rejected_events_dropped_total", app="game")
    await wait_for(lambda: dropped(), what="the loss counted")
    assert await dropped() == 3
    sql("drop table refused")
    again = await post(keeping, "/apps/game/events/scores", document([{"player": "cy", "score": "x"}]))
    assert again.status == 400
    await wait_for(lambda: _equals(dropped(), 4), what="the second loss counted")
    assert sql("select player from scores") == [("bob",)]


async def _equals(awaitable, expected) -> bool:
    return await awaitable == expected


@pytest_twisted.ensureDeferred
async def test_no_key_of_any_app_is_kept(keeping, sql):
    body = ('{"secret_key": "%s", "events": [{"player": "%s", "score": NaN}]}' % (SECRET, SECRET)).encode()
    answer = await post(keeping, "/apps/game/events/scores", body, {"Authorization": f"Bearer {SECRET}"})
    assert answer.status == 400  # NaN: not JSON, kept as its text
    shapeless = await post(keeping, "/apps/game/events/scores", json.dumps(
        [{"secret_key": SECRET, "note": f"my key is {SECRET}", SECRET: {f"{SECRET}!": 1}}]).encode(),
        {"Authorization": f"Bearer {SECRET}"})
    assert shapeless.status == 400
    await wait_kept(sql, 2)
    kept_text = sql("select event::text from refused order by received_at")
    assert all(SECRET not in text for (text,) in kept_text), kept_text
    assert kept_text[0][0] == json.dumps(
        '{"secret_key": "[secret key]", "events": [{"player": "[secret key]", "score": NaN}]}')
    # A key as a member's name is taken out too.
    assert json.loads(kept_text[1][0]) == [{"secret_key": "[secret key]", "note": "my key is [secret key]",
                                            "[secret key]": {"[secret key]!": 1}}]


@pytest_twisted.ensureDeferred
async def test_a_locked_table_of_refused_events_holds_up_no_stored_event(start, sql, database_url):
    sql("create table orders (number int primary key)")
    running = await start(KEEPING + "writer: {connections: 2, flush_timeout: 3}\n")
    assert running.fatal == []
    locker = psycopg2.connect(database_url)
    try:
        with locker.cursor() as cur:
            cur.execute("lock table refused in access exclusive mode")
        bad = document([{"player": "ann", "score": "x"}])
        for _ in range(4):
            assert (await post(running, "/apps/game/events/scores", bad)).status == 400
        # The four refusals wait for the lock on a connection of their own: stored events go on.
        stored = await post(running, "/apps/game/events/scores", document([{"player": "bob", "score": 1}]))
        assert (stored.status, stored.json()) == (200, {"inserted": 1})
    finally:
        locker.rollback()
        locker.close()
    await wait_kept(sql, 4)


@pytest_twisted.ensureDeferred
async def test_kept_events_are_counted(keeping, sql):
    await post(keeping, "/apps/game/events/scores", document([{"player": "ann", "score": "x"}, {"player": "b"}]))
    await wait_kept(sql, 2)
    metrics = await scrape(keeping.client)
    assert value(metrics, "attolytics_events_kept_rejected_total", app="game") == 2


@pytest_twisted.ensureDeferred
async def test_requests_the_limits_refuse_are_not_kept(start, sql):
    """Else a copied key could fill the table of refused events past the app's rate limit."""
    limited = KEEPING.replace("      - event_type_id: orders\n", "") + "max_events_per_request: 4\n"
    limited = limited.replace("    event_types:", "    rate_limit: {events_per_second: 1, burst: 3}\n    event_types:")
    clock = Clock()
    clock.advance(datetime(2026, 11, 30, tzinfo=timezone.utc).timestamp())
    running = await start(limited, clock=clock)
    assert running.fatal == []
    path = "/apps/game/events/scores"
    bad = {"player": "ann", "score": "x"}
    assert (await post(running, path, document([bad] * 5))).status == 413  # past max_events_per_request
    assert (await post(running, path, document([bad] * 4))).status == 413  # past the burst
    assert (await post(running, path, document([{"player": "bob"}] * 3))).status == 200
    assert (await post(running, path, document([bad]))).status == 429
    clock.advance(10)
    # A refusal of the events themselves, within the limits, is kept: after those, and alone.
    assert (await post(running, path, document([{"player": "cy", "score": "y"}]))).status == 400
    await wait_kept(sql, 1)
    assert [row[0] for row in kept(sql)] == [400]
    assert sql("select event->>'player' from refused") == [("cy",)]
