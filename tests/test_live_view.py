"""The live view of arriving events: the feed records the public port's requests only while a
viewer watches, keeps a bounded ring, shows each request's route, app, status, events, refusal and
values without any key; in memory first (the real site and routes, a fake writer), then over HTTP
against the real service and its admin port."""

import gzip
import json

import pytest
from twisted.internet.task import Clock

from attolytics.config import parse_config
from attolytics.http.live_page import Viewer, Wanted, live_pages
from attolytics.http.site import AttolyticsSite
from attolytics.live.entries import ELLIPSIS, EVENTS_SHOWN, VALUE_CHARS
from attolytics.live.feed import HEARTBEAT, HEARTBEAT_SECONDS, LiveFeed
from attolytics.reload import Configuration
from support.configs import GAME_CONFIG, SECRET, START
from support.memory import InMemoryService

ROUTE = "/apps/mygame/events/game_events"
# A second app whose key is short: a key under 8 characters is only taken out where it is a
# whole string (the Redactor's rule), which the tests hold it to.
TWO_APPS = GAME_CONFIG + """
  - app_id: other
    app_secret_key: tiny
    event_types:
      - event_type_id: game_events
"""


class Collecting:
    """A viewer that keeps what the feed gives it, as the stream would write it."""

    def __init__(self, wanted=lambda app, status: True):
        self.wanted = wanted
        self.frames: list[bytes] = []
        self.ended = False

    def offer(self, app, status, data):
        if self.wanted(app, status):
            self.frames.append(data)

    def send(self, data):
        self.frames.append(data)

    def end(self):
        self.ended = True

    @property
    def entries(self) -> list[dict]:
        return [json.loads(data.split(b"data: ", 1)[1]) for data in self.frames if data.startswith(b"event: request")]


def watched_service(config_text: str = GAME_CONFIG, size: int = 100):
    """The routes of `config_text` in memory, behind a site with a live feed; and the feed."""
    service = InMemoryService(config_text)
    feed = LiveFeed(service.clock, size=size)
    feed.reconfigure(Configuration.of(parse_config(config_text, "test.conf.yaml")))
    service.site = AttolyticsSite(service.routes.resource(), service.config.max_body_bytes,
                                  service.config.request_timeout, service.routes.early_headers, service.metrics,
                                  reactor=service.clock, live=feed)
    return service, feed


def body(events, key=SECRET) -> bytes:
    return json.dumps({"secret_key": key, "events": events}).encode()


JSON = {"Content-Type": "application/json"}


# In memory

@pytest.mark.unit
def test_nothing_is_recorded_while_no_one_watches():
    service, feed = watched_service()
    assert service.post_events("mygame", "game_events", [START], SECRET).status == 200
    assert service.post_events("mygame", "game_events", [{"timestamp": "x"}], SECRET).status == 400
    assert (feed.watched, feed.recorded, len(feed.ring)) == (False, 0, 0)
    viewer = Collecting()
    assert feed.watch(viewer) == []
    assert service.post_events("mygame", "game_events", [START], SECRET).status == 200
    feed.unwatch(viewer)
    assert service.post_events("mygame", "game_events", [START], SECRET).status == 200
    assert (feed.watched, feed.recorded, len(feed.ring), len(viewer.entries)) == (False, 1, 1, 1)


@pytest.mark.unit
def test_a_stored_and_a_refused_request_are_shown_with_their_values():
    service, feed = watched_service()
    viewer = Collecting()
    feed.watch(viewer)
    service.clock.advance(1554130180)
    events = [START, {"timestamp": 1, "event_type": "end", "score": "lots"}]
    assert service.post_events("mygame", "game_events", [START], SECRET).status == 200
    refused = service.post_events("mygame", "game_events", events, SECRET)
    assert refused.status == 400
    stored, bad = viewer.entries
    assert {key: stored[key] for key in ("time", "method", "route", "app", "event_type", "status", "events")} == {
        "time": 1554130180, "method": "POST", "route": "/apps/{app}/events/{event_type}", "app": "mygame",
        "event_type": "game_events", "status": 200, "events": 1}
    assert stored["refusal"] is None and stored["seq"] == 1
    assert [(index, json.loads(text)) for index, text in stored["values"]] == [(0, START)]
    assert bad["status"] == 400 and bad["events"] == 2
    assert bad["refusal"] == refused.json() and (bad["refusal"]["event"], bad["refusal"]["field"]) == (1, "score")
    assert [(index, json.loads(text)) for index, text in bad["values"]] == list(enumerate(events))


@pytest.mark.unit
def test_the_event_at_fault_is_shown_beside_the_first_ones():
    service, feed = watched_service()
    viewer = Collecting()
    feed.watch(viewer)
    events = [START] * 9 + [{"timestamp": "late"}] + [START] * 5
    assert service.post_events("mygame", "game_events", events, SECRET).status == 400
    [entry] = viewer.entries
    assert [index for index, _ in entry["values"]] == [*range(EVENTS_SHOWN), 9]
    assert entry["more"] == len(events) - EVENTS_SHOWN - 1
    assert (entry["refusal"]["event"], entry["refusal"]["field"]) == (9, "timestamp")


@pytest.mark.unit
def test_no_key_is_shown_in_a_body_a_path_an_answer_or_a_member_name():
    service, feed = watched_service(TWO_APPS)
    viewer = Collecting()
    feed.watch(viewer)
    inside = [{**START, "event_type": f"with {SECRET} inside"}]
    assert service.request("POST", ROUTE, body(inside), {**JSON, "Authorization": f"Bearer {SECRET}"}).status == 200
    service.request("POST", ROUTE, body([{**START, SECRET: 1, "secret_key": "anything"}]), JSON)
    service.request("POST", ROUTE, body([{"timestamp": SECRET}]), JSON)
    service.request("POST", ROUTE, b'{"secret_key": "' + SECRET.encode() + b'", not json', JSON)
    service.request("POST", f"/apps/{SECRET}/events/game_events", body([START]), JSON)
    service.request("POST", f"/nowhere/{SECRET}", body([START]), JSON)
    service.request("POST", "/apps/other/events/game_events", body([{**START, "event_type": "tiny"}], key="tiny"), JSON)
    service.request("POST", ROUTE, body([START], key=f"wrong{SECRET}"), JSON)
    sent = b"".join(viewer.frames)
    assert [entry["status"] for entry in viewer.entries] == [200, 400, 400, 400, 404, 404, 200, 403]
    assert SECRET.encode() not in sent and b'"tiny"' not in sent
    assert sent.count(b"[secret key]") >= 10
    assert viewer.entries[4]["app"] == "[secret key]" and viewer.entries[5]["path"] == "/nowhere/[secret key]"


@pytest.mark.unit
def test_a_gzipped_body_is_shown_inflated_and_a_long_value_is_cut():
    service, feed = watched_service()
    viewer = Collecting()
    feed.watch(viewer)
    long = {**START, "event_type": "x" * 5000}
    service.request("POST", ROUTE, gzip.compress(body([long])), {**JSON, "Content-Encoding": "gzip"})
    [entry] = viewer.entries
    [[index, text]] = entry["values"]
    assert index == 0 and len(text) == VALUE_CHARS + 1 and text.endswith(ELLIPSIS)
    assert text.startswith('{"timestamp":1554130180,"event_type":"xxx')


@pytest.mark.unit
def test_a_body_that_is_no_json_is_shown_as_text_and_cut():
    service, feed = watched_service()
    viewer = Collecting()
    feed.watch(viewer)
    service.request("POST", ROUTE, b"not json " * 200, JSON)
    [entry] = viewer.entries
    assert entry["values"] == [] and entry["body"].startswith("not json not json")
    assert len(entry["body"]) == VALUE_CHARS + 1
    assert entry["refusal"]["error"].startswith("body is not valid JSON")


@pytest.mark.unit
def test_only_the_event_routes_and_posts_to_no_route_are_shown():
    service, feed = watched_service()
    viewer = Collecting()
    feed.watch(viewer)
    service.request("GET", "/healthz")
    service.request("GET", "/attolytics.js")
    service.request("GET", "/nowhere")
    service.request("OPTIONS", ROUTE, headers={"Origin": "https://a.example", "Access-Control-Request-Method": "POST"})
    service.request("POST", "/nowhere", b"{}", JSON)
    assert [(entry["method"], entry["route"], entry["status"]) for entry in viewer.entries] == [
        ("OPTIONS", "/apps/{app}/events/{event_type}", 204), ("POST", "other", 404)]


@pytest.mark.unit
def test_the_ring_keeps_the_latest_requests_only_and_a_new_viewer_gets_them():
    service, feed = watched_service(size=5)
    first = Collecting()
    feed.watch(first)
    for timestamp in range(8):
        service.post_events("mygame", "game_events", [{**START, "timestamp": timestamp}], SECRET)
    feed.unwatch(first)
    assert len(first.entries) == 8 and len(feed.ring) == 5
    later = Collecting()
    backlog = feed.watch(later)
    shown = [json.loads(data.split(b"data: ", 1)[1]) for _, _, data in backlog]
    assert [json.loads(entry["values"][0][1])["timestamp"] for entry in shown] == [3, 4, 5, 6, 7]
    assert [entry["seq"] for entry in shown] == [4, 5, 6, 7, 8]


@pytest.mark.unit
def test_viewers_are_limited_and_a_heartbeat_runs_only_while_one_watches():
    clock = Clock()
    feed = LiveFeed(clock, max_viewers=2)
    feed.reconfigure(Configuration.of(parse_config(GAME_CONFIG, "test.conf.yaml")))
    one, two = Collecting(), Collecting()
    assert feed.watch(one) == [] and feed.watch(two) == [] and feed.watch(Collecting()) is None
    clock.advance(HEARTBEAT_SECONDS)
    assert one.frames == [HEARTBEAT] and two.frames == [HEARTBEAT]
    feed.unwatch(one)
    feed.unwatch(two)
    assert not feed.watched and clock.getDelayedCalls() == []
    feed.watch(one)
    feed.startService()
    feed.stopService()
    assert one.ended and not feed.watched and clock.getDelayedCalls() == []


@pytest.mark.unit
@pytest.mark.parametrize("app, status, passing", [
    (None, None, [("a", 200), ("b", 400), (None, 503)]),
    ("a", None, [("a", 200)]),
    (None, "refused", [("b", 400), (None, 503)]),
    (None, "4xx", [("b", 400)]),
    (None, "200", [("a", 200)]),
    ("b", "2xx", []),
])
def test_a_stream_filters_by_app_and_status(app, status, passing):
    wanted = Wanted(app, status)
    assert [(a, s) for a, s in [("a", 200), ("b", 400), (None, 503)] if wanted(a, s)] == passing


@pytest.mark.unit
def test_a_status_filter_must_mean_something():
    with pytest.raises(ValueError):
        Wanted(None, "4x")


class _Request:
    """What a Viewer writes to: a request that records its writes."""

    finished = client_gone = False

    def __init__(self):
        self.written = []

    def write(self, data):
        self.written.append(data)

    def unregisterProducer(self):
        pass

    def finish(self):
        self.finished = True


@pytest.mark.unit
def test_a_viewer_that_cannot_keep_up_is_told_how_many_it_missed():
    feed = LiveFeed(Clock())
    request = _Request()
    viewer = Viewer(request, feed, Wanted(None, "refused"))
    feed.watch(viewer)
    viewer.offer("a", 400, b"one")
    viewer.pauseProducing()
    for _ in range(3):
        viewer.offer("a", 400, b"lost")
    viewer.offer("a", 200, b"not wanted")
    viewer.resumeProducing()
    viewer.offer("a", 404, b"two")
    assert request.written == [b"one", b'event: missed\ndata: {"count":3}\n\n', b"two"]
    viewer.end()
    assert request.finished and not feed.watched


@pytest.mark.unit
def test_the_page_forbids_everything_but_its_own_script_style_and_stream():
    pages = live_pages(LiveFeed(Clock()))
    headers = {}

    class Page:
        def setHeader(self, name, value):
            headers[name] = value

    html = pages["/live"](Page())
    assert html.startswith(b"<!doctype html>") and b"EventSource" in html
    policy = headers[b"Content-Security-Policy"].decode()
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert policy.count("'sha256-") == 2 and "unsafe" not in policy
    assert b"innerHTML" not in html and b"insertAdjacentHTML" not in html and b"document.write" not in html
