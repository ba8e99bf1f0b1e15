"""The browser client, /attolytics.js, in a real headless Chromium: a page of another origin
records events, and they arrive in PostgreSQL."""

import gzip
import json
import re
import time
import uuid

import psycopg2
import pytest
import pytest_twisted

from support.browser import game_events_stored, in_browser, page_with_client
from support.configs import GAME_CONFIG, SECRET, START
from support.metrics import scrape, value
from support.postgres import query
from support.waiting import sleep, wait_for

pytestmark = pytest.mark.browser

ROUTE = "/apps/{app}/events"
# The game_events app, allowing only pages of another site than the tests' pages.
FOREIGN_ONLY = GAME_CONFIG.replace(
    "    event_types:", "    access_control_allow_origin: https://elsewhere.example\n    event_types:")
# The game_events table with an event id (a uuid column that skips duplicates), and a table
# whose columns are no event id: a uuid not unique, a unique column not a uuid.
IDS_CONFIG = f"""
tables:
  game_events:
    columns:
      - {{name: id, type: uuid, unique: true}}
      - {{name: timestamp, type: i64, required: true}}
      - {{name: event_type, type: string, required: true}}
      - {{name: score, type: i64}}
  visits:
    columns:
      - {{name: ref, type: uuid}}
      - {{name: code, type: text, unique: true}}
apps:
  - app_id: mygame
    app_secret_key: {SECRET}
    event_types:
      - event_type_id: game_events
      - event_type_id: visits
"""


def page_with(service: str, script: str, interval: int | None = None) -> str:
    """A page that loads the client as the README's snippet does, then runs `script`."""
    every = f' data-interval="{interval}"' if interval is not None else ""
    return f"""<!doctype html><meta charset="utf-8"><title>a page</title>
<script src="{service}/attolytics.js" data-app="mygame" data-key="{SECRET}"{every}></script>
<script>window.errors = []; {script}</script>"""


# A page script function: track events `from` to `to` (numbered by timestamp), 400 bytes each.
MORE = """
    function more(from, to) {
      for (var i = from; i <= to; i++) {
        attolytics.track("game_events", {timestamp: i, event_type: "x".repeat(350)});
      }
    }
"""


async def page_errors(browser):
    return await in_browser(browser.execute_script, "return window.errors")


def rows(sql):
    return sql("select timestamp, event_type, score from game_events order by timestamp")


async def requests_answered(running, status: str) -> float:
    return value(await scrape(running.client), "attolytics_requests_total", route=ROUTE, status=status)


def ids(sql):
    """(timestamp, event type, id) of every row, in the order of their timestamps."""
    return sql("select timestamp, event_type, id::text from game_events order by timestamp")


def uuid7_ms(text: str) -> int:
    """The Unix milliseconds of a UUIDv7, after checking it is one, in its canonical form."""
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text), text
    value = uuid.UUID(text)
    assert (value.version, value.variant) == (7, uuid.RFC_4122), text
    return value.int >> 80


# The service side


@pytest_twisted.ensureDeferred
async def test_script_is_served_with_the_body_limit(start):
    running = await start(GAME_CONFIG + "max_body_bytes: 12345\n")
    answer = await running.client.request("GET", "/attolytics.js")
    assert answer.status == 200
    assert answer.headers["content-type"] == "text/javascript; charset=utf-8"
    assert b"var MAX_BODY_BYTES = 12345;" in answer.body
    assert b"__MAX_BODY_BYTES__" not in answer.body
    assert "max-age" in answer.headers["cache-control"]


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("accept, gzipped", [
    ("gzip, deflate, br", True), ("br;q=1.0, gzip;q=0.5", True), ("*", True),
    ("gzip;q=0", False), ("identity", False), (None, False), ("gzip;q=x", False),
    ("*;q=0, gzip", True), ("gzip;q=0, *", False),
])
async def test_script_is_gzipped_when_the_browser_accepts_it(game, accept, gzipped):
    # The client sends exactly these headers, and no Accept-Encoding of its own.
    plain = await game.client.request("GET", "/attolytics.js")
    answer = await game.client.request(
        "GET", "/attolytics.js", headers={"Accept-Encoding": accept} if accept is not None else None)
    assert answer.status == 200 and answer.headers["vary"] == "Accept-Encoding"
    if gzipped:
        assert answer.headers["content-encoding"] == "gzip"
        assert gzip.decompress(answer.body) == plain.body
        assert len(answer.body) < len(plain.body) / 2
    else:
        assert "content-encoding" not in answer.headers
        assert answer.body == plain.body


@pytest_twisted.ensureDeferred
async def test_script_is_served_with_the_event_id_columns(start):
    running = await start(IDS_CONFIG)
    assert running.fatal == []
    answer = await running.client.request("GET", "/attolytics.js")
    [written] = re.findall(rb"var EVENT_IDS = (.*);", answer.body)
    assert json.loads(written) == {"mygame": {"game_events": "id"}}
    assert b"__EVENT_IDS__" not in answer.body
    plain = await start(GAME_CONFIG)
    assert b"var EVENT_IDS = {};" in (await plain.client.request("GET", "/attolytics.js")).body


@pytest_twisted.ensureDeferred
async def test_answers_let_a_page_read_retry_after(game):
    answer = await game.client.post_events("mygame", "game_events", [START],
                                           headers={"Origin": "http://localhost:1"})
    assert answer.status == 200
    assert answer.headers["access-control-allow-origin"] == "*"
    assert answer.headers["access-control-expose-headers"] == "Retry-After"


# In Chromium


@pytest_twisted.ensureDeferred
async def test_snippet_events_arrive_when_the_page_is_left(game, pages, browser, sql):
    page = pages.add("shop", page_with(game.client.base_url, """
        attolytics.track("game_events", {timestamp: 1, event_type: "visit"});
        attolytics.track("game_events", {timestamp: 2, event_type: "caf\u00e9 \u2615", score: 7});
        attolytics.track("game_events", {timestamp: 3, event_type: "leave"});"""))
    await in_browser(browser.get, page)
    await sleep(0.5)
    assert rows(sql) == [], "the interval is 5 s: nothing is sent yet while the page is shown"
    await in_browser(browser.get, "about:blank")
    await wait_for(game_events_stored(sql, 3))
    assert rows(sql) == [(1, "visit", None), (2, "caf\u00e9 \u2615", 7), (3, "leave", None)]
    assert await requests_answered(game, "200") == 1, "one beacon carries the three events"
    assert await requests_answered(game, "204") == 0, "a beacon needs no preflight"


@pytest_twisted.ensureDeferred
async def test_without_beacons_leaving_sends_by_keepalive_fetch(game, pages, browser, sql):
    page = pages.add("old", page_with(game.client.base_url, """
        navigator.sendBeacon = function () { return false; };  // as when the beacon quota is used up
        attolytics.track("game_events", {timestamp: 1, event_type: "no beacon"});"""))
    await in_browser(browser.get, page)
    await in_browser(browser.get, "about:blank")
    await wait_for(game_events_stored(sql, 1))
    assert rows(sql) == [(1, "no beacon", None)]
    assert await requests_answered(game, "204") == 0, "text/plain with no-cors needs no preflight"


@pytest_twisted.ensureDeferred
async def test_what_the_beacons_could_not_take_goes_when_the_page_comes_back(game, pages, browser, sql):
    # 140 events of about 400 bytes, under the 60 KB a batch may have: they wait for the interval.
    page = pages.add("bfcache", page_with(game.client.base_url, MORE + "more(1, 140);", interval=60000))
    await in_browser(browser.get, page)
    # A browser keeping the page as it leaves it (back/forward cache); the page tracks 60 more
    # events as it goes, past the 64 KiB that browsers let beacons carry at once.
    await in_browser(browser.execute_script, """
        window.dispatchEvent(new PageTransitionEvent("pagehide", {persisted: true}));
        more(141, 200);""")
    await wait_for(game_events_stored(sql, 140))
    await sleep(0.5)
    beaconed = len(rows(sql))
    assert 140 <= beaconed < 200, beaconed
    # Shown again: what stayed behind goes now, not at the next event or interval.
    await in_browser(browser.execute_script, """
        window.dispatchEvent(new PageTransitionEvent("pageshow", {persisted: true}));""")
    await wait_for(game_events_stored(sql, 200))
    assert [r[0] for r in rows(sql)] == list(range(1, 201))


@pytest_twisted.ensureDeferred
async def test_what_another_page_took_is_not_sent_again_by_a_page_that_comes_back(
        game, pages, browser, sql):
    first = pages.add("first", page_with(game.client.base_url, MORE + "more(1, 140);", interval=60000))
    await in_browser(browser.get, first)
    first_tab = browser.current_window_handle
    # Left for the back/forward cache with more than the beacons take: the rest is kept.
    await in_browser(browser.execute_script, """
        window.dispatchEvent(new PageTransitionEvent("pagehide", {persisted: true}));
        more(141, 200);""")
    await wait_for(game_events_stored(sql, 140))
    # Another page of the site sends what was kept...
    await in_browser(browser.switch_to.new_window, "tab")
    await in_browser(browser.get, pages.add("second", page_with(game.client.base_url, "", interval=60000)))
    await wait_for(game_events_stored(sql, 200))
    # ...so the first, shown again (Back), must not send it a second time.
    await in_browser(browser.close)
    await in_browser(browser.switch_to.window, first_tab)
    await in_browser(browser.execute_script, """
        window.dispatchEvent(new PageTransitionEvent("pageshow", {persisted: true}));
        attolytics.track("game_events", {timestamp: 201, event_type: "after"});
        attolytics.flush();""")
    await wait_for(game_events_stored(sql, 201))
    await sleep(0.5)
    assert [r[0] for r in rows(sql)] == list(range(1, 202))


@pytest_twisted.ensureDeferred
async def test_a_mistake_in_the_script_tag_does_not_break_the_page(game, pages, browser, sql):
    page = pages.add("typo", f"""<!doctype html><title>typo</title>
<script src="{game.client.base_url}/attolytics.js" data-app="mygame" data-key="{SECRET}" data-interval="5s"></script>
<script>window.result = attolytics.track("game_events", {{timestamp: 1, event_type: "x"}});
window.after = "the page's own code still runs";</script>""")
    await in_browser(browser.get, page)
    assert await in_browser(browser.execute_script, "return [window.result, window.after]") == [
        False, "the page's own code still runs"]
    console = [entry["message"] for entry in await in_browser(browser.get_log, "browser")]
    assert any("interval must be a number from 0 to 86400000" in line for line in console), console


@pytest_twisted.ensureDeferred
async def test_hidden_tab_sends_and_the_page_goes_on(game, pages, browser, sql):
    page = pages.add("game", page_with(game.client.base_url, """
        attolytics.track("game_events", {timestamp: 1, event_type: "start"});""", interval=60000))
    await in_browser(browser.get, page)
    first = browser.current_window_handle
    await in_browser(browser.switch_to.new_window, "tab")
    await wait_for(game_events_stored(sql, 1), seconds=10)  # well before the minute's interval
    await in_browser(browser.close)
    await in_browser(browser.switch_to.window, first)
    await in_browser(browser.execute_script, """
        attolytics.track("game_events", {timestamp: 2, event_type: "back"});
        attolytics.flush();""")
    await wait_for(game_events_stored(sql, 2))
    assert rows(sql) == [(1, "start", None), (2, "back", None)]


@pytest_twisted.ensureDeferred
async def test_batches_on_the_interval_never_past_the_body_limit(start, pages, browser, sql):
    running = await start(GAME_CONFIG + "max_body_bytes: 1500\n")
    page = pages.add("many", page_with(running.client.base_url, """
        for (var i = 1; i <= 60; i++) {
          attolytics.track("game_events", {timestamp: i, event_type: "step " + "x".repeat(i)});
        }""", interval=200))
    await in_browser(browser.get, page)
    await wait_for(game_events_stored(sql, 60))
    assert rows(sql) == [(i, "step " + "x" * i, None) for i in range(1, 61)]
    assert await requests_answered(running, "413") == 0
    posts = await requests_answered(running, "200")
    # About 5 KB of events: a few requests at the limit, not one per event.
    assert 4 <= posts <= 8, posts


@pytest_twisted.ensureDeferred
async def test_a_503_is_retried_after_retry_after(start, own_postgres, pages, browser, sql):
    await own_postgres.kill()
    running = await start(url=own_postgres.url, wait=False)
    page = pages.add("retry", page_with(running.client.base_url, """
        attolytics.track("game_events", {timestamp: 1, event_type: "while down"});
        attolytics.flush();""", interval=100))
    await in_browser(browser.get, page)

    async def refused():
        """the service answers 503"""
        return await requests_answered(running, "503") >= 1
    await wait_for(refused)
    await sleep(3)
    assert await requests_answered(running, "503") == 1, "Retry-After is 5 s: no retry before"
    await own_postgres.start()

    async def arrived():
        """the event arrives once PostgreSQL is back"""
        try:
            return own_postgres.count("select count(*) from game_events")[0][0] >= 1
        except psycopg2.errors.UndefinedTable:  # the service has not created it yet
            return False
    await wait_for(arrived, seconds=30)
    assert own_postgres.count("select timestamp, event_type from game_events") == [(1, "while down")]


@pytest_twisted.ensureDeferred
async def test_events_left_while_the_service_is_down_are_sent_by_the_next_page(
        start, own_postgres, pages, browser, sql):
    await own_postgres.kill()
    running = await start(url=own_postgres.url, wait=False)
    page = pages.add("first", page_with(running.client.base_url, """
        attolytics.track("game_events", {timestamp: 1, event_type: "left behind"});
        attolytics.track("game_events", {timestamp: 2, event_type: "left behind"});""", interval=100))
    await in_browser(browser.get, page)

    async def refused():
        """the service answers 503"""
        return await requests_answered(running, "503") >= 1
    await wait_for(refused)
    # Left while the service asks it to wait: the events are kept in the browser, not beaconed.
    await in_browser(browser.get, "about:blank")
    await sleep(0.5)
    assert await requests_answered(running, "503") == 1
    await own_postgres.start()

    async def ready():
        """the service is ready again"""
        return (await running.client.request("GET", "/readyz")).status == 200
    await wait_for(ready, seconds=30)
    # The next page of the same origin sends them, though it tracks nothing itself.
    await in_browser(browser.get, pages.add("second", page_with(running.client.base_url, "")))

    async def arrived():
        """the kept events arrive"""
        return own_postgres.count("select count(*) from game_events")[0][0] >= 2
    await wait_for(arrived)
    await sleep(0.5)
    assert own_postgres.count("select timestamp, event_type from game_events order by 1") == [
        (1, "left behind"), (2, "left behind")]
    kept = await in_browser(browser.execute_script, "return Object.keys(localStorage)")
    assert kept == [], "what was sent is no longer kept"


@pytest_twisted.ensureDeferred
async def test_a_refused_event_is_reported_and_the_others_are_stored(game, pages, browser, sql):
    page = pages.add("bad", page_with_client(game.client.base_url, """
        client.track("game_events", {timestamp: 1, event_type: "good"});
        client.track("game_events", {timestamp: 2, event_type: "bad", score: "lots"});
        client.track("game_events", {timestamp: 3, event_type: "good too"});"""))
    await in_browser(browser.get, page)
    await wait_for(game_events_stored(sql, 2))
    assert rows(sql) == [(1, "good", None), (3, "good too", None)]
    errors = await page_errors(browser)
    assert len(errors) == 1
    assert errors[0]["status"] == 400 and "(field score)" in errors[0]["message"]
    assert errors[0]["events"] == [{"timestamp": 2, "event_type": "bad", "score": "lots", "_t": "game_events"}]


@pytest_twisted.ensureDeferred
async def test_an_event_past_the_body_limit_is_refused_in_the_page(start, pages, browser, sql):
    running = await start(GAME_CONFIG + "max_body_bytes: 300\n")
    page = pages.add("big", page_with_client(running.client.base_url, """
        window.accepted = [
          client.track("game_events", {timestamp: 1, event_type: "x".repeat(400)}),
          client.track("game_events", {timestamp: 2, event_type: "small"}),
        ];"""))
    await in_browser(browser.get, page)
    await wait_for(game_events_stored(sql, 1))
    assert await in_browser(browser.execute_script, "return window.accepted") == [False, True]
    errors = await page_errors(browser)
    assert [e["status"] for e in errors] == [413] and "limit of 300 bytes" in errors[0]["message"]
    assert rows(sql) == [(2, "small", None)]
    assert await requests_answered(running, "413") == 0


@pytest_twisted.ensureDeferred
async def test_a_batch_refused_without_an_event_index_is_split_until_the_culprit_is_alone(
        game, pages, browser, sql):
    sql("ALTER TABLE game_events ADD CHECK (score >= 0)")  # refused by PostgreSQL, not by index
    page = pages.add("split", page_with_client(game.client.base_url, """
        [1, -5, 3, 4, 5].forEach(function (score, i) {
          client.track("game_events", {timestamp: i + 1, event_type: "round", score: score});
        });"""))
    await in_browser(browser.get, page)
    await wait_for(game_events_stored(sql, 4))
    await sleep(0.5)
    assert rows(sql) == [(1, "round", 1), (3, "round", 3), (4, "round", 4), (5, "round", 5)]
    [error] = await page_errors(browser)
    assert error["status"] == 400 and "check constraint" in error["message"]
    assert error["events"] == [{"timestamp": 2, "event_type": "round", "score": -5, "_t": "game_events"}]


@pytest_twisted.ensureDeferred
async def test_a_page_the_app_does_not_allow_is_told_and_stores_nothing(start, pages, browser, sql):
    running = await start(FOREIGN_ONLY)
    page = pages.add("foreign", page_with_client(running.client.base_url, """
        client.track("game_events", {timestamp: 1, event_type: "not here"});"""))
    await in_browser(browser.get, page)

    async def reported():
        """the page is told it cannot reach the service"""
        return any(e["status"] == 0 for e in await page_errors(browser))
    await wait_for(reported)
    assert "does not allow this page's origin" in (await page_errors(browser))[0]["message"]
    assert await requests_answered(running, "204") >= 1, "the preflights were answered, without allowing"
    assert await requests_answered(running, "200") == 0
    assert rows(sql) == []


@pytest_twisted.ensureDeferred
async def test_a_beacon_from_a_page_the_app_does_not_allow_is_refused(start, pages, browser, sql):
    running = await start(FOREIGN_ONLY)
    page = pages.add("leaving", page_with(running.client.base_url, """
        attolytics.track("game_events", {timestamp: 1, event_type: "not here either"});""",
        interval=60000))
    await in_browser(browser.get, page)
    await in_browser(browser.get, "about:blank")

    async def refused():
        """the beacon sent on leaving is refused"""
        return await requests_answered(running, "403") >= 1
    await wait_for(refused)
    assert await requests_answered(running, "204") == 0, "a beacon needs no preflight"
    assert rows(sql) == []


# Event ids: a uuid `unique` column


@pytest_twisted.ensureDeferred
async def test_tracked_events_get_uuid7_ids_in_order_and_an_id_the_page_set_is_kept(
        start, pages, browser, sql):
    running = await start(IDS_CONFIG)
    own = str(uuid.uuid4())
    page = pages.add("ids", page_with(running.client.base_url, f"""
        var own = {{timestamp: 0, event_type: "own id", id: "{own}"}};
        attolytics.track("game_events", own);
        var plain = {{timestamp: 1, event_type: "tracked"}};
        attolytics.track("game_events", plain);
        for (var i = 2; i <= 30; i++) {{
          attolytics.track("game_events", {{timestamp: i, event_type: "tracked"}});
        }}
        attolytics.track("game_events", {{timestamp: 31, event_type: "no id", id: null}});
        attolytics.track("game_events", {{timestamp: 32, event_type: "undefined", id: undefined}});
        attolytics.track("visits", {{code: "a"}});
        window.untouched = own.id === "{own}" && !("id" in plain);
        attolytics.flush();""", interval=100))
    before = time.time() * 1000
    await in_browser(browser.get, page)
    after = time.time() * 1000
    await wait_for(game_events_stored(sql, 33))
    assert await in_browser(browser.execute_script, "return window.untouched") is True, \
        "the page's own objects are not changed"
    found = ids(sql)
    assert found[0] == (0, "own id", own), "an id the page set is kept as it is"
    assert found[31] == (31, "no id", None), "an id the page set to null stays null"
    made = [id for _, _, id in found[1:31] + found[32:]]
    assert len(set(made)) == 31
    assert made == sorted(made), "ids increase in the order the page tracked"
    for id in made:
        assert before - 1000 <= uuid7_ms(id) <= after + 1000
    assert sql("select ref, code from visits") == [(None, "a")], "visits has no event id"


@pytest_twisted.ensureDeferred
async def test_ids_increase_within_a_millisecond_and_when_the_clock_goes_back(start, pages, browser):
    running = await start(IDS_CONFIG)
    # Read as each event is tracked: nothing is sent before the script's task ends.
    page = pages.add("clock", page_with_client(running.client.base_url, """
        var made = [];
        function track(n) {
          for (var i = 0; i < n; i++) {
            client.track("game_events", {timestamp: i, event_type: "x"});
            made.push(client.queue[client.queue.length - 1].event.id);
          }
        }
        var realNow = Date.now;
        Date.now = function () { return 1700000000000; };
        track(5000);  // more than the 4096 a 12-bit counter holds
        Date.now = function () { return 1699999999000; };
        track(10);
        Date.now = function () { return 1700000001000; };
        track(10);
        Date.now = realNow;
        window.made = made;""", interval=60000))
    await in_browser(browser.get, page)
    made = await in_browser(browser.execute_script, "return window.made")
    assert len(made) == 5020 and len(set(made)) == 5020
    assert made == sorted(made), "each id is greater than the one before"
    stamps = [uuid7_ms(id) for id in made]
    assert stamps[0] == 1700000000000
    assert 1700000000001 <= stamps[4999] <= 1700000000002, "a used-up counter borrows the next millisecond"
    assert stamps[5000:5010] == [stamps[4999]] * 10, "the clock going back does not take the ids back"
    assert stamps[5010:] == [1700000001000] * 10
    counters = [uuid.UUID(id).int >> 64 & 0xfff for id in made[5010:]]
    assert counters[0] < 2048 and counters == list(range(counters[0], counters[0] + 10))


@pytest_twisted.ensureDeferred
async def test_without_crypto_random_values_events_go_without_an_id(start, pages, browser, sql):
    running = await start(IDS_CONFIG)
    page = pages.add("nocrypto", page_with(running.client.base_url, """
        delete Crypto.prototype.getRandomValues;  // as in a browser without it
        attolytics.track("game_events", {timestamp: 1, event_type: "no id"});
        attolytics.flush();""", interval=100))
    await in_browser(browser.get, page)
    await wait_for(game_events_stored(sql, 1))
    assert ids(sql) == [(1, "no id", None)]


# A page script: record each POST the client makes, its body, status and answer, in window.posts.
RECORD_POSTS = """
    window.posts = [];
    var realFetch = window.fetch;
    window.fetch = function (url, init) {
      var post = {body: init.body};
      posts.push(post);
      return realFetch.apply(this, arguments).then(function (response) {
        post.status = response.status;
        response.clone().text().then(function (text) { post.answer = text; });
        return response;
      });
    };
"""


@pytest_twisted.ensureDeferred
async def test_a_batch_answered_503_of_unknown_outcome_and_resent_is_stored_once(
        start, database_url, pages, browser, sql):
    # The writer gives up on PostgreSQL after 1 s, answering 503 "may or may not be stored".
    running = await start(IDS_CONFIG + "writer: {flush_timeout: 1}\n")
    assert running.fatal == []

    def waiting_inserts():
        # From a connection of its own: pg_stat_activity stays as it was within a transaction.
        return query(database_url, "select query from pg_stat_activity where datname = "
                                   "current_database() and wait_event_type = 'Lock'")

    # The table locked: the batch's INSERT reaches PostgreSQL and waits there.
    sql("begin")
    try:
        sql("lock table game_events in access exclusive mode")
        page = pages.add("unknown", page_with_client(running.client.base_url, RECORD_POSTS + """
            client.track("game_events", {timestamp: 1, event_type: "start"});
            client.track("game_events", {timestamp: 2, event_type: "level", score: 3});
            client.track("game_events", {timestamp: 3, event_type: "end", score: 42});
            client.flush();"""))
        await in_browser(browser.get, page)

        async def refused():
            """the service answers 503"""
            return await requests_answered(running, "503") >= 1
        await wait_for(refused)
        [(waiting,)] = waiting_inserts()
        assert 'INSERT INTO "game_events"' in waiting, waiting
    finally:
        sql("commit")
    # The lock gone, the INSERT the service gave up on commits: the 503 was of unknown outcome.
    await wait_for(lambda: len(ids(sql)) == 3, what="the first send's rows are committed")
    assert await requests_answered(running, "200") == 0, "the resend waits for Retry-After"

    async def resent():
        """the client sends the batch again after Retry-After (5 s)"""
        return await requests_answered(running, "200") >= 1
    await wait_for(resent, seconds=30)
    await sleep(0.3)
    posts = await in_browser(browser.execute_script, "return window.posts")
    assert posts[0]["status"] == 503  # the writer's timeout, while its INSERT was waiting
    assert posts[-1]["status"] == 200
    assert json.loads(posts[-1]["answer"]) == {"inserted": 0, "duplicates": 3}
    assert all(post["body"] == posts[0]["body"] for post in posts), "sent again unchanged"
    assert await page_errors(browser) == [], "events stored already count as stored"
    sent = [event["id"] for event in json.loads(posts[0]["body"])["events"]]
    assert sql("select id::text, count(*) from game_events group by id order by id") == [
        (id, 1) for id in sorted(sent)]
    assert [row[:2] for row in ids(sql)] == [(1, "start"), (2, "level"), (3, "end")]
    metrics = await scrape(running.client)
    assert value(metrics, "attolytics_events_duplicate_total", app="mygame", table="game_events") == 3


@pytest_twisted.ensureDeferred
async def test_an_event_type_the_app_does_not_have_is_refused_in_the_page(game, pages, browser, sql):
    page = pages.add("unknown-type", page_with_client(game.client.base_url, """
        window.accepted = [
          client.track("no_such_type", {timestamp: 1, event_type: "lost"}),
          client.track("game_events", {timestamp: 2, event_type: "kept"}),
        ];"""))
    await in_browser(browser.get, page)
    await wait_for(game_events_stored(sql, 1))
    assert await in_browser(browser.execute_script, "return window.accepted") == [False, True]
    [error] = await page_errors(browser)
    assert error["status"] == 404 and 'has no event type "no_such_type"' in error["message"]
    assert error["events"] == [{"timestamp": 1, "event_type": "lost", "_t": "no_such_type"}]
    assert rows(sql) == [(2, "kept", None)]
    assert await requests_answered(game, "404") == 0, "nothing was sent for it"
