"""Segment's and RudderStack's browser SDKs (@segment/analytics-next, @rudderstack/analytics-js),
pinned in tests/js, in a real headless Chromium: a page of another origin loads the SDK, which
loads its settings from the service, then sends the browser's calls (a track of a typed event and
one of another, identify, page, group, alias; screen is no browser call), one a request or in
batches, and again when an answer is lost. Each call is then one row of its table in PostgreSQL,
checked column by column, and the typed track one row of its typed table too."""

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest
import pytest_twisted

from support.browser import AccessLog, console_lines, in_browser
from support.configs import segment_config
from support.twistd import REPO
from support.waiting import wait_for

pytestmark = pytest.mark.browser

WRITE_KEY = "browser-sdk-write-key-2024"
SCHEMA = "mygame"
# The versions tests/js pins, as each SDK names itself in a message's context.
PINNED = json.loads((REPO / "tests" / "js" / "package.json").read_text())["dependencies"]
SEGMENT_LIBRARY = {"name": "analytics.js", "version": f"next-{PINNED['@segment/analytics-next']}"}
RUDDER_LIBRARY = {"name": "RudderLabs JavaScript SDK", "version": PINNED["@rudderstack/analytics-js"],
                  "variant": "bundled"}
# Each SDK's browser build, under tests/js/node_modules: analytics-next's UMD bundle (the global
# AnalyticsNext), and RudderStack's build with its plugins inside (the global rudderanalytics), so
# that neither fetches anything from a CDN.
SEGMENT_BUNDLE = "@segment/analytics-next/dist/umd/index.js"
RUDDER_BUNDLE = "@rudderstack/analytics-js/dist/npm/modern/bundled/umd/index.js"

# What the SDKs ask a preflight to allow (seen in Chromium): analytics-next its key, and on a
# resend its count; RudderStack its key, anonymous id, sending time, and on a resend its retry's
# particulars (Rsa-Recovered for what it kept in localStorage across a reload).
SEGMENT_HEADERS = ["authorization", "x-retry-count"]
RUDDER_HEADERS = ["anonymousid", "authorization", "content-type", "rsa-recovered", "rsa-retry-attempt",
                  "rsa-retry-reason", "rsa-since-first-attempt", "rsa-since-last-attempt", "sentat"]

# The paths each SDK posts CALLS to, one a call: analytics-next the short forms, RudderStack the names.
SEGMENT_PATHS = ["/v1/t", "/v1/a", "/v1/i", "/v1/t", "/v1/p", "/v1/g"]
RUDDER_PATHS = ["/v1/track", "/v1/alias", "/v1/identify", "/v1/track", "/v1/page", "/v1/group"]

CALL_TABLES = ("tracks", "identifies", "pages", "groups", "aliases")
COMMON = "id, anonymous_id, user_id, received_at, sent_at, original_timestamp, timestamp, context"


def sdk_config(origin: str) -> str:
    """A map-form app whose Segment intake takes pages of `origin`, Level Completed tracks also
    going to a typed table (with the anonymous id too)."""
    return segment_config(WRITE_KEY, SCHEMA, app_lines=f"    access_control_allow_origin: [{origin}]\n",
                          columns="      - {name: anonymous_id, type: text}\n")


# The calls a page makes, in this order, each after the one before has been handed over, so that
# the ids each is sent with are known: the alias comes before the identify, since analytics-next
# gives every call the id of the user known at the time, its alias's userId too.
CALLS = [
    ("typed", "track", ["Level Completed", {"levelNumber": 3, "score": 1200, "stars": 2}]),
    ("alias", "alias", ["player-2", "player-1"]),
    ("identify", "identify", ["player-2", {"email": "ann@example.com", "plan": "free"}]),
    ("track", "track", ["Item Bought", {"item": "sword", "price": 9.5}]),
    ("page", "page", ["Levels", "Level 3", {"difficulty": "hard"}]),
    ("group", "group", ["team-7", {"name": "The Sevens", "size": 7}]),
]
PAGE_TITLE = "a level"


def segment_page(sdks: str, service: str, load_options: dict | None = None, prelude: str = "") -> str:
    """A page that runs `prelude`, loads analytics-next with its settings from `service`, then
    makes CALLS, keeping each call's messageId in window.sent[name] and the anonymous id in
    window.sent.anonymousId."""
    return f"""<!doctype html><meta charset="utf-8"><title>{PAGE_TITLE}</title>
<script>{prelude}</script>
<script src="{sdks}/{SEGMENT_BUNDLE}"></script>
<script>
  window.sent = {{}}; window.failures = [];
  var analytics = AnalyticsNext.AnalyticsBrowser.load(
    {{writeKey: {json.dumps(WRITE_KEY)}, cdnURL: {json.dumps(service)}}}, {json.dumps(load_options or {})});
  var calls = {json.dumps(CALLS)};
  function call(i) {{
    if (i === calls.length) {{
      return analytics.user().then(function (user) {{ sent.anonymousId = user.anonymousId(); }});
    }}
    var name = calls[i][0], method = calls[i][1], args = calls[i][2];
    return analytics[method].apply(analytics, args).then(function (context) {{
      sent[name] = context.event.messageId;
      return call(i + 1);
    }});
  }}
  call(0).catch(function (error) {{ failures.push(String(error)); }});
</script>"""


def rudder_page(sdks: str, service: str, load_options: dict | None = None, prelude: str = "") -> str:
    """A page that runs `prelude`, loads RudderStack's SDK with its source configuration from
    `service`, then makes CALLS, each after the one before has been queued, keeping what
    segment_page keeps."""
    options = {"configUrl": service, **(load_options or {})}
    return f"""<!doctype html><meta charset="utf-8"><title>{PAGE_TITLE}</title>
<script>{prelude}</script>
<script src="{sdks}/{RUDDER_BUNDLE}"></script>
<script>
  window.sent = {{}}; window.failures = [];
  var rudder = new rudderanalytics.RudderAnalytics();
  rudder.load({json.dumps(WRITE_KEY)}, {json.dumps(service)}, {json.dumps(options)});
  var calls = {json.dumps(CALLS)};
  function call(i) {{
    if (i === calls.length) {{ sent.anonymousId = rudder.getAnonymousId(); return; }}
    var name = calls[i][0], method = calls[i][1], args = calls[i][2].slice();
    // Options (none), then the callback, which RudderStack calls with the event once it is queued.
    args.push({{}}, function (event) {{ sent[name] = event.messageId; call(i + 1); }});
    rudder[method].apply(rudder, args);
  }}
  call(0);
</script>"""


def losing_fetch_answer(path: str) -> str:
    """A page's script that loses the answer to its first POST to `path` (analytics-next sends
    with fetch): the request reaches the service, the page sees a network error, as when a
    connection drops on the way back."""
    return f"""
  window.lost = [];
  var fetchAsBrowsers = window.fetch.bind(window);
  window.fetch = function (url, init) {{
    var post = ((init && init.method) || "").toUpperCase() === "POST";
    return fetchAsBrowsers(url, init).then(function (answer) {{
      if (post && String(url).endsWith({json.dumps(path)}) && lost.length === 0) {{
        lost.push(String(url));
        throw new TypeError("Failed to fetch");
      }}
      return answer;
    }});
  }};"""


def losing_xhr_answer(path: str) -> str:
    """losing_fetch_answer for RudderStack's SDK, which sends with XMLHttpRequest: the first POST
    to `path` is answered, and the page is told of an error instead of the answer."""
    return f"""
  window.lost = [];
  var openAsBrowsers = XMLHttpRequest.prototype.open, sendAsBrowsers = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.open = function (method, url) {{
    this.posted = method.toUpperCase() === "POST" ? String(url) : null;
    return openAsBrowsers.apply(this, arguments);
  }};
  XMLHttpRequest.prototype.send = function () {{
    if (this.posted && this.posted.endsWith({json.dumps(path)}) && lost.length === 0) {{
      lost.push(this.posted);
      var failed = this.onerror;
      this.onload = function (event) {{ failed.call(this, event); }};
    }}
    return sendAsBrowsers.apply(this, arguments);
  }};"""


def now() -> datetime:
    return datetime.now(timezone.utc)


def count_rows(sql) -> int:
    return sum(sql(f"select count(*) from {SCHEMA}.{table}")[0][0] for table in CALL_TABLES)


async def forget_the_user(browser) -> None:
    """Clear the browser's cookies, where both SDKs keep the user's ids: cookies are the host's,
    whatever its port, so an earlier test's page would otherwise lend the page its user."""
    await in_browser(browser.execute_cdp_cmd, "Network.clearBrowserCookies", {})
    await in_browser(console_lines, browser)  # what earlier pages wrote


async def sent_by(browser, page: str, sql, expected: int) -> dict:
    """Open `page`, wait for `expected` rows in the call tables and for the page to have made all
    its calls: what it kept (messageIds by call, the anonymous id). On a timeout, the assertion
    shows what the page wrote to its console (CORS refusals show there)."""
    await forget_the_user(browser)
    await in_browser(browser.get, page)

    async def arrived():
        """the calls arrive in PostgreSQL"""
        sent = await in_browser(browser.execute_script, "return window.sent")
        return count_rows(sql) >= expected and sent is not None and "anonymousId" in sent

    try:
        await wait_for(arrived, seconds=20)
    except AssertionError as error:
        lines = await in_browser(console_lines, browser)
        failures = await in_browser(browser.execute_script, "return window.failures")
        raise AssertionError(f"{error}; {count_rows(sql)} rows; page failures {failures}; console:\n"
                             + "\n".join(lines)) from None
    assert count_rows(sql) == expected, "no call arrives twice"
    return await in_browser(browser.execute_script, "return window.sent")


def check_posts(log: AccessLog, paths: list[str]) -> None:
    """The SDK posted once to each of `paths` (in any order), one message a post, each stored:
    none refused, none resent."""
    posts = [line for line in log.lines if line["method"] == "POST"]
    assert sorted((line["path"], line["status"], line["events"]) for line in posts) == sorted(
        (path, 200, 1) for path in paths)


def check_batches(log: AccessLog, path: str, size: int) -> None:
    """The SDK posted all CALLS to `path` in batches of at most `size`, some holding several,
    each stored: none refused, none resent."""
    posts = [line for line in log.lines if line["method"] == "POST"]
    assert {(line["path"], line["status"]) for line in posts} == {(path, 200)}
    sizes = [line["events"] for line in posts]
    assert sum(sizes) == len(CALLS) and max(sizes) <= size and len(sizes) < len(CALLS), sizes


def call_rows(sql, table: str, columns: str = "") -> list[dict]:
    """The rows of a call table (common columns, then `columns`), by original timestamp, as dicts."""
    listed = COMMON + (f", {columns}" if columns else "")
    names = [name.strip() for name in listed.split(",")]
    rows = sql(f"select {listed} from {SCHEMA}.{table} order by original_timestamp")
    return [dict(zip(names, row)) for row in rows]


def check_common(row: dict, message_id: str, anonymous_id: str, user_id: str | None, library: dict,
                 page: str, before: datetime, after: datetime, batch_sent_at: bool = False) -> None:
    """The columns every call table has, as the SDK on `page` sent them between `before` and `after`."""
    assert row["id"] == message_id
    assert row["anonymous_id"] == anonymous_id
    assert row["user_id"] == user_id
    assert before <= row["received_at"] <= after
    # The browser's clock is the service's: the corrected time is close to the time the call was made.
    slack = timedelta(seconds=2)
    assert before - slack <= row["original_timestamp"] <= row["sent_at"] <= after + slack
    assert abs(row["timestamp"] - row["original_timestamp"]) < slack
    assert row["timestamp"] - row["received_at"] == row["original_timestamp"] - row["sent_at"]
    assert row["context"]["library"] == library
    assert row["context"]["page"]["url"] == page
    assert row["context"]["userAgent"].startswith("Mozilla/5.0")


def check_calls(sql, sent: dict, library: dict, page: str, before: datetime, after: datetime,
                unknown_user: str | None = None) -> None:
    """Every table's rows, for a page that made CALLS and sent `sent`; the user id of a call
    before any identify is `unknown_user`, as the SDK sent it (analytics-next null, RudderStack "")."""
    anonymous_id = sent["anonymousId"]
    assert anonymous_id
    common = dict(anonymous_id=anonymous_id, library=library, page=page, before=before, after=after)

    typed_track, track = call_rows(sql, "tracks", "event, event_text, properties")
    check_common(typed_track, sent["typed"], user_id=unknown_user, **common)
    assert (typed_track["event"], typed_track["event_text"]) == ("level_completed", "Level Completed")
    assert typed_track["properties"] == {"stars": 2}, "the typed table took levelNumber and score"
    check_common(track, sent["track"], user_id="player-2", **common)
    assert (track["event"], track["event_text"]) == ("item_bought", "Item Bought")
    assert track["properties"] == {"item": "sword", "price": 9.5}

    [typed] = sql("select id, anonymous_id, user_id, timestamp, level_number, score from level_completed")
    assert typed == (sent["typed"], anonymous_id, unknown_user, typed_track["timestamp"], 3, 1200)

    [alias] = call_rows(sql, "aliases", "previous_id")
    check_common(alias, sent["alias"], user_id="player-2", **common)
    assert alias["previous_id"] == "player-1"

    [identify] = call_rows(sql, "identifies", "traits")
    check_common(identify, sent["identify"], user_id="player-2", **common)
    assert identify["traits"] == {"email": "ann@example.com", "plan": "free"}

    [shown] = call_rows(sql, "pages", "name, category, properties")
    check_common(shown, sent["page"], user_id="player-2", **common)
    assert (shown["name"], shown["category"]) == ("Level 3", "Levels")
    # Both SDKs add the page's own properties, and repeat the name and category there.
    properties = shown["properties"]
    assert properties["difficulty"] == "hard"
    assert (properties["name"], properties["category"]) == ("Level 3", "Levels")
    assert (properties["url"], properties["title"]) == (page, PAGE_TITLE)

    [group] = call_rows(sql, "groups", "group_id, traits")
    check_common(group, sent["group"], user_id="player-2", **common)
    assert group["group_id"] == "team-7"
    assert group["traits"] == {"name": "The Sevens", "size": 7}


# What the service answers the SDKs before they send


@pytest_twisted.ensureDeferred
async def test_analytics_next_settings_send_every_call_to_the_service(start, pages):
    running = await start(sdk_config(pages.origin))
    answer = await running.client.request(
        "GET", f"/v1/projects/{WRITE_KEY}/settings", headers={"Origin": pages.origin})
    assert answer.status == 200
    assert answer.headers["access-control-allow-origin"] == pages.origin
    settings = answer.json()
    # Only its Segment.io destination: one more would make analytics-next fetch its
    # ajs-destination bundle from Segment's CDN, which the page cannot reach.
    [(name, segment_io)] = settings["integrations"].items()
    assert name == "Segment.io"
    # It posts to {protocol}://{apiHost}/{t,i,p,g,a,s,b}, with apiKey as the writeKey.
    assert segment_io["apiHost"] == f"127.0.0.1:{running.port}/v1"
    assert segment_io["protocol"] == "http"
    assert segment_io["apiKey"] == WRITE_KEY
    for chunk_loader in ("remotePlugins", "enabledMiddleware"):
        assert not settings.get(chunk_loader)
    assert not settings.get("legacyVideoPluginsEnabled")
    assert not (settings.get("middlewareSettings") or {}).get("routingRules")


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("path", ["/sourceConfig/", "/sourceConfig"])
async def test_rudderstack_source_config_is_an_enabled_source_without_destinations(start, pages, path):
    running = await start(sdk_config(pages.origin))
    # As RudderStack's SDK asks: configUrl + /sourceConfig/, its key in the query and as Basic
    # auth, after a preflight for the Authorization header.
    query = (f"?p=npm&v={PINNED['@rudderstack/analytics-js']}&build=modern&writeKey={WRITE_KEY}"
             "&lockIntegrationsVersion=true&lockPluginsVersion=true")
    preflight = await running.client.request("OPTIONS", path + query, headers={
        "Origin": pages.origin, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})
    assert preflight.status in (200, 204)
    assert preflight.headers["access-control-allow-origin"] == pages.origin
    assert "GET" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in allowed(preflight.headers["access-control-allow-headers"])
    basic = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    answer = await running.client.request("GET", path + query, headers={
        "Origin": pages.origin, "Authorization": basic, "Accept": "application/json"})
    assert answer.status == 200
    assert answer.headers["access-control-allow-origin"] == pages.origin
    source = answer.json()["source"]
    assert source["id"] is not None and source["enabled"] is not False
    assert source["config"] == {} and source["destinations"] == []


def allowed(header: str) -> set[str]:
    return {name.strip().lower() for name in header.split(",")}


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("route, headers", [
    ("/v1/t", SEGMENT_HEADERS), ("/v1/b", SEGMENT_HEADERS),
    ("/v1/track", RUDDER_HEADERS), ("/v1/batch", RUDDER_HEADERS),
])
async def test_preflights_allow_every_header_the_sdks_send(start, pages, route, headers):
    running = await start(sdk_config(pages.origin))
    answer = await running.client.request("OPTIONS", route, headers={
        "Origin": pages.origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": ",".join(headers)})
    assert answer.status in (200, 204)
    assert answer.headers["access-control-allow-origin"] == pages.origin
    assert "POST" in answer.headers["access-control-allow-methods"]
    # Listed by name: a "*" would not cover Authorization.
    missing = set(headers) - allowed(answer.headers.get("access-control-allow-headers", ""))
    assert not missing, f"a browser sends nothing when the preflight does not allow {sorted(missing)}"


# In Chromium


@pytest_twisted.ensureDeferred
async def test_analytics_next_calls_arrive_row_by_row(start, pages, browser, sql):
    # One POST a call, text/plain with Basic auth, to /v1/t, /v1/a, /v1/i, /v1/p, /v1/g.
    running = await start(sdk_config(pages.origin))
    page = pages.add("segment", segment_page(pages.add_sdks(), running.client.base_url))
    before = now()
    with AccessLog() as log:
        sent = await sent_by(browser, page, sql, expected=len(CALLS))
    check_posts(log, SEGMENT_PATHS)
    check_calls(sql, sent, SEGMENT_LIBRARY, page, before, now())


@pytest_twisted.ensureDeferred
async def test_analytics_next_batches_arrive_row_by_row(start, pages, browser, sql):
    # Its batching delivery: POST /v1/b, {writeKey, batch, sentAt}, the batch's sentAt for all.
    # Three calls a batch, so that batches go when full, long before their time is up.
    running = await start(sdk_config(pages.origin))
    batching = {"integrations": {"Segment.io": {
        "deliveryStrategy": {"strategy": "batching", "config": {"size": 3, "timeout": 2000}}}}}
    page = pages.add("batching", segment_page(pages.add_sdks(), running.client.base_url, batching))
    before = now()
    with AccessLog() as log:
        sent = await sent_by(browser, page, sql, expected=len(CALLS))
    check_batches(log, "/v1/b", size=3)
    check_calls(sql, sent, SEGMENT_LIBRARY, page, before, now())


@pytest_twisted.ensureDeferred
async def test_rudderstack_calls_arrive_row_by_row(start, pages, browser, sql):
    # One POST a call, JSON with Basic auth, AnonymousId and SentAt headers, to /v1/track and
    # the others; its first track, before any identify, says userId "", kept as sent.
    running = await start(sdk_config(pages.origin))
    page = pages.add("rudder", rudder_page(pages.add_sdks(), running.client.base_url))
    before = now()
    with AccessLog() as log:
        sent = await sent_by(browser, page, sql, expected=len(CALLS))
    check_posts(log, RUDDER_PATHS)
    check_calls(sql, sent, RUDDER_LIBRARY, page, before, now(), unknown_user="")


@pytest_twisted.ensureDeferred
async def test_rudderstack_batches_arrive_row_by_row(start, pages, browser, sql):
    # Its batching queue: POST /v1/batch, {batch, sentAt}, the key only in the Authorization header;
    # three calls a batch, as above.
    running = await start(sdk_config(pages.origin))
    batching = {"queueOptions": {"batch": {"enabled": True, "maxItems": 3, "flushInterval": 2000}}}
    page = pages.add("rudder-batch", rudder_page(pages.add_sdks(), running.client.base_url, batching))
    before = now()
    with AccessLog() as log:
        sent = await sent_by(browser, page, sql, expected=len(CALLS))
    check_batches(log, "/v1/batch", size=3)
    check_calls(sql, sent, RUDDER_LIBRARY, page, before, now(), unknown_user="")


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("make_page", [segment_page, rudder_page], ids=["analytics-next", "rudderstack"])
async def test_pages_of_an_origin_the_app_does_not_allow_store_nothing(start, pages, browser, sql, make_page):
    running = await start(sdk_config("https://elsewhere.example"))
    page = pages.add("foreign", make_page(pages.add_sdks(), running.client.base_url))
    await forget_the_user(browser)
    await in_browser(browser.get, page)
    seen = []

    async def refused():
        """the browser refuses the service's answer to the page (CORS)"""
        seen.extend(await in_browser(console_lines, browser))
        return any("CORS policy" in line for line in seen)

    await wait_for(refused)
    assert count_rows(sql) == 0


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("make_page, losing, paths, library, unknown_user", [
    (segment_page, losing_fetch_answer, SEGMENT_PATHS, SEGMENT_LIBRARY, None),
    (rudder_page, losing_xhr_answer, RUDDER_PATHS, RUDDER_LIBRARY, ""),
], ids=["analytics-next", "rudderstack"])
async def test_a_resend_after_a_lost_answer_is_stored_once(start, pages, browser, sql, make_page, losing,
                                                          paths, library, unknown_user):
    # The typed track's answer is lost: the SDK sends it again, with the same messageId and its
    # resend headers (X-Retry-Count; Rsa-Retry-Attempt and the like), after a preflight for them.
    path = paths[0]
    running = await start(sdk_config(pages.origin))
    page = pages.add("resend", make_page(pages.add_sdks(), running.client.base_url, prelude=losing(path)))
    before = now()
    with AccessLog() as log:
        sent = await sent_by(browser, page, sql, expected=len(CALLS))

        def resent():
            """the SDK sends the track whose answer it did not see again"""
            return len([line for line in log.lines if line["method"] == "POST" and line["path"] == path]) == 3

        await wait_for(resent)
    assert len(await in_browser(browser.execute_script, "return window.lost")) == 1
    assert count_rows(sql) == len(CALLS)
    check_calls(sql, sent, library, page, before, now(), unknown_user)
    check_posts(log, paths + [path])
