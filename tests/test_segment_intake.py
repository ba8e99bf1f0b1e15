"""Segment's tracking API over plain HTTP: each call's row in its call table, a typed table beside
tracks, exactly once, the write key as Basic auth or in the body, gzip and text/plain, the checks
that name the message and its field, the limits, and refused requests kept."""

import base64
import gzip
import json

import pytest
import pytest_twisted
from twisted.internet.defer import ensureDeferred

from support.configs import segment_config
from support.waiting import wait_for

pytestmark = pytest.mark.service

KEY = "segment-write-key-0123"
OTHER_KEY = "another-write-key-4567"
CONFIG = "rejected_events: rejected\n" + segment_config(KEY, extra=f"""  web:
    secret_key: {OTHER_KEY}
    access_control_allow_origin: https://shop.example
    segment:
      schema: web
""")
SENT_AT = "2026-12-07T10:00:10.000Z"


def basic(key: str = KEY) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def track(message_id: str, event: str = "Level Completed", **properties) -> dict:
    return {"type": "track", "messageId": message_id, "userId": "ann", "event": event,
            "timestamp": "2026-12-07T10:00:00.000Z", "properties": properties,
            "context": {"library": {"name": "test"}}}


async def send(running, path: str, body: dict, headers=None, raw: bytes | None = None):
    headers = {"Content-Type": "application/json", **(headers or {})}
    data = raw if raw is not None else json.dumps(body).encode()
    return await running.client.request("POST", path, data, headers)


@pytest.fixture
def segment(start):
    running = pytest_twisted.blockon(ensureDeferred(start(CONFIG)))
    assert running.fatal == []
    return running


@pytest_twisted.ensureDeferred
async def test_batch_of_every_call_lands_in_its_table(segment, sql):
    batch = [
        track("m1", levelNumber=3, score=120, extra="kept"),
        track("m2", event="Item Bought", itemName="sword"),
        {"type": "identify", "messageId": "m3", "userId": "ann", "traits": {"plan": "pro"}},
        {"type": "page", "messageId": "m4", "anonymousId": "a1", "name": "Home", "category": "Docs",
         "properties": {"path": "/"}},
        {"type": "screen", "messageId": "m5", "userId": "ann", "name": "Shop", "properties": {"tab": 2}},
        {"type": "group", "messageId": "m6", "userId": "ann", "groupId": "g1", "traits": {"size": 5}},
        {"type": "alias", "messageId": "m7", "userId": "ann", "previousId": "a1"},
    ]
    answer = await send(segment, "/v1/batch", {"batch": batch, "sentAt": SENT_AT,
                                               "context": {"app": {"name": "mygame"}}}, basic())
    # Counted in messages: the typed row of m1 is no message of its own.
    assert (answer.status, answer.json()) == (200, {"success": True, "inserted": 7, "duplicates": 0})
    tracks = sql("SELECT id, user_id, event, event_text, properties, context, "
                 "timestamp = received_at - interval '10 seconds', original_timestamp, sent_at "
                 "FROM mygame.tracks ORDER BY id")
    assert [row[:5] for row in tracks] == [
        ("m1", "ann", "level_completed", "Level Completed", {"extra": "kept"}),
        ("m2", "ann", "item_bought", "Item Bought", {"itemName": "sword"}),
    ]
    assert tracks[0][5] == {"app": {"name": "mygame"}, "library": {"name": "test"}}
    assert tracks[0][6] is True  # the device's clock was 10 s behind when it sent
    assert tracks[0][7].isoformat() == "2026-12-07T10:00:00+00:00"
    assert sql("SELECT id, user_id, level_number, score, timestamp = (SELECT timestamp FROM mygame.tracks "
               "WHERE id = 'm1') FROM level_completed") == [("m1", "ann", 3, 120, True)]
    assert sql("SELECT id, traits FROM mygame.identifies") == [("m3", {"plan": "pro"})]
    assert sql("SELECT id, anonymous_id, name, category, properties FROM mygame.pages") == [
        ("m4", "a1", "Home", "Docs", {"path": "/"})]
    assert sql("SELECT id, name, properties FROM mygame.screens") == [("m5", "Shop", {"tab": 2})]
    assert sql("SELECT id, group_id, traits FROM mygame.groups") == [("m6", "g1", {"size": 5})]
    assert sql("SELECT id, user_id, previous_id FROM mygame.aliases") == [("m7", "ann", "a1")]


@pytest_twisted.ensureDeferred
async def test_resent_and_repeated_message_ids_are_stored_once(segment, sql):
    body = {"batch": [track("r1", levelNumber=1), track("r1", levelNumber=1), track("r2", levelNumber=2)]}
    first = await send(segment, "/v1/batch", body, basic())
    assert first.json() == {"success": True, "inserted": 2, "duplicates": 1}
    again = await send(segment, "/v1/batch", body, basic())
    assert (again.status, again.json()["success"]) == (200, True)
    assert again.json() == {"success": True, "inserted": 0, "duplicates": 3}
    assert sql("SELECT id, count(*) FROM mygame.tracks GROUP BY id ORDER BY id") == [("r1", 1), ("r2", 1)]
    assert sql("SELECT id, count(*) FROM level_completed GROUP BY id ORDER BY id") == [("r1", 1), ("r2", 1)]


@pytest_twisted.ensureDeferred
async def test_single_calls_short_forms_body_key_text_plain_and_gzip(segment, sql):
    message = {"userId": "bo", "event": "Opened", "messageId": "s1", "writeKey": KEY}
    assert (await send(segment, "/v1/track", message)).status == 200
    short = {"type": "identify", "userId": "bo", "messageId": "s2", "writeKey": KEY}
    assert (await send(segment, "/v1/i", short, {"Content-Type": "text/plain"})).status == 200
    zipped = gzip.compress(json.dumps({"batch": [{**message, "type": "track", "messageId": "s3"}]}).encode())
    answer = await send(segment, "/v1/b", {}, {**basic(), "Content-Encoding": "gzip"}, raw=zipped)
    assert answer.status == 200
    assert sql("SELECT id FROM mygame.tracks ORDER BY id") == [("s1",), ("s3",)]
    assert sql("SELECT id FROM mygame.identifies") == [("s2",)]


@pytest.mark.parametrize("message, field", [
    ({"type": "shout", "userId": "ann"}, "type"),
    ({"type": "track", "event": "Opened"}, "userId"),
    ({"type": "track", "userId": "ann"}, "event"),
    ({"type": "group", "userId": "ann"}, "groupId"),
    ({"type": "alias", "userId": "ann"}, "previousId"),
    ({"type": "alias", "anonymousId": "x", "previousId": "p"}, "userId"),
    ({"type": "track", "userId": "ann", "event": "Level Completed"}, "properties.level_number"),
    ({"type": "track", "userId": "ann", "event": "Level Completed",
      "properties": {"levelNumber": "three"}}, "properties.levelNumber"),
    ({"type": "track", "userId": "ann", "event": "Opened", "timestamp": "yesterday"}, "timestamp"),
    ({"type": "track", "userId": "ann", "event": "Opened", "properties": [1]}, "properties"),
])
@pytest_twisted.ensureDeferred
async def test_a_bad_message_refuses_the_request_naming_it_and_its_field(segment, sql, message, field):
    batch = [track("ok1", levelNumber=1), {"messageId": "bad", **message}]
    answer = await send(segment, "/v1/batch", {"batch": batch}, basic())
    assert answer.status == 400, answer.body
    assert (answer.json()["event"], answer.json()["field"]) == (1, field)
    assert sql("SELECT count(*) FROM mygame.tracks") == [(0,)]
    await wait_for(lambda: sql("SELECT count(*) FROM rejected") == [(2,)], what="the refused messages kept")
    kept = sql("SELECT event_type, event_index, at_fault, field FROM rejected ORDER BY event_index")
    assert kept[1] == (message.get("type") if isinstance(message.get("type"), str) else None, 1, True, field)
    assert kept[0][1:3] == (0, False)


@pytest_twisted.ensureDeferred
async def test_write_key_missing_unknown_or_malformed_is_401_in_json(segment):
    for headers, body in [({}, {"batch": []}), (basic("nope"), {"batch": []}),
                          ({"Authorization": "Bearer " + KEY}, {"batch": []}),
                          (basic(KEY), {"batch": [], "writeKey": OTHER_KEY})]:
        answer = await send(segment, "/v1/batch", body, headers)
        assert answer.status == 401, (headers, answer.body)
        assert "error" in answer.json()


@pytest_twisted.ensureDeferred
async def test_limits_of_a_message_and_of_a_batch(segment, sql):
    big = track("big", event="Opened", blob="x" * (33 * 1024))
    answer = await send(segment, "/v1/batch", {"batch": [track("small", event="Opened"), big]}, basic())
    assert (answer.status, answer.json()["event"]) == (413, 1)
    many = {"batch": [track(f"m{i}", event="Opened", blob="y" * 20_000) for i in range(30)]}
    assert (await send(segment, "/v1/batch", many, basic())).status == 413
    assert sql("SELECT count(*) FROM mygame.tracks") == [(0,)]


@pytest_twisted.ensureDeferred
async def test_cors_per_app_with_a_preflight_for_the_sdks_headers(segment):
    preflight = await segment.client.request("OPTIONS", "/v1/batch", None, {
        "Origin": "https://shop.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,anonymousid"})
    assert preflight.status == 204
    assert "AnonymousId" in preflight.headers["access-control-allow-headers"]
    # mygame allows any page; web only its shop.
    assert preflight.headers["access-control-allow-origin"] in ("*", "https://shop.example")
    elsewhere = {**basic(OTHER_KEY), "Origin": "https://elsewhere.example"}
    answer = await send(segment, "/v1/batch", {"batch": [track("c1", event="Opened")]}, elsewhere)
    assert answer.status == 403
    shop = {**basic(OTHER_KEY), "Origin": "https://shop.example"}
    answer = await send(segment, "/v1/batch", {"batch": [track("c2", event="Opened")]}, shop)
    assert answer.status == 200
    assert answer.headers["access-control-allow-origin"] == "https://shop.example"


@pytest_twisted.ensureDeferred
async def test_settings_and_source_config_point_the_sdks_here(segment):
    settings = await segment.client.request("GET", f"/v1/projects/{KEY}/settings")
    assert settings.status == 200
    io = settings.json()["integrations"]["Segment.io"]
    assert io["apiHost"] == f"127.0.0.1:{segment.port}/v1" and io["apiKey"] == KEY
    assert (await segment.client.request("GET", "/v1/projects/unknown-key/settings")).status == 404
    source = await segment.client.request("GET", "/sourceConfig?view=all", None, basic())
    assert source.status == 200 and source.json()["source"]["enabled"] is True
    assert (await segment.client.request("GET", "/sourceConfig")).status == 401


@pytest_twisted.ensureDeferred
async def test_rudderstacks_ways_traits_in_context_and_errors_with_code_and_message(segment, sql):
    identify = {"type": "identify", "messageId": "t1", "userId": "cy", "anonymousId": None,
                "context": {"traits": {"plan": "team"}}, "originalTimestamp": "2026-12-07T10:00:00Z"}
    assert (await send(segment, "/v1/batch", {"batch": [identify]}, basic())).status == 200
    assert sql("SELECT traits, anonymous_id, original_timestamp IS NOT NULL FROM mygame.identifies") == [
        ({"plan": "team"}, None, True)]
    refused = await send(segment, "/v1/batch", {"batch": [{"type": "track", "userId": "cy"}]}, basic())
    assert refused.status == 400
    assert {key: refused.json()[key] for key in ("success", "code", "field")} == {
        "success": False, "code": "invalid", "field": "event"}
    # The SDKs log the message alone: it names the message and field at fault.
    assert refused.json()["message"] == refused.json()["error"] + " (message 0, field event)"


@pytest_twisted.ensureDeferred
async def test_a_reload_turns_the_intake_on_with_its_schema_made(start, sql, tmp_path):
    without = CONFIG.replace("    segment:\n      schema: web\n", "")
    running = await start(without, path=tmp_path / "app.yaml")
    message = {"batch": [track("w1", event="Opened")]}
    assert (await send(running, "/v1/batch", message, basic(OTHER_KEY))).status == 401
    (tmp_path / "app.yaml").write_text(CONFIG.replace("schema: web", "schema: webshop"))
    assert await running.service.reload() is True
    assert (await send(running, "/v1/batch", message, basic(OTHER_KEY))).status == 200
    assert sql("SELECT id FROM webshop.tracks") == [("w1",)]


@pytest_twisted.ensureDeferred
async def test_rudderstacks_browser_ways_slashed_config_its_resend_headers_and_an_empty_user_id(segment, sql):
    preflight = await segment.client.request("OPTIONS", "/v1/track", None, {
        "Origin": "https://shop.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "anonymousid,authorization,content-type,sentat,rsa-retry-attempt"})
    allowed = {name.strip().lower() for name in preflight.headers["access-control-allow-headers"].split(",")}
    assert {"anonymousid", "authorization", "content-type", "sentat", "rsa-retry-attempt", "x-retry-count"} <= allowed
    config = await segment.client.request("GET", f"/sourceConfig/?writeKey={KEY}", None, basic())
    assert config.status == 200 and config.json()["source"]["destinations"] == []
    message = {"userId": "", "anonymousId": "anon-7", "event": "Opened", "messageId": "e1", "channel": "web"}
    assert (await send(segment, "/v1/track", message, basic())).status == 200
    assert sql("SELECT user_id, anonymous_id FROM mygame.tracks") == [("", "anon-7")]
    nobody = {"userId": "", "event": "Opened", "messageId": "e2"}
    answer = await send(segment, "/v1/track", nobody, basic())
    assert (answer.status, answer.json()["field"]) == (400, "userId")


@pytest_twisted.ensureDeferred
async def test_a_large_batch_with_fractions_and_huge_integers_is_measured_and_stored(segment, sql):
    fill = "z" * 30_000  # the body passes 32 KB, so every message is measured
    batch = [track("f1", event="Bought", price=9.5, count=2**70, note=fill), track("f2", event="Bought", price=0.1)]
    answer = await send(segment, "/v1/batch", {"batch": batch}, basic())
    assert answer.status == 200, answer.body
    assert sql("SELECT properties->>'price', properties->>'count' FROM mygame.tracks ORDER BY id") == [
        ("9.5", str(2**70)), ("0.1", None)]


@pytest_twisted.ensureDeferred
async def test_the_events_cap_and_the_rate_limit_count_messages(start, sql):
    limited = CONFIG.replace("    access_control_allow_origin: https://shop.example\n",
                             "    access_control_allow_origin: https://shop.example\n"
                             "    rate_limit: {events_per_second: 0.001, burst: 3}\n")
    running = await start("max_events_per_request: 4\n" + limited)
    five = {"batch": [track(f"c{i}", event="Opened") for i in range(5)]}
    assert (await send(running, "/v1/batch", five, basic())).status == 413
    three = {"batch": [track(f"r{i}", event="Opened") for i in range(3)]}
    assert (await send(running, "/v1/batch", three, basic(OTHER_KEY))).status == 200
    again = await send(running, "/v1/batch", {"batch": [track("r9", event="Opened")]}, basic(OTHER_KEY))
    assert again.status == 429 and int(again.headers["retry-after"]) > 0
    assert sql("SELECT count(*) FROM web.tracks") == [(3,)]


@pytest.mark.parametrize("trusted, protocol", [("", "http"), ("trusted_proxies: [127.0.0.1]\n", "https")])
@pytest_twisted.ensureDeferred
async def test_the_settings_name_the_scheme_a_trusted_proxy_says_the_page_used(start, trusted, protocol):
    running = await start(trusted + CONFIG)
    settings = await running.client.request("GET", f"/v1/projects/{KEY}/settings", None, {
        "Host": "analytics.example.com", "X-Forwarded-Proto": "https"})
    io = settings.json()["integrations"]["Segment.io"]
    assert (io["apiHost"], io["protocol"]) == ("analytics.example.com/v1", protocol)


@pytest_twisted.ensureDeferred
async def test_the_access_log_shows_no_write_key_sent_in_a_path_or_a_query(segment, logged):
    await segment.client.request("GET", f"/v1/projects/{KEY}/settings")
    await segment.client.request("GET", f"/sourceConfig/?p=npm&writeKey={KEY}", None, basic())
    await send(segment, "/v1/batch", {"batch": [track("k1", event="Opened")]}, basic())
    access = [line for line in logged if " GET " in line or " POST " in line]
    assert len(access) == 3, logged
    assert not [line for line in access if KEY in line]
    assert any("/v1/projects/{write_key}/settings" in line for line in access)


@pytest_twisted.ensureDeferred
async def test_what_a_review_found_answered_as_it_should_be(start, segment):
    # A type that is no string names the field, rather than failing.
    answer = await send(segment, "/v1/batch", {"batch": [{"type": ["track"], "userId": "a", "event": "x"}]}, basic())
    assert (answer.status, answer.json()["field"]) == (400, "type")
    # A refusal for an origin the app does not allow carries no other app's CORS answer.
    refused = await send(segment, "/v1/batch", {"batch": [track("o1", event="Opened")]},
                         {**basic(OTHER_KEY), "Origin": "https://evil.example"})
    assert refused.status == 403 and "access-control-allow-origin" not in refused.headers
    # Before the database is ready, a track for a typed table is told so (not an internal error).
    early = await start(CONFIG, url="postgresql://nobody@127.0.0.1:9/none", wait=False)
    waiting = await send(early, "/v1/batch", {"batch": [track("w1", levelNumber=1)]}, basic())
    assert waiting.status == 503 and "not ready" in waiting.json()["error"]


@pytest_twisted.ensureDeferred
async def test_a_missing_common_column_of_a_typed_table_is_named_as_the_message_names_it(start):
    config = segment_config(KEY, columns="      - {name: anonymous_id, type: text, required: true}\n")
    running = await start(config)
    answer = await send(running, "/v1/batch", {"batch": [track("a1", levelNumber=2)]}, basic())
    assert (answer.status, answer.json()["event"], answer.json()["field"]) == (400, 0, "anonymousId")


@pytest_twisted.ensureDeferred
async def test_an_event_type_named_segment_is_kept_by_our_rules_not_segments(start, sql):
    """Segment's refusals are told apart by the route, not by an event type's name: a refused
    body of our own route with a wrong key is not kept, even for an event type called segment."""
    running = await start(f"""
tables:
  segment:
    columns:
      - {{name: n, type: i64}}
rejected_events: rejected
apps:
  game:
    secret_key: {KEY}
    tables: [segment]
""")
    anonymous = {"secret_key": "not-the-key", "events": "not a list"}
    assert (await running.client.request("POST", "/apps/game/events/segment", anonymous)).status == 400
    keyed = {"secret_key": KEY, "events": [{"n": "three"}]}
    answer = await running.client.request("POST", "/apps/game/events/segment", keyed)
    assert answer.status == 400 and "code" not in answer.json()
    await wait_for(lambda: sql("SELECT count(*) FROM rejected") != [(0,)], what="the keyed refusal kept")
    assert sql("SELECT event_type, field FROM rejected") == [("segment", "n")]
