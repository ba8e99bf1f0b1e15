"""Every rule decided before any write, answered by the real routes and site in memory with a fake
writer: the body's shape, the events against their columns, the keys, the routes, the content
types and encodings, `_t`, header columns, CORS, and 503 before the database is ready.

Nothing here needs PostgreSQL or a socket; what a write or a real connection means is tested
over HTTP in test_api, test_clients and test_declared_tables.
"""

import gzip
import json

import pytest
from twisted.logger import capturedLogs, formatEvent, globalLogPublisher

from support.configs import (
    COUNTRY,
    DECLARED_CONFIG,
    GAME_CONFIG,
    GAME_KEY,
    GAME_ORIGIN,
    NEW_KEY,
    OPEN_KEY,
    PURCHASE,
    ROTATING_CONFIG,
    SECRET,
    SESSION,
    START,
)
from support.memory import InMemoryService

pytestmark = pytest.mark.unit

ROUTE = "/apps/mygame/events/game_events"
JSON = {"Content-Type": "application/json"}



@pytest.fixture
def game_service():
    """The game_events configuration (table game_events, app mygame), in memory."""
    return InMemoryService(GAME_CONFIG)


@pytest.fixture
def rotating_service():
    return InMemoryService(ROTATING_CONFIG)


@pytest.fixture
def declared_service():
    return InMemoryService(DECLARED_CONFIG)


def nothing_written(service: InMemoryService) -> bool:
    return service.writer.inserts == []


def body(events=(START,), key=SECRET) -> bytes:
    document = {"events": list(events)}
    if key is not None:
        document["secret_key"] = key
    return json.dumps(document).encode()


# The typed route: 200 with nothing to write


def test_empty_events_list_inserts_nothing(game_service):
    answer = game_service.post_events("mygame", "game_events", [], SECRET)
    assert (answer.status, answer.json()) == (200, {"inserted": 0})
    assert nothing_written(game_service)


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
def test_malformed_body_is_400(game_service, raw, words):
    answer = game_service.request("POST", ROUTE, raw, JSON)
    assert answer.status == 400
    assert words in answer.json()["error"]
    assert nothing_written(game_service)


# 400: the events, with the event index and the field


def rejected(service, events):
    answer = service.post_events("mygame", "game_events", events, SECRET)
    assert answer.status == 400, answer.body
    assert nothing_written(service)
    return answer.json()


def test_event_that_is_not_an_object(game_service):
    body = rejected(game_service, [START, "game_end"])
    assert body["event"] == 1 and "must be a JSON object" in body["error"]


def test_unknown_key_is_refused_by_name(game_service):
    body = rejected(game_service, [dict(START, level=3)])
    assert (body["event"], body["field"]) == (0, "level")
    assert "no column 'level'" in body["error"]


def test_sql_in_a_key_is_just_an_unknown_key(game_service):
    key = 'score"); drop table game_events; --'
    body = rejected(game_service, [dict(START, **{key: 1})])
    assert body["field"] == key


def test_missing_required_field(game_service):
    body = rejected(game_service, [START, {"timestamp": 1554130213}])
    assert (body["event"], body["field"]) == (1, "event_type")
    assert "required" in body["error"] and "missing" in body["error"]


def test_null_required_field(game_service):
    body = rejected(game_service, [{"timestamp": None, "event_type": "x"}])
    assert (body["event"], body["field"]) == (0, "timestamp")
    assert "null" in body["error"]


@pytest.mark.parametrize("value", [True, 1.5, "42", 2**63, [1], {"a": 1}])
def test_wrong_value_for_bigint(game_service, value):
    body = rejected(game_service, [START, dict(START, score=value)])
    assert (body["event"], body["field"]) == (1, "score")


def test_huge_number_is_refused_not_lost(game_service):
    raw = b'{"secret_key": "%s", "events": [{"timestamp": 1e400, "event_type": "x"}]}' % SECRET.encode()
    answer = game_service.request("POST", ROUTE, raw, JSON)
    assert answer.status == 400
    assert answer.json()["field"] == "timestamp"
    assert nothing_written(game_service)


@pytest.mark.parametrize("text", ["nul\x00byte", "lone \ud800 surrogate"])
def test_strings_postgres_cannot_store_are_refused(game_service, text):
    raw = ('{"secret_key": "%s", "events": [{"timestamp": 1, "event_type": %s}]}' % (
        SECRET, json.dumps(text))).encode()
    answer = game_service.request("POST", ROUTE, raw, JSON)
    assert answer.status == 400
    assert answer.json()["field"] == "event_type"
    assert nothing_written(game_service)


def test_one_bad_event_stores_nothing(game_service):
    events = [dict(START, timestamp=i) for i in range(500)] + [dict(START, score="high")]
    body = rejected(game_service, events)
    assert (body["event"], body["field"]) == (500, "score")


# 401, 403, 404, 405, 415


def test_missing_secret_key_is_401(game_service):
    answer = game_service.post(ROUTE, {"events": [START]})
    assert answer.status == 401 and "secret_key" in answer.json()["error"]
    assert nothing_written(game_service)


def test_wrong_secret_key_is_403(game_service):
    answer = game_service.post_events("mygame", "game_events", [START], "guess")
    assert answer.status == 403 and "secret_key" in answer.json()["error"]
    assert nothing_written(game_service)


@pytest.mark.parametrize(
    "path", ["/apps/othergame/events/game_events", "/apps/mygame/events/other", "/nowhere", "/"]
)
def test_unknown_app_event_type_or_route_is_404(game_service, path):
    answer = game_service.post(path, {"secret_key": SECRET, "events": [START]})
    assert answer.status == 404
    assert answer.json()["error"]
    assert nothing_written(game_service)


REPORTS_NO_ROUTE = ["/apps/a%2F/events/game_events", "/apps/%00%2F/events/game_events",
                    "/apps/mygame//events", "/apps/mygame//events/game_events"]


@pytest.mark.parametrize("path", REPORTS_NO_ROUTE)
def test_a_path_with_an_empty_segment_is_404_not_a_redirect(game_service, path):
    # werkzeug would redirect to the path without the empty segment; an API client follows none.
    answer = game_service.post(path, {"secret_key": SECRET, "events": [START]})
    assert (answer.status, answer.json()) == (404, {"error": "no such route"})
    assert nothing_written(game_service)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405_with_allow(game_service, method):
    answer = game_service.request(method, ROUTE)
    assert answer.status == 405
    assert "POST" in answer.headers["allow"]
    assert answer.json()["error"]


@pytest.mark.parametrize("content_type", [None, "text/html", "application/x-www-form-urlencoded",
                                          "application/json; charset=latin-1"])
def test_other_content_types_are_415(game_service, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    raw = b'{"secret_key": "%s", "events": []}' % SECRET.encode()
    answer = game_service.request("POST", ROUTE, raw, headers)
    assert answer.status == 415
    assert answer.json()["error"]


@pytest.mark.parametrize("path", ["/apps/%ff/events/game_events", "/apps/mygame/events/%C3%28"])
def test_url_that_is_not_utf8_is_a_json_400(game_service, path):
    answer = game_service.post(path, {"secret_key": SECRET, "events": []})
    assert answer.status == 400
    assert "UTF-8" in answer.json()["error"]


# 503 before start-up has checked the tables


@pytest.mark.parametrize(
    "path, event", [(ROUTE, START), ("/apps/mygame/events", dict(START, _t="game_events"))]
)
def test_before_the_database_is_ready_posts_are_503_with_retry_after(path, event):
    service = InMemoryService(GAME_CONFIG, ready=False)
    answer = service.post(path, {"secret_key": SECRET, "events": [event]})
    assert answer.status == 503
    assert int(answer.headers["retry-after"]) > 0
    assert "retry" in answer.json()["error"]
    assert nothing_written(service)


# Keys: rotated keys, Bearer headers


@pytest.mark.parametrize("key", [SECRET, NEW_KEY])
def test_every_listed_key_is_accepted_while_rotating(rotating_service, key):
    answer = rotating_service.request("POST", ROUTE, body(key=key), JSON)
    assert (answer.status, answer.json()) == (200, {"inserted": 1})
    assert rotating_service.writer.rows == {"game_events": [(1554130180, "game_start")]}


@pytest.mark.parametrize(
    "authorization, status",
    [("Bearer wrong", 403), ("Basic dXNlcjpwYXNz", 401), ("Bearer ", 401)],
)
def test_bad_authorization_header(rotating_service, authorization, status):
    headers = dict(JSON, Authorization=authorization)
    answer = rotating_service.request("POST", ROUTE, body(key=None), headers)
    assert answer.status == status
    assert nothing_written(rotating_service)


def test_body_key_and_bearer_must_both_be_right(rotating_service):
    headers = dict(JSON, Authorization="Bearer wrong")
    answer = rotating_service.request("POST", ROUTE, body(key=SECRET), headers)
    assert answer.status == 403
    assert nothing_written(rotating_service)


def test_no_key_anywhere_is_401(rotating_service):
    answer = rotating_service.request("POST", ROUTE, body(key=None), JSON)
    assert answer.status == 401 and "Bearer" in answer.json()["error"]


# Beacons and compressed bodies


def test_text_plain_that_is_not_json_is_400(rotating_service):
    answer = rotating_service.request("POST", ROUTE, b"hello", {"Content-Type": "text/plain"})
    assert answer.status == 400


def test_a_small_bomb_is_413_without_inflating_it_all():
    service = InMemoryService(ROTATING_CONFIG + "max_body_bytes: 10000\n")
    bomb = gzip.compress(b"[" + b" " * 5_000_000 + b"]")  # 5 MB of spaces, ~5 KB packed
    assert len(bomb) < 10_000
    answer = service.request("POST", ROUTE, bomb, dict(JSON, **{"Content-Encoding": "gzip"}))
    assert answer.status == 413 and "inflates past" in answer.json()["error"]
    assert nothing_written(service)


@pytest.mark.parametrize(
    "encoding, data, status",
    [
        ("gzip", gzip.compress(body())[:-10], 400),   # cut short
        ("gzip", gzip.compress(body()) + b"junk", 400),  # trailing bytes
        ("gzip", b"not gzip at all", 400),
        ("br", b"whatever", 415),
    ],
)
def test_bad_compressed_bodies(rotating_service, encoding, data, status):
    answer = rotating_service.request("POST", ROUTE, data, dict(JSON, **{"Content-Encoding": encoding}))
    assert answer.status == status
    assert answer.json()["error"]
    assert nothing_written(rotating_service)


# Declared tables: the _t route


def post_declared(service, events, key=GAME_KEY, app="game", headers=None, path=None):
    return service.post(path or f"/apps/{app}/events", {"secret_key": key, "events": events}, headers)


def test_a_bad_event_in_one_table_stores_nothing_in_any(declared_service):
    answer = post_declared(declared_service, [SESSION, PURCHASE, dict(PURCHASE, amount="lots")],
                           headers=COUNTRY)
    assert answer.status == 400
    assert (answer.json()["event"], answer.json()["field"]) == (2, "amount")
    assert nothing_written(declared_service)


@pytest.mark.parametrize(
    "event, field_error",
    [
        ({"ts": 1}, "_t is missing"),
        ({"_t": 5, "ts": 1}, "_t must be a string"),
        ({"_t": None, "ts": 1}, "_t is missing"),
    ],
)
def test_missing_or_non_string_t_is_400(declared_service, event, field_error):
    answer = post_declared(declared_service, [SESSION, event])
    assert answer.status == 400
    body = answer.json()
    assert (body["event"], body["field"]) == (1, "_t")
    assert field_error in body["error"]
    assert nothing_written(declared_service)


@pytest.mark.parametrize(
    "app, key, table", [("game", GAME_KEY, "nowhere"), ("open", OPEN_KEY, "purchases")]
)
def test_table_unknown_or_not_allowed_is_404(declared_service, app, key, table):
    answer = post_declared(declared_service, [SESSION, dict(PURCHASE, _t=table)], key=key, app=app,
                           headers=COUNTRY)
    assert answer.status == 404
    assert (answer.json()["event"], answer.json()["field"]) == (1, "_t")
    assert nothing_written(declared_service)


def test_auth_and_shape_rules_are_those_of_the_typed_route(declared_service):
    assert post_declared(declared_service, [SESSION], key="wrong").status == 403
    no_key = declared_service.post("/apps/game/events", {"events": [SESSION]})
    assert no_key.status == 401
    assert post_declared(declared_service, [SESSION], app="nobody").status == 404
    wrong_type = declared_service.request(
        "POST", "/apps/game/events", b"{}", {"Content-Type": "text/csv"}
    )
    assert wrong_type.status == 415
    assert declared_service.request("GET", "/apps/game/events").status == 405


def test_the_typed_route_refuses_a_t_key(declared_service):
    answer = post_declared(declared_service, [SESSION], path="/apps/game/events/sessions")
    assert answer.status == 400 and answer.json()["field"] == "_t"
    assert nothing_written(declared_service)


# Declared columns: PostgreSQL types, required


def test_declared_postgres_types_are_enforced(declared_service):
    answer = post_declared(declared_service, [dict(SESSION, player="x" * 21)])
    assert answer.status == 400 and "varchar(20)" in answer.json()["error"]
    answer = post_declared(declared_service, [dict(PURCHASE, amount=1.005)], headers=COUNTRY)
    assert answer.status == 400 and "numeric(10,2)" in answer.json()["error"]
    assert nothing_written(declared_service)


def test_required_declared_column_left_out_is_400(declared_service):
    answer = post_declared(declared_service, [{"_t": "sessions", "player": "ann"}])
    assert answer.status == 400 and answer.json()["field"] == "ts"
    assert nothing_written(declared_service)


# Header columns


def test_missing_required_header_is_400(declared_service):
    answer = post_declared(declared_service, [PURCHASE])
    assert answer.status == 400
    body = answer.json()
    assert (body["event"], body["field"]) == (0, "country")
    assert "X-Country" in body["error"]
    assert nothing_written(declared_service)


def test_body_cannot_set_a_header_column(declared_service):
    answer = post_declared(declared_service, [dict(SESSION, user_agent="forged")],
                           headers={"User-Agent": "real"})
    assert answer.status == 400
    assert answer.json()["field"] == "user_agent"
    assert "User-Agent" in answer.json()["error"]
    assert nothing_written(declared_service)


# CORS


def preflight_headers(origin):
    return {"Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"}


@pytest.mark.parametrize("path", ["/apps/game/events", "/apps/game/events/sessions"])
def test_preflight_from_an_allowed_origin(declared_service, path):
    answer = declared_service.request("OPTIONS", path, headers=preflight_headers(GAME_ORIGIN))
    assert answer.status == 204
    h = answer.headers
    assert h["access-control-allow-origin"] == GAME_ORIGIN
    assert "POST" in h["access-control-allow-methods"]
    assert "content-type" in h["access-control-allow-headers"].lower()
    assert int(h["access-control-max-age"]) > 0
    assert "Origin" in h["vary"]


def test_preflight_from_another_origin_gets_no_allow_header(declared_service):
    answer = declared_service.request("OPTIONS", "/apps/game/events",
                                      headers=preflight_headers("https://evil.example"))
    assert answer.status == 204
    assert "access-control-allow-origin" not in answer.headers
    assert "access-control-allow-methods" not in answer.headers


def test_app_without_origins_allows_all(declared_service):
    answer = declared_service.request("OPTIONS", "/apps/open/events",
                                      headers=preflight_headers("https://anyone.example"))
    assert answer.status == 204
    assert answer.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize("key, status", [(GAME_KEY, 200), ("wrong", 403)])
def test_post_answers_carry_the_allow_header_errors_included(declared_service, key, status):
    answer = post_declared(declared_service, [SESSION], key=key, headers={"Origin": GAME_ORIGIN})
    assert answer.status == status
    assert answer.headers["access-control-allow-origin"] == GAME_ORIGIN
    assert declared_service.writer.row_count == (1 if status == 200 else 0)
    refused = post_declared(declared_service, [SESSION], key=key,
                            headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in refused.headers
    assert declared_service.writer.row_count == (1 if status == 200 else 0)


@pytest.mark.parametrize("content_type", ["application/json", "text/plain;charset=UTF-8"])
@pytest.mark.parametrize("origin", ["https://evil.example", "null", ""])
@pytest.mark.parametrize("path", ["/apps/game/events", "/apps/game/events/sessions"])
def test_a_page_of_an_origin_not_listed_stores_nothing(declared_service, content_type, origin, path):
    headers = {"Origin": origin, "Content-Type": content_type}
    event = SESSION if path.endswith("/events") else {k: v for k, v in SESSION.items() if k != "_t"}
    refused = post_declared(declared_service, [event], headers=headers, path=path)
    assert refused.status == 403
    assert f"{origin!r} may not post to app 'game'" in refused.json()["error"]
    assert nothing_written(declared_service)


def test_405_allows_post_and_options(declared_service):
    answer = declared_service.request("PUT", "/apps/game/events")
    assert answer.status == 405
    assert set(answer.headers["allow"].replace(" ", "").split(",")) == {"POST", "OPTIONS"}


def test_a_fault_of_the_fast_path_is_logged_and_the_precise_path_answers(game_service):
    """The fast path only reads the body: if it fails, the events are checked and stored as
    ever, and the operator is told, with the traceback, at most once a minute."""
    def broken(*args):
        raise KeyError("a fault in the fast path")
    game_service.routes.intake.native._fast.decode = broken
    logged = []
    globalLogPublisher.addObserver(logged.append)
    try:
        answers = [game_service.post_events("mygame", "game_events", [START], SECRET) for _ in range(3)]
        game_service.clock.advance(60)
        answers.append(game_service.post_events("mygame", "game_events", [START], SECRET))
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert [(answer.status, answer.json()) for answer in answers] == [(200, {"inserted": 1})] * 4
    assert [rows for insert in game_service.writer.inserts for _, rows in insert] == [
        [(1554130180, "game_start", None)]] * 4
    failures = [event for event in logged if "log_failure" in event]
    said = "the fast path failed on a body of app mygame ({} since the last such message); the precise path answers them"
    assert [formatEvent(event) for event in failures] == [said.format(1), said.format(3)]
    assert all(event["log_failure"].check(KeyError) for event in failures)


def test_a_quiet_site_logs_no_access_line_yet_counts_the_request(game_service):
    """--quiet (the process's access_log False): no line is built for a request; it is counted."""
    def site_lines() -> list:
        with capturedLogs() as logged:
            assert game_service.request("GET", "/healthz").status == 200
        return [event for event in logged if event.get("log_namespace") == "attolytics.site"]

    assert len(site_lines()) == 1
    game_service.site.access_log = False
    counted = game_service.metrics.child(game_service.metrics.requests, "/healthz", "200")._value.get()
    assert site_lines() == []
    assert game_service.metrics.child(game_service.metrics.requests, "/healthz", "200")._value.get() == counted + 1


def test_a_fault_of_the_fast_form_of_the_rows_is_logged_and_the_precise_form_answers(game_service):
    """The C decoder read the body, then making rows from what it read failed: the events are
    stored by the precise form all the same, and the operator is told with the traceback."""
    table = game_service.tables["game_events"]

    def broken(*args):
        raise KeyError("a fault in the fast form")
    table.decoded_rows = broken
    with capturedLogs() as logged:
        answer = game_service.post_events("mygame", "game_events", [START], SECRET)
    assert (answer.status, answer.json()) == (200, {"inserted": 1})
    assert game_service.writer.rows["game_events"] == [(1554130180, "game_start", None)]
    failures = [event for event in logged if "log_failure" in event]
    assert len(failures) == 1 and failures[0]["log_failure"].check(KeyError)


@pytest.mark.parametrize("raw", [body(), b"{not json"], ids=["good body", "not json"])
def test_a_malformed_authorization_header_is_read_after_the_body_and_its_events_counted(game_service, raw):
    """The body is read (and its events counted) before the Authorization header: a body that is
    not JSON says so, whatever the header; one that is gets 401 with its events counted."""
    rejected = game_service.metrics.events_rejected
    before = game_service.metrics.child(rejected, "mygame", "unauthenticated")._value.get()
    answer = game_service.request("POST", "/apps/mygame/events/game_events", raw,
                                  {"Content-Type": "application/json", "Authorization": "Basic abc"})
    after = game_service.metrics.child(rejected, "mygame", "unauthenticated")._value.get()
    if raw == b"{not json":
        assert answer.status == 400 and answer.json()["error"].startswith("body is not valid JSON")
    else:
        assert (answer.status, answer.json()) == (401, {"error": "Authorization must be Bearer <secret key>"})
        assert after == before + 1
