"""The live view of arriving events: the feed records the public port's requests only while a
viewer watches, keeps a bounded ring, shows each request's route, app, status, events, refusal and
values without any key; in memory first (the real site and routes, a fake writer), then over HTTP
against the real service and its admin port."""

import base64
import gzip
import http.client
import json
import os
import re
import signal
import socket
import threading

import pytest
import pytest_twisted
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread

from attolytics.config import parse_config
from attolytics.live.page import Viewer, Wanted, live_pages
from attolytics.http.site import AttolyticsSite
from attolytics.live.entries import ELLIPSIS, EVENTS_SHOWN, VALUE_CHARS, cut
from attolytics.live.feed import HEARTBEAT, HEARTBEAT_SECONDS, LiveFeed
from attolytics.reload import Configuration
from support.configs import GAME_CONFIG, SECRET, START, segment_config
from support.http import Client, free_port, raw_exchange
from support.http import post as post_json
from support.memory import InMemoryService
from support.twistd import listen_on, serve, wait_until_ready
from support.waiting import wait_for, wait_until

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
    feed.startService()
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
def test_a_refusal_naming_a_member_with_a_lone_surrogate_is_answered_and_shown():
    service, feed = watched_service()
    viewer = Collecting()
    feed.watch(viewer)
    sent = b'{"secret_key": "' + SECRET.encode() + b'", "events": [{"timestamp": 1, "event_type": "x", "\\ud800": 1}]}'
    answer = service.request("POST", ROUTE, sent, JSON)
    assert answer.status == 400 and answer.json()["field"] == "\ud800"
    [entry] = viewer.entries
    assert entry["status"] == 400 and entry["refusal"]["field"] == "\ufffd" and entry["refusal"]["event"] == 0
    assert service.post_events("mygame", "game_events", [START], SECRET).status == 200
    assert [entry["seq"] for entry in viewer.entries] == [1, 2]


@pytest.mark.unit
def test_an_event_nested_past_what_orjson_writes_is_shown_as_text(logged):
    service, feed = watched_service()
    viewer = Collecting()
    feed.watch(viewer)
    nested = "[" * 300 + "]" * 300
    sent = b'{"secret_key": "' + SECRET.encode() + b'", "events": [' + nested.encode() + b"]}"
    assert service.request("POST", ROUTE, sent, JSON).status == 400
    [entry] = viewer.entries
    assert entry["status"] == 400 and entry["values"] == []
    assert entry["body"] == cut('{"secret_key": "[secret key]", "events": [' + nested + "]}", VALUE_CHARS)
    assert not [line for line in logged if "live view" in line]


def access_lines(logged) -> list[str]:
    return [line for line in logged if " POST /apps/mygame/events/game_events " in line]


@pytest.mark.unit
@pytest.mark.parametrize("failing", ["frame", "shows", "record"])
def test_a_fault_of_the_view_costs_no_answer_nor_access_line_and_is_logged_once_a_minute(
        failing, monkeypatch, logged):
    service, feed = watched_service()
    feed.watch(Collecting())

    def fails(*args):
        raise ValueError("a fault of the live view")

    if failing == "frame":
        monkeypatch.setattr("attolytics.live.feed.frame", fails)
    elif failing == "shows":
        monkeypatch.setattr(feed.entries, "shows", fails)
    else:
        monkeypatch.setattr(feed, "record", fails)
    statuses = [service.post_events("mygame", "game_events", [START], SECRET).status for _ in range(3)]
    service.clock.advance(60)
    statuses.append(service.post_events("mygame", "game_events", [START], SECRET).status)
    assert statuses == [200] * 4 and len(access_lines(logged)) == 4
    faults = [line for line in logged if "live view" in line]
    assert len(faults) == 2 and "(1 since" in faults[0] and "(3 since" in faults[1]
    assert feed.recorded == 0 and len(feed.ring) == 0


def percent_encoded(text: str, times: int = 1) -> str:
    for _ in range(times):
        text = "".join(f"%{byte:02X}" for byte in text.encode())
    return text


@pytest.mark.unit
def test_a_key_percent_encoded_in_a_path_to_no_route_is_taken_out():
    service, feed = watched_service()
    viewer = Collecting()
    feed.watch(viewer)
    for times in (1, 2, 4, 5):
        assert service.request("POST", f"/nowhere/{percent_encoded(SECRET, times)}/x", b"{}", JSON).status == 404
    paths = [entry["path"] for entry in viewer.entries]
    assert paths == ["/nowhere/[secret key]/x"] * 3 + ["(a path percent-encoded more than 4 times)"]


@pytest.mark.unit
def test_a_method_is_shown_as_sent_when_it_is_one_of_http_s_else_cut_and_without_keys():
    service, feed = watched_service()
    viewer = Collecting()
    feed.watch(viewer)
    for method in ("DELETE", "PATCH", "M" * 16_000, SECRET, f"GET{SECRET}", "get"):
        assert service.request(method, ROUTE).status == 405
    assert [entry["method"] for entry in viewer.entries] == [
        "DELETE", "PATCH", "M" * 16 + ELLIPSIS, "[secret key]", "GET[secret key]", "get"]


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


LONG_KEY = "Zq8-a-long-key-of-the-game-0123456789abcdef"


@pytest.mark.unit
@pytest.mark.parametrize("offset", range(-3, 4))
def test_a_long_text_body_is_read_only_so_far_and_never_shows_part_of_a_key(offset):
    # Keys longer than what replaces them shrink the text as they are taken out: a key cut in two
    # at the end of what is read must not slide into what is shown.
    service, feed = watched_service(GAME_CONFIG.replace(SECRET, LONG_KEY))
    viewer = Collecting()
    feed.watch(viewer)
    for at in range(VALUE_CHARS - 60, VALUE_CHARS + 60, 7):
        text = (LONG_KEY + " ") * 8
        text += "x" * (at + offset - len(text)) + LONG_KEY + " and more" * 200
        service.request("POST", ROUTE, text.encode(), JSON)
    shown = [entry["body"] for entry in viewer.entries]
    assert len(shown) == 18 and all(body.startswith("[secret key] [secret key]") for body in shown)
    assert not [body for body in shown if LONG_KEY[:5] in body or len(body) > VALUE_CHARS + 1]


class Reads:
    """Stands for orjson in the module that makes entries, and for its Redactor: what they are
    given to parse and to search for keys is noted, its length."""

    def __init__(self, entries_module, redactor):
        self.orjson, self.redactor = entries_module.orjson, redactor
        self.parsed: list[int] = []
        self.searched: list[int] = []

    def __getattr__(self, name):
        return getattr(self.orjson, name)

    def loads(self, data):
        self.parsed.append(len(data))
        return self.orjson.loads(data)

    def watching(self, method):
        def noted(value):
            if isinstance(value, str):
                self.searched.append(len(value))
            return method(value)
        return noted


def reads_of(feed, monkeypatch) -> Reads:
    from attolytics.live import entries as entries_module

    reads = Reads(entries_module, feed.entries.redactor)
    monkeypatch.setattr(entries_module, "orjson", reads)
    for name in ("text", "json"):
        monkeypatch.setattr(reads.redactor, name, reads.watching(getattr(reads.redactor, name)))
    return reads


SENT_EVENT = '{"timestamp": 1554130180, "event_type": "game_start"'


@pytest.mark.unit
@pytest.mark.parametrize("extra, gzipped", [
    ("x" * 300_000, False),
    ([{"a": 1}] * 30_000, False),
    ([{"a": 1}] * 30_000, True),
])
def test_a_body_past_64_kib_is_not_parsed_for_the_view_only_its_start_read_as_text(extra, gzipped, monkeypatch):
    service, feed = watched_service()
    viewer = Collecting()
    feed.watch(viewer)
    reads = reads_of(feed, monkeypatch)
    sent = body([{**START, "extra": extra}])
    headers = {**JSON, "Content-Encoding": "gzip"} if gzipped else JSON
    assert service.request("POST", ROUTE, gzip.compress(sent) if gzipped else sent, headers).status == 400
    [entry] = viewer.entries
    assert entry["values"] == [] and entry["body"].startswith('{"secret_key": "[secret key]", "events": [' + SENT_EVENT)
    assert len(entry["body"]) == VALUE_CHARS + 1 and entry["body"].endswith(ELLIPSIS)
    assert entry["refusal"]["field"] == "extra"
    assert reads.parsed == [] and max(reads.searched) < 2 * VALUE_CHARS


@pytest.mark.unit
def test_the_events_of_a_body_read_as_json_are_searched_for_keys_only_as_far_as_they_are_shown(monkeypatch):
    service, feed = watched_service()
    viewer = Collecting()
    feed.watch(viewer)
    reads = reads_of(feed, monkeypatch)
    events = [{**START, "extra": "x" * 20_000}, {**START, "extra": [{"a": 1}] * 4_000}]
    assert service.request("POST", ROUTE, body(events), JSON).status == 400
    [entry] = viewer.entries
    assert [index for index, _ in entry["values"]] == [0, 1] and entry["body"] is None
    long_string, many_members = (text for _, text in entry["values"])
    assert long_string.startswith('{"timestamp":1554130180,"event_type":"game_start","extra":"xxxx')
    assert many_members.startswith('{"timestamp":1554130180,"event_type":"game_start","extra":[{"a":1},{"a":1}')
    assert len(long_string) == len(many_members) == VALUE_CHARS + 1
    assert len(reads.parsed) == 1 and max(reads.searched) < 2 * VALUE_CHARS


def escaped(text: str) -> str:
    """`text` as a JSON string's content, each character a \\u escape."""
    return "".join(f"\\u{ord(character):04x}" for character in text)


def unescaped(text: str) -> str:
    """What JSON strings in `text` stand for: their escapes undone."""
    return re.sub(r'\\(u[0-9a-f]{4}|["\\])', lambda match: json.loads(f'"{match[0]}"'), text)


# A key with characters JSON escapes: written in a JSON string, it grows.
QUOTED_KEY = 'Zq8' + '"\\' * 10 + "-0123456789"


@pytest.mark.unit
@pytest.mark.parametrize("key", [LONG_KEY, QUOTED_KEY])
@pytest.mark.parametrize("padding", [100, 70_000])
@pytest.mark.parametrize("offset", range(-3, 4))
def test_a_key_escaped_in_a_json_string_is_taken_out_and_never_shows_where_the_view_cuts_it(key, padding, offset):
    # Past 64 KiB the body is read as text: its strings' escapes are undone to look for keys, and
    # a key cut in two at the end of what is read must not show, escaped or not.
    service, feed = watched_service(GAME_CONFIG.replace(SECRET, f"'{key}'"))
    viewer = Collecting()
    feed.watch(viewer)
    member = '{"secret_key": "' + escaped(key) + '", "events": [{"timestamp": 1, "event_type": "'
    for at in range(VALUE_CHARS - 300, VALUE_CHARS + 140, 11):
        text = member + "x" * (at + offset - len(member)) + escaped(key) + " and " + json.dumps(key)[1:-1]
        text += '"}], "padding": "' + "p" * padding + '"}'
        service.request("POST", ROUTE, text.encode(), JSON)
    shown = [entry["values"][0][1] if entry["values"] else entry["body"] for entry in viewer.entries]
    assert len(shown) == 40 and all(key[:5] not in unescaped(text) for text in shown)
    assert all(text.count("[secret key]") >= 1 and len(text) <= VALUE_CHARS + 1 for text in shown)


@pytest.mark.unit
def test_a_key_as_a_whole_string_or_a_key_member_is_taken_out_of_a_body_read_as_text():
    service, feed = watched_service(TWO_APPS)
    viewer = Collecting()
    feed.watch(viewer)
    sent = body([{**START, "event_type": "tiny", "ti-n-y": "x" * 70_000}], key="tiny")
    sent = sent.replace(b"ti-n-y", rb"ti\u006ey")  # the name "tiny", written with an escape
    assert service.request("POST", "/apps/other/events/game_events", sent, JSON).status == 400
    sent = sent.replace(b'"secret_key": "tiny"', rb'"secret\u005fkey": "not an app\u0027s key"')
    assert service.request("POST", "/apps/other/events/game_events", sent, JSON).status == 403
    start = ('"events": [{"timestamp": 1554130180, "event_type": "[secret key]", "[secret key]": "xxx')
    shown = [entry["body"] for entry in viewer.entries]
    assert shown[0].startswith('{"secret_key": "[secret key]", ' + start)
    assert shown[1].startswith('{"secret\\u005fkey": "[secret key]", ' + start)
    assert not [text for text in shown if "tiny" in unescaped(text) or "not an app" in unescaped(text)]


@pytest.mark.unit
def test_a_segment_body_past_64_kib_shows_the_app_its_write_key_names():
    service, feed = watched_service(segment_config(SEGMENT_KEY))
    viewer = Collecting()
    feed.watch(viewer)
    track = {"type": "track", "messageId": "m", "userId": "ann", "event": "Level Completed",
             "properties": {"levelNumber": 3, "note": "n" * 100}}
    batch = {"batch": [{**track, "messageId": f"m{n}"} for n in range(700)], "writeKey": SEGMENT_KEY}
    assert service.request("POST", "/v1/batch", json.dumps(batch).encode(), JSON).status == 200
    [entry] = viewer.entries
    assert entry["app"] == "mygame" and entry["body"].startswith('{"batch": [{"type": "track"')
    assert SEGMENT_KEY not in json.dumps(entry)


@pytest.mark.unit
def test_the_ring_is_emptied_when_the_keys_change():
    service, feed = watched_service()
    feed.watch(Collecting())
    service.post_events("mygame", "game_events", [START], SECRET)
    feed.reconfigure(Configuration.of(parse_config(GAME_CONFIG + "max_body_bytes: 5000\n", "test.conf.yaml")))
    assert len(feed.ring) == 1
    feed.reconfigure(Configuration.of(parse_config(GAME_CONFIG.replace(SECRET, "a-new-key-123"), "test.conf.yaml")))
    assert len(feed.ring) == 0


@pytest.mark.unit
def test_the_hello_names_the_apps_of_the_configuration_and_comes_again_when_they_change():
    service, feed = watched_service()
    viewer = Collecting()
    feed.watch(viewer)
    service.request("POST", "/apps/not-an-app/events", body([START]), JSON)
    hello = json.loads(feed.hello().split(b"data: ", 1)[1])
    assert hello == {"pid": os.getpid(), "size": 100, "recorded": 1, "apps": ["mygame"]}
    feed.reconfigure(Configuration.of(parse_config(GAME_CONFIG + "max_body_bytes: 5000\n", "test.conf.yaml")))
    assert len(viewer.frames) == 1
    feed.reconfigure(Configuration.of(parse_config(TWO_APPS, "test.conf.yaml")))
    assert viewer.frames[1].startswith(b"event: hello\n")
    assert json.loads(viewer.frames[1].split(b"data: ", 1)[1])["apps"] == ["mygame", "other"]


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
    assert feed.watch(Collecting()) is None  # not started yet
    feed.startService()
    one, two = Collecting(), Collecting()
    assert feed.watch(one) == [] and feed.watch(two) == [] and feed.watch(Collecting()) is None
    clock.advance(HEARTBEAT_SECONDS)
    assert one.frames == [HEARTBEAT] and two.frames == [HEARTBEAT]
    feed.unwatch(one)
    feed.unwatch(two)
    assert not feed.watched and clock.getDelayedCalls() == []
    feed.watch(one)
    feed.stopService()
    assert one.ended and not feed.watched and clock.getDelayedCalls() == []
    assert feed.watch(two) is None  # stopping: no new stream holds the admin port's stop


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
    feed.startService()
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
        def getHeader(self, name):
            return b"127.0.0.1:9100" if name == b"host" else None

        def setHeader(self, name, value):
            headers[name] = value

    html = pages["/live"](Page())
    assert html.startswith(b"<!doctype html>") and b"EventSource" in html
    policy = headers[b"Content-Security-Policy"].decode()
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert policy.count("'sha256-") == 2 and "unsafe" not in policy
    assert b"innerHTML" not in html and b"insertAdjacentHTML" not in html and b"document.write" not in html


# Over HTTP: the real service, its public port and its admin port

ADMIN = "admin_listen: 'tcp:0:interface=127.0.0.1'\n"
SEGMENT_KEY = "segment-write-key-0123"


class EventStream:
    """/live/events of an admin port, read in a thread: the frames as they arrive, and the raw
    bytes. `await EventStream.open(port)` returns once its hello is in (its viewer watches)."""

    def __init__(self, port: int, query: str):
        self.port, self.query = port, query
        self.raw = b""
        self.frames: list[tuple[str, dict]] = []
        self.status = None
        self.reading = None

    @classmethod
    async def open(cls, port: int, query: str = ""):
        stream = cls(port, query)
        stream.reading = deferToThread(stream._read)
        await wait_for(lambda: stream.frames or stream.status not in (None, 200), what="the stream's hello")
        return stream

    def _read(self) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        self.connection.request("GET", "/live/events" + self.query)
        response = self.connection.getresponse()
        self.status, self.headers = response.status, dict(response.getheaders())
        kind, data = None, None
        while line := response.readline():
            self.raw += line
            if line.startswith(b"event: "):
                kind = line[7:].strip().decode()
            elif line.startswith(b"data: "):
                data = json.loads(line[6:])
            elif line == b"\n" and kind is not None:
                self.frames.append((kind, data))
                kind, data = None, None

    @property
    def entries(self) -> list[dict]:
        return [data for kind, data in self.frames if kind == "request"]

    async def until(self, count: int) -> list[dict]:
        """The entries, once there are `count` of them."""
        await wait_for(lambda: len(self.entries) >= count, what=f"{count} entries on the stream")
        return self.entries

    async def close(self) -> None:
        """Cut the connection, as a page closed; returns once the thread has stopped reading."""
        self.connection.sock.shutdown(socket.SHUT_RDWR)
        await self.reading


async def posted(running, path: str, body, headers=None):
    headers = {"Content-Type": "application/json", **(headers or {})}
    return await running.client.request("POST", path, body if isinstance(body, bytes) else json.dumps(body).encode(),
                                        headers)


@pytest.fixture
def watched(start):
    """The service with an admin port, on the game_events table and two apps."""
    running = pytest_twisted.blockon(ensureDeferred(start(TWO_APPS + ADMIN + "shutdown_timeout: 3\n")))
    assert running.fatal == []
    return running


@pytest.mark.service
@pytest_twisted.ensureDeferred
async def test_the_admin_port_streams_stored_and_refused_requests_with_their_values(watched, sql):
    stream = await EventStream.open(watched.admin_port)
    assert stream.status == 200 and stream.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    [(kind, hello)] = stream.frames
    assert kind == "hello" and hello["size"] == 100 and hello["pid"] == os.getpid()
    bad = [START, {"timestamp": 5, "event_type": "end", "score": "lots"}]
    assert (await watched.client.post_events("mygame", "game_events", [START, START])).status == 200
    refused = await watched.client.post_events("mygame", "game_events", bad)
    assert refused.status == 400
    stored, shown = await stream.until(2)
    assert sql("select count(*) from game_events") == [(2,)]
    assert [(e["method"], e["route"], e["app"], e["event_type"], e["status"], e["events"]) for e in (stored, shown)] == [
        ("POST", "/apps/{app}/events/{event_type}", "mygame", "game_events", 200, 2),
        ("POST", "/apps/{app}/events/{event_type}", "mygame", "game_events", 400, 2)]
    assert shown["refusal"] == refused.json() and (shown["refusal"]["event"], shown["refusal"]["field"]) == (1, "score")
    assert [(i, json.loads(text)) for i, text in stored["values"]] == [(0, START), (1, START)]
    assert [(i, json.loads(text)) for i, text in shown["values"]] == list(enumerate(bad))
    assert stored["pid"] == shown["pid"] == os.getpid() and [stored["seq"], shown["seq"]] == [1, 2]
    await stream.close()


@pytest.mark.service
@pytest_twisted.ensureDeferred
async def test_a_fault_of_the_view_loses_no_answer_over_tcp_nor_the_next_request(watched, logged):
    stream = await EventStream.open(watched.admin_port)
    feed = watched.service.getServiceNamed("live")

    def fails(request):
        raise ValueError("a fault of the live view")

    feed.record = fails
    one = body([START])
    pipelined = b"".join(
        b"POST " + ROUTE.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + connection + b"Content-Length: %d\r\n\r\n" % len(one) + one
        for connection in (b"", b"Connection: close\r\n"))
    received = await deferToThread(raw_exchange, watched.port, pipelined)
    assert re.findall(rb"HTTP/1.1 (\d+)", received) == [b"200", b"200"]
    assert len(access_lines(logged)) == 2
    assert len([line for line in logged if "the live view failed" in line]) == 1
    await stream.close()


@pytest.mark.service
@pytest_twisted.ensureDeferred
async def test_nothing_is_recorded_while_no_one_watches_and_a_new_viewer_gets_the_ring(watched):
    feed = watched.service.getServiceNamed("live")
    assert (await watched.client.post_events("mygame", "game_events", [START])).status == 200
    assert (feed.watched, feed.recorded, len(feed.ring)) == (False, 0, 0)
    first = await EventStream.open(watched.admin_port)
    assert (await watched.client.post_events("mygame", "game_events", [START])).status == 200
    await first.until(1)
    await first.close()
    await wait_for(lambda: not feed.watched, what="the viewer gone")
    assert (await watched.client.post_events("mygame", "game_events", [START])).status == 200
    assert feed.recorded == 1
    later = await EventStream.open(watched.admin_port)
    assert [kind for kind, _ in later.frames] == ["hello", "request"] and later.entries[0]["seq"] == 1
    await later.close()


@pytest.mark.service
@pytest_twisted.ensureDeferred
async def test_the_ring_holds_the_last_100_requests(watched):
    stream = await EventStream.open(watched.admin_port)
    for timestamp in range(105):
        await watched.client.post_events("mygame", "game_events", [{**START, "timestamp": timestamp}])
    await stream.until(105)
    later = await EventStream.open(watched.admin_port)
    assert [entry["seq"] for entry in later.entries] == list(range(6, 106))
    assert json.loads(later.entries[0]["values"][0][1])["timestamp"] == 5
    await stream.close()
    await later.close()


@pytest.mark.service
@pytest_twisted.ensureDeferred
async def test_the_stream_filters_by_app_and_status(watched):
    refused_only = await EventStream.open(watched.admin_port, "?status=refused")
    other_only = await EventStream.open(watched.admin_port, "?app=other&status=2xx")
    everything = await EventStream.open(watched.admin_port)
    await watched.client.post_events("mygame", "game_events", [START])
    await watched.client.post_events("other", "game_events", [START], secret="tiny")
    await watched.client.post_events("other", "game_events", [{"timestamp": "x"}], secret="tiny")
    await watched.client.post_events("mygame", "game_events", [START], secret="wrong-key-123")
    # Last, one request each filtered stream wants: once it is in, all before it are.
    await watched.client.post_events("other", "game_events", [START], secret="tiny")
    await watched.client.post_events("mygame", "no_such_type", [START])
    await everything.until(6)
    assert [(e["app"], e["status"]) for e in everything.entries] == [
        ("mygame", 200), ("other", 200), ("other", 400), ("mygame", 403), ("other", 200), ("mygame", 404)]
    assert [(e["app"], e["status"]) for e in await refused_only.until(3)] == [
        ("other", 400), ("mygame", 403), ("mygame", 404)]
    assert [(e["app"], e["status"]) for e in await other_only.until(2)] == [("other", 200), ("other", 200)]
    for stream in (refused_only, other_only, everything):
        await stream.close()
    assert (await Client(watched.admin_port).request("GET", "/live/events?status=4x")).status == 400


@pytest.mark.service
@pytest_twisted.ensureDeferred
async def test_no_key_or_token_reaches_the_admin_port(start):
    config = segment_config(SEGMENT_KEY) + f"""  mobile:
    secret_key: {SECRET}
    tables: [level_completed]
""" + ADMIN
    running = await start(config)
    assert running.fatal == []
    stream = await EventStream.open(running.admin_port)
    level = {"level_number": 3, "user_id": f"key {SECRET} and {SEGMENT_KEY}"}
    basic = {"Authorization": "Basic " + base64.b64encode(f"{SEGMENT_KEY}:".encode()).decode()}
    track = {"type": "track", "messageId": "m1", "userId": "ann", "event": "Level Completed",
             "properties": {"levelNumber": 3, "comment": f"pasted {SEGMENT_KEY}"}}
    answers = [
        await posted(running, "/apps/mobile/events/level_completed", {"events": [level]},
                     {"Authorization": f"Bearer {SECRET}"}),
        await posted(running, "/apps/mobile/events/level_completed", {"secret_key": SECRET, "events": [level]}),
        await posted(running, "/apps/mobile/events/level_completed",
                     {"secret_key": SECRET, "events": [{"level_number": SECRET}]}),
        await posted(running, "/v1/batch", {"batch": [track]}, basic),
        await posted(running, "/v1/track", {**track, "messageId": "m2", "writeKey": SEGMENT_KEY}),
        await posted(running, "/v1/batch", {"writeKey": SEGMENT_KEY, "batch": [{**track, "messageId": 3}]}),
        await posted(running, f"/apps/{SECRET}/events/level_completed", {"events": [level]}),
    ]
    assert [answer.status for answer in answers] == [200, 200, 400, 200, 200, 400, 404]
    entries = await stream.until(len(answers))
    assert [entry["app"] for entry in entries] == ["mobile"] * 3 + ["mygame"] * 3 + ["[secret key]"]
    assert entries[5]["refusal"]["code"] == "invalid" and entries[5]["refusal"]["field"] == "messageId"
    later = await EventStream.open(running.admin_port)
    await later.until(len(answers))
    page = await Client(running.admin_port).request("GET", "/live")
    metrics = await Client(running.admin_port).request("GET", "/metrics")
    await stream.close()
    await later.close()
    for sent in (stream.raw, later.raw, page.body, metrics.body):
        for key in (SECRET, SEGMENT_KEY, base64.b64encode(f"{SEGMENT_KEY}:".encode()).decode()):
            assert key.encode() not in sent
    assert stream.raw.count(b"[secret key]") >= 10


def answered(port: int, path: str, host: str) -> tuple[int, bytes]:
    """GET `path` with this Host header: the answer's status and body."""
    received = raw_exchange(port, f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    head, _, content = received.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), content


@pytest.mark.service
@pytest_twisted.ensureDeferred
async def test_the_live_view_answers_only_a_request_for_an_address_never_for_a_name(watched):
    port = watched.admin_port
    addresses = ["127.0.0.1", f"127.0.0.1:{port}", "localhost", f"LocalHost:{port}", "[::1]", f"[::1]:{port}",
                 "10.1.2.3:80"]
    names = ["rebound.example", f"rebound.example:{port}", "127.0.0.1.nip.io", "localhost.", "::1",
             "[127.0.0.1]", "127.1", f"127.0.0.1:{port}:{port}", ""]
    for host in addresses:
        status, page = await deferToThread(answered, port, "/live", host)
        assert (host, status) == (host, 200) and page.startswith(b"<!doctype html>")
    for host, path in [(host, path) for host in names for path in ("/live", "/live/events")]:
        status, refusal = await deferToThread(answered, port, path, host)
        assert (host, path, status) == (host, path, 421)
        assert f"open it as http://127.0.0.1:{port}/live" in json.loads(refusal)["error"]
    assert (await deferToThread(answered, port, "/metrics", f"prometheus.example:{port}"))[0] == 200


@pytest.mark.service
@pytest_twisted.ensureDeferred
async def test_a_viewer_connected_does_not_hold_the_service_stop(watched, logged):
    stream = await EventStream.open(watched.admin_port)
    await watched.stop()
    await wait_for(lambda: stream.reading.called, what="the stream ended by the service")
    assert stream.frames[0][0] == "hello"
    assert not [message for message in logged if "still unanswered" in message]
    assert not watched.service.getServiceNamed("live").watched


# With worker processes

@pytest.mark.twistd
def test_with_workers_each_viewer_sees_the_requests_of_the_worker_it_is_connected_to(tmp_path, database_url):
    port, admin_port = free_port(), free_port()
    (tmp_path / "app.yaml").write_text(f"listen: {listen_on(port)}\nadmin_listen: {listen_on(admin_port)}\n"
                                       f"database_url: '{database_url}'\nworkers: 2\n" + GAME_CONFIG)

    def post_timestamp(timestamp: int) -> None:
        status, _ = post_json(port, ROUTE, {"secret_key": SECRET, "events": [{**START, "timestamp": timestamp}]})
        assert status == 200

    def timestamps(stream) -> list[tuple[int, int]]:
        return [(entry["pid"], json.loads(entry["values"][0][1])["timestamp"]) for entry in stream.entries]

    with serve(tmp_path, "-c", "app.yaml") as run:
        wait_until_ready(port, run)
        wait_until(lambda: all(f"database#info worker {n}] ready" in run.output for n in (1, 2)),
                   what="both workers ready")
        pids = {int(n): int(pid) for n, pid in re.findall(r"started worker (\d+) \(pid (\d+)\)", run.output)}
        stream = EventStream(admin_port, "")
        # With worker 1 stopped, worker 2 takes every connection: the stream's, then the posts.
        os.kill(pids[1], signal.SIGSTOP)
        try:
            threading.Thread(target=stream._read, daemon=True).start()
            wait_until(lambda: stream.frames, what="the stream's hello")
            assert stream.frames[0] == ("hello", {"pid": pids[2], "size": 100, "recorded": 0, "apps": ["mygame"]})
            post_timestamp(1)
            post_timestamp(2)
        finally:
            os.kill(pids[1], signal.SIGCONT)
        # Worker 1 answers these, and its own feed has no viewer: the stream never shows them.
        os.kill(pids[2], signal.SIGSTOP)
        try:
            post_timestamp(3)
            post_timestamp(4)
        finally:
            os.kill(pids[2], signal.SIGCONT)
        os.kill(pids[1], signal.SIGSTOP)
        try:
            post_timestamp(5)
        finally:
            os.kill(pids[1], signal.SIGCONT)
        wait_until(lambda: len(stream.entries) >= 3, what="three entries on the stream")
        assert timestamps(stream) == [(pids[2], 1), (pids[2], 2), (pids[2], 5)]
        stream.connection.sock.shutdown(socket.SHUT_RDWR)
    assert run.returncode == 0
