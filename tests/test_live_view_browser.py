"""The live view in a real headless Chromium: /live on the admin port shows the requests posted to
the public port as they are answered, a refusal with its event and field, the values as text; and
its filters by app and status."""

import pytest
import pytest_twisted
from twisted.internet.defer import ensureDeferred

from support.browser import console_lines, in_browser
from support.configs import GAME_CONFIG, SECRET, START
from support.waiting import wait_for

pytestmark = pytest.mark.browser

CONFIG = GAME_CONFIG + """
  - app_id: other
    app_secret_key: other-key-1234
    event_types:
      - event_type_id: game_events
admin_listen: 'tcp:0:interface=127.0.0.1'
"""
HOSTILE = "<img src=x onerror=\"window.injected=1\">"

# What the page shows, entry by entry (newest first), as a user sees it.
SHOWN = """
return Array.from(document.querySelectorAll("tbody.entry")).map(function (entry) {
  function text(selector) { var found = entry.querySelector(selector); return found ? found.textContent : null; }
  return {app: text(".app"), request: text(".route"), status: text(".status"), events: text(".events"),
          reason: text(".reason"), visible: getComputedStyle(entry).display !== "none",
          values: Array.from(entry.querySelectorAll("pre.value")).map(function (pre) {
            return {text: pre.textContent, fault: pre.classList.contains("fault")}; })};
});
"""


@pytest.fixture
def watched(start):
    running = pytest_twisted.blockon(ensureDeferred(start(CONFIG)))
    assert running.fatal == []
    return running


async def shown(browser) -> list[dict]:
    return await in_browser(browser.execute_script, SHOWN)


async def choose(browser, select_id: str, value: str) -> None:
    """Pick `value` in the page's select `select_id`, as a user does."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    element = await in_browser(browser.find_element, By.ID, select_id)
    await in_browser(Select(element).select_by_value, value)


@pytest_twisted.ensureDeferred
async def test_the_page_shows_stored_and_refused_requests_and_filters_them(watched, browser, tmp_path):
    admin = f"http://127.0.0.1:{watched.admin_port}/live"
    await in_browser(browser.set_window_size, 1400, 900)
    await in_browser(browser.get, admin)
    await wait_for(lambda: watched.service.getServiceNamed("live").watched, what="the page watching")
    await in_browser(console_lines, browser)  # what loading the page logged, left behind

    client = watched.client
    assert (await client.post_events("mygame", "game_events", [START, {**START, "event_type": HOSTILE}])).status == 200
    bad = [START, START, {"timestamp": 3, "event_type": "end", "score": "lots"}]
    assert (await client.post_events("mygame", "game_events", bad)).status == 400
    assert (await client.post_events("other", "game_events", [START], secret="other-key-1234")).status == 200
    assert (await client.post_events("other", "game_events", [{"event_type": "x"}],
                                     secret="other-key-1234")).status == 400

    async def four():
        """the four requests are shown"""
        return len(await shown(browser)) == 4

    await wait_for(four)
    other_refused, other_stored, refused, stored = await shown(browser)
    assert (stored["app"], stored["request"], stored["status"], stored["events"], stored["reason"]) == (
        "mygame", "POST /apps/mygame/events/game_events", "200", "2", "")
    assert [value["text"] for value in stored["values"]] == [
        '#0 {"timestamp":1554130180,"event_type":"game_start"}',
        '#1 {"timestamp":1554130180,"event_type":"' + HOSTILE.replace('"', '\\"') + '"}']
    assert (refused["status"], refused["events"]) == ("400", "3")
    assert "event 2, field score" in refused["reason"]
    assert [value["fault"] for value in refused["values"]] == [False, False, True]
    assert "field timestamp" in other_refused["reason"] and other_refused["app"] == "other"
    assert await in_browser(browser.execute_script, "return window.injected === undefined")
    await in_browser(browser.save_screenshot, str(tmp_path / "live.png"))

    await choose(browser, "app", "other")
    assert [(e["app"], e["status"]) for e in await shown(browser) if e["visible"]] == [("other", "400"), ("other", "200")]
    await choose(browser, "status", "refused")
    assert [(e["app"], e["status"]) for e in await shown(browser) if e["visible"]] == [("other", "400")]
    await choose(browser, "app", "")
    assert [(e["app"], e["status"]) for e in await shown(browser) if e["visible"]] == [("other", "400"), ("mygame", "400")]
    await choose(browser, "status", "2xx")
    assert [(e["app"], e["status"]) for e in await shown(browser) if e["visible"]] == [("other", "200"), ("mygame", "200")]

    page_source = await in_browser(lambda: browser.page_source)
    assert SECRET not in page_source and "other-key-1234" not in page_source
    assert [line for line in await in_browser(console_lines, browser) if "SEVERE" in line] == []


OPTIONS = 'return Array.from(document.querySelectorAll("#app option")).map(function (o) { return o.value; });'


async def reconnected(browser, feed) -> None:
    """End the page's stream, as a stop of the service would, and wait until it watches again."""
    for viewer in list(feed.viewers):
        viewer.end()
    await wait_for(lambda: feed.watched, what="the page connected again")


@pytest_twisted.ensureDeferred
async def test_the_app_filter_offers_the_configured_apps_only_and_cleared_requests_stay_cleared(watched, browser):
    feed = watched.service.getServiceNamed("live")
    await in_browser(browser.get, f"http://127.0.0.1:{watched.admin_port}/live")
    await wait_for(lambda: feed.watched, what="the page watching")
    client = watched.client
    for app in ("no-such-app-1", "no-such-app-2", "no-such-app-3"):
        answer = await client.request("POST", f"/apps/{app}/events", {"secret_key": SECRET, "events": [START]})
        assert answer.status == 404
    assert (await client.request("GET", "/apps/no-such-app-4/events")).status == 405
    assert (await client.post_events("mygame", "game_events", [START])).status == 200

    async def shown_apps(count):
        entries = await shown(browser)
        return [entry["app"] for entry in entries] if len(entries) == count else None

    await wait_for(lambda: shown_apps(5), what="the five requests shown")
    assert await in_browser(browser.execute_script, OPTIONS) == ["", "mygame", "other"]

    await in_browser(browser.execute_script, 'document.getElementById("clear").click();')
    assert await shown(browser) == []
    await reconnected(browser, feed)  # its ring, sent again, holds the five cleared requests
    assert (await client.post_events("other", "game_events", [START], secret="other-key-1234")).status == 200
    await wait_for(lambda: shown_apps(1), what="the request after the clear shown")
    assert await shown_apps(1) == ["other"]

    feed.ring.clear()  # as a process started anew under the same pid (pid 1 in a container, say)
    feed.recorded = 0
    await reconnected(browser, feed)
    assert (await client.post_events("mygame", "game_events", [START])).status == 200
    await wait_for(lambda: shown_apps(2), what="the new process's first request shown")
    assert await shown_apps(2) == ["mygame", "other"]
    assert await in_browser(browser.execute_script, OPTIONS) == ["", "mygame", "other"]
