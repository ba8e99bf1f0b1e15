"""The browser client within the service's limits, in a real headless Chromium: batches split
below max_events_per_request, a 429 waited out as its Retry-After asks, and the visitor's opt-out
(Do Not Track, Global Privacy Control) honoured when the page asks."""

import json

import pytest
import pytest_twisted

from support.browser import AccessLog, chromium, game_events_stored, in_browser, page_with_client
from support.configs import GAME_CONFIG, SECRET
from support.metrics import scrape
from support.waiting import sleep, wait_for

pytestmark = pytest.mark.browser

ROUTE = "/apps/{app}/events"
# The game_events app, whose rate limit takes 5 events at once and 2 more each second.
RATE_LIMITED = GAME_CONFIG.replace(
    "    event_types:", "    rate_limit: {events_per_second: 2, burst: 5}\n    event_types:")
# An event an earlier page of the site left in localStorage, as the client keeps it.
EARLIER = json.dumps({"timestamp": 0, "event_type": "left by an earlier page", "_t": "game_events"})
# Chromium's own switch for Global Privacy Control: navigator.globalPrivacyControl is true.
GPC_ON = "--enable-features=GlobalPrivacyControlForce"
# Only if a Chromium no longer knows that switch: the same, set before any script of a page runs.
GPC_DEFINED = """Object.defineProperty(Navigator.prototype, "globalPrivacyControl",
                                       {get: function () { return true; }, configurable: true});"""

# A page script: its client tracks 10 events, (1, "step") to (10, "step").
TEN_STEPS = """
    for (var i = 1; i <= 10; i++) {
      client.track("game_events", {timestamp: i, event_type: "step"});
    }"""
# A page script: record each POST the client makes in window.posts: when it was made and
# answered (performance.now() ms), its body, its status and Retry-After.
TIMED_POSTS = """
    window.posts = [];
    var realFetch = window.fetch;
    window.fetch = function (url, init) {
      var post = {sentAt: performance.now(), body: init.body};
      posts.push(post);
      return realFetch.apply(this, arguments).then(function (response) {
        post.answeredAt = performance.now();
        post.status = response.status;
        post.retryAfter = response.headers.get("Retry-After");
        return response;
      });
    };
"""


@pytest.fixture(scope="module", params=["do not track", "global privacy control"])
def opted_out(request):
    """Chromium whose visitor opted out, one way or the other; with [navigator.doNotTrack,
    navigator.globalPrivacyControl] as its pages see them."""
    if request.param == "do not track":
        with chromium(prefs={"enable_do_not_track": True}) as driver:
            yield driver, ["1", None]
        return
    with chromium([GPC_ON]) as driver:
        driver.get("about:blank")
        if driver.execute_script("return navigator.globalPrivacyControl") is not True:
            driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": GPC_DEFINED})
        yield driver, [None, True]


@pytest.fixture
def access_log():
    with AccessLog() as log:
        yield log


def opt_out_page(service: str, asks: str, option: str) -> str:
    """A page of a site where an earlier page left an event in localStorage. It tracks one event
    with the client its script tag makes (the tag given `asks`, such as ' data-respect-dnt'), and
    one with a client of its own (given `option`, such as 'respectDoNotTrack: true'), in
    window.tracked; window.preference is what the browser says of the visitor's opt-out."""
    kept = json.dumps(f"attolytics:{service}/apps/mygame/events:earlier")
    return f"""<!doctype html><meta charset="utf-8"><title>a page</title>
<script>localStorage.setItem({kept}, JSON.stringify([{json.dumps(EARLIER)}]));</script>
<script src="{service}/attolytics.js" data-app="mygame" data-key="{SECRET}" data-interval="100"{asks}></script>
<script>
  var own = attolytics.client({{app: "mygame", key: "{SECRET}", interval: 100, {option}}});
  window.preference = [navigator.doNotTrack, navigator.globalPrivacyControl];
  window.tracked = [attolytics.track("game_events", {{timestamp: 1, event_type: "the tag's client"}}),
                    own.track("game_events", {{timestamp: 2, event_type: "the page's client"}})];
  attolytics.flush();
  own.flush();
</script>"""


ALL_THREE = [(0, "left by an earlier page"), (1, "the tag's client"), (2, "the page's client")]


def rows(sql):
    return sql("select timestamp, event_type from game_events order by timestamp")


async def requests_to_the_route(running) -> float:
    """Requests answered on the route the client posts to, whatever their status."""
    metrics = await scrape(running.client)
    return sum(count for (name, labels), count in metrics.items()
               if name == "attolytics_requests_total" and ("route", ROUTE) in labels)


# The cap on the events of a request


@pytest_twisted.ensureDeferred
async def test_script_is_served_with_the_event_cap(start):
    capped = await start(GAME_CONFIG + "max_events_per_request: 7\n")
    body = (await capped.client.request("GET", "/attolytics.js")).body
    assert b"var MAX_EVENTS_PER_REQUEST = 7;" in body
    assert b"__MAX_EVENTS_PER_REQUEST__" not in body
    assert b"var EVENTS_AT_ONCE = {};" in body
    default = await start(GAME_CONFIG)
    assert b"var MAX_EVENTS_PER_REQUEST = 10000;" in (await default.client.request("GET", "/attolytics.js")).body
    # The burst of an app whose rate limit takes fewer events at once than the cap (6), not of one
    # that takes more.
    limited = await start(RATE_LIMITED.replace("  - app_id: mygame", "  - app_id: big\n    app_secret_key: k\n"
                                               "    rate_limit: {events_per_second: 1, burst: 7}\n"
                                               "    event_types: [{event_type_id: game_events}]\n"
                                               "  - app_id: mygame") + "max_events_per_request: 6\n")
    body = (await limited.client.request("GET", "/attolytics.js")).body
    assert b'var EVENTS_AT_ONCE = {"mygame": 5};' in body


# Two ways a request may carry at most 3 events: the service's cap, or the app's burst (refilled
# in 3 microseconds, so that no request of the test meets a 429).
AT_MOST_3 = [GAME_CONFIG + "max_events_per_request: 3\n",
             GAME_CONFIG.replace("    event_types:", "    rate_limit: {events_per_second: 1000000, burst: 3}\n"
                                                     "    event_types:")]


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("config", AT_MOST_3, ids=["max_events_per_request", "burst"])
async def test_batches_are_split_below_the_event_cap(start, pages, browser, sql, access_log, config):
    running = await start(config)
    page = pages.add("many", page_with_client(running.client.base_url, TEN_STEPS, interval=60000))
    await in_browser(browser.get, page)
    # Each full batch of 3 goes at once, one request at a time; the 10th waits for the interval.
    await wait_for(game_events_stored(sql, 9))
    await sleep(0.5)
    assert rows(sql) == [(i, "step") for i in range(1, 10)]
    await in_browser(browser.execute_script, "client.flush();")
    await wait_for(game_events_stored(sql, 10))
    await sleep(0.3)
    assert rows(sql) == [(i, "step") for i in range(1, 11)]
    assert await in_browser(browser.execute_script, "return window.errors") == []
    # A request of more than 3 would be answered 413 (and then split in halves by the client).
    posts = access_log.posts(ROUTE)
    assert [(post["status"], post["events"]) for post in posts] == [(200, 3), (200, 3), (200, 3), (200, 1)]


@pytest_twisted.ensureDeferred
async def test_beacons_as_the_page_is_left_keep_below_the_event_cap(start, pages, browser, sql, access_log):
    running = await start(GAME_CONFIG + "max_events_per_request: 3\n")
    page = pages.add("leaving", page_with_client(running.client.base_url, TEN_STEPS, interval=60000))
    await in_browser(browser.get, page)
    await in_browser(browser.get, "about:blank")
    await wait_for(game_events_stored(sql, 10))
    await sleep(0.3)
    assert rows(sql) == [(i, "step") for i in range(1, 11)]
    posts = access_log.posts(ROUTE)
    assert sorted(post["events"] for post in posts) == [1, 3, 3, 3]
    assert {post["status"] for post in posts} == {200}


# A 429: the app's rate limit


@pytest_twisted.ensureDeferred
async def test_a_429_is_sent_again_after_retry_after(start, pages, browser, sql, access_log):
    running = await start(RATE_LIMITED)
    assert running.fatal == []
    page = pages.add("limited", page_with_client(running.client.base_url, TIMED_POSTS + """
        for (var i = 1; i <= 4; i++) {
          client.track("game_events", {timestamp: i, event_type: "from the page"});
        }""", interval=60000))
    await in_browser(browser.get, page)
    # 4 events are less than a full batch (the burst, 5): they wait for the interval. Another
    # client of the app takes the whole burst; at once, the page sends its 4 events.
    drained = await running.client.post_events(
        "mygame", "game_events", [{"timestamp": 100 + i, "event_type": "drain"} for i in range(1, 6)])
    assert drained.status == 200
    await in_browser(browser.execute_script, "client.flush();")
    await wait_for(game_events_stored(sql, 9), seconds=15)
    await sleep(0.3)
    assert [r[0] for r in rows(sql)] == [1, 2, 3, 4, 101, 102, 103, 104, 105], "none lost, none twice"
    assert await in_browser(browser.execute_script, "return window.errors") == [], "a 429 is no refusal"
    posts = await in_browser(browser.execute_script, "return window.posts")
    assert [post["status"] for post in posts] == [429, 200]
    wait = int(posts[0]["retryAfter"])
    assert 1 <= wait <= 2, wait  # the 4 events wanted 2 s of the bucket's refill, at most
    assert posts[1]["body"] == posts[0]["body"], "the same events, sent again unchanged"
    assert posts[1]["sentAt"] - posts[0]["answeredAt"] >= 1000 * wait, "not sent again before Retry-After"
    # The service saw the same: one 429 (a resend too soon would have met another), then a 200
    # at least Retry-After later.
    refused, accepted = access_log.posts(ROUTE)
    assert (refused["status"], refused["events"], accepted["status"], accepted["events"]) == (429, 4, 200, 4)
    assert accepted["time"] - refused["time"] >= wait - 0.05


# The visitor's opt-out: Do Not Track, Global Privacy Control


@pytest_twisted.ensureDeferred
async def test_a_page_that_asks_sends_nothing_when_the_visitor_opted_out(game, pages, opted_out, sql, access_log):
    browser, preference = opted_out
    page = pages.add("private", opt_out_page(game.client.base_url, " data-respect-dnt", "respectDoNotTrack: true"))
    await in_browser(browser.get, page)
    assert await in_browser(browser.execute_script, "return window.preference") == preference
    assert await in_browser(browser.execute_script, "return window.tracked") == [False, False]
    # Left for the back/forward cache: still nothing sent, nothing kept.
    kept = await in_browser(browser.execute_script, """
        window.dispatchEvent(new PageTransitionEvent("pagehide", {persisted: true}));
        var kept = {};
        for (var i = 0; i < localStorage.length; i++) {
          kept[localStorage.key(i)] = localStorage.getItem(localStorage.key(i));
        }
        return kept;""")
    earlier = f"attolytics:{game.client.base_url}/apps/mygame/events:earlier"
    assert kept == {earlier: json.dumps([EARLIER])}, "what an earlier page left is neither sent nor removed"
    await in_browser(browser.get, "about:blank")  # left: no beacon either
    await sleep(1)
    assert rows(sql) == []
    assert [line for line in access_log.lines if line["route"] == ROUTE] == [], "not even a preflight"
    assert await requests_to_the_route(game) == 0


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("asks, option", [("", ""), (' data-respect-dnt="false"', "respectDoNotTrack: false")])
async def test_without_the_page_asking_an_opt_out_changes_nothing(game, pages, opted_out, sql, asks, option):
    browser, preference = opted_out
    page = pages.add("usual", opt_out_page(game.client.base_url, asks, option))
    await in_browser(browser.get, page)
    assert await in_browser(browser.execute_script, "return window.preference") == preference
    assert await in_browser(browser.execute_script, "return window.tracked") == [True, True]
    await wait_for(game_events_stored(sql, 3))
    assert rows(sql) == ALL_THREE


@pytest_twisted.ensureDeferred
async def test_a_page_that_asks_sends_as_usual_without_an_opt_out(game, pages, browser, sql):
    page = pages.add("asks", opt_out_page(game.client.base_url, " data-respect-dnt", "respectDoNotTrack: true"))
    await in_browser(browser.get, page)
    assert await in_browser(browser.execute_script, "return window.preference") == [None, None]
    assert await in_browser(browser.execute_script, "return window.tracked") == [True, True]
    await wait_for(game_events_stored(sql, 3))
    assert rows(sql) == ALL_THREE
