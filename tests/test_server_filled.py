"""Columns the service fills, over HTTP into PostgreSQL: the time a request arrived, and the client's
address as a proxy hop forwards it, from a trusted and from an untrusted peer."""

import time
from datetime import datetime, timezone

import pytest
import pytest_twisted

from support.configs import SECRET, SHARED_TABLE_CONFIG

pytestmark = pytest.mark.service

VISITS = f"""
tables:
  visits:
    columns:
      - {{name: page, type: text, required: true}}
      - {{name: at, type: timestamptz, source: received_at, required: true}}
      - {{name: ip, type: inet, source: client_ip}}
      - {{name: net, type: inet, source: client_ip, anonymize: true}}
      - {{name: ip_text, type: text, source: client_ip}}
apps:
  - app_id: web
    app_secret_key: {SECRET}
    event_types: [{{event_type_id: visits}}]
"""
# The tests' requests come from 127.0.0.1: as a proxy's would.
BEHIND_A_PROXY = "trusted_proxies: [127.0.0.1, 10.0.0.0/8]\n" + VISITS


async def visit(running, forwarded=None, events=({"page": "/"},)):
    headers = {"X-Forwarded-For": forwarded} if forwarded else None
    answer = await running.client.post_events("web", "visits", list(events), headers=headers)
    assert answer.status == 200, answer.body


ROWS = "select page, host(ip), host(net), ip_text from visits order by page"


@pytest_twisted.ensureDeferred
async def test_behind_a_trusted_proxy_the_forwarded_client_is_stored(start, sql):
    running = await start(BEHIND_A_PROXY)
    await visit(running, "198.51.100.23, 10.0.0.5", [{"page": "/v4"}])
    await visit(running, "2001:db8:abcd:12::7", [{"page": "/v6"}])
    await visit(running, None, [{"page": "/direct"}])
    assert sql(ROWS) == [
        ("/direct", "127.0.0.1", "127.0.0.0", "127.0.0.1"),
        ("/v4", "198.51.100.23", "198.51.100.0", "198.51.100.23"),
        ("/v6", "2001:db8:abcd:12::7", "2001:db8:abcd::", "2001:db8:abcd:12::7"),
    ]


@pytest_twisted.ensureDeferred
async def test_from_an_untrusted_peer_the_forwarded_header_is_not_believed(start, sql):
    running = await start(VISITS)
    await visit(running, "198.51.100.23", [{"page": "/forged"}])
    assert sql(ROWS) == [("/forged", "127.0.0.1", "127.0.0.0", "127.0.0.1")]


@pytest_twisted.ensureDeferred
async def test_received_at_is_one_moment_for_all_events_of_a_request(start, sql):
    running = await start(VISITS)
    before = datetime.fromtimestamp(time.time(), timezone.utc)
    await visit(running, None, [{"page": "/a"}, {"page": "/b"}, {"page": "/c"}])
    after = datetime.fromtimestamp(time.time(), timezone.utc)
    moments = sql("select at from visits")
    assert len(moments) == 3 and len(set(moments)) == 1
    assert before <= moments[0][0] <= after


@pytest_twisted.ensureDeferred
async def test_an_event_naming_a_filled_column_is_refused(start, sql):
    running = await start(VISITS)
    answer = await running.client.post_events("web", "visits", [{"page": "/", "ip": "192.0.2.1"}])
    assert answer.status == 400
    assert answer.json()["field"] == "ip"
    assert sql("select count(*) from visits") == [(0,)]




@pytest_twisted.ensureDeferred
async def test_the_app_and_the_event_type_are_stored_from_both_routes(start, sql):
    running = await start(SHARED_TABLE_CONFIG)
    client = running.client
    assert (await client.post_events("android", "level_up", [{"level": 1}])).status == 200
    answer = await client.request("POST", "/apps/ios/events", {"secret_key": SECRET, "events": [
        {"_t": "level_lost", "level": 2}, {"_t": "level_up", "level": 3}]})
    assert answer.status == 200, answer.body
    assert sql("select level, app, kind from plays order by level") == [
        (1, "android", "level_up"), (2, "ios", "level_lost"), (3, "ios", "level_up")]
