"""GET /openapi.json of the service in the test's process: 503 until the tables are checked, the
map form with rotated keys described without its keys, and a route label of its own in /metrics."""

import pytest
import pytest_twisted

from support.configs import SECRET
from support.openapi import event_schema
from support.metrics import scrape, value

pytestmark = pytest.mark.service

MAP_CONFIG = f"""
apps:
  mygame:
    secret_keys: [{SECRET}, rotated-{SECRET}]
    tables: [game_events]
"""


@pytest_twisted.ensureDeferred
async def test_503_with_retry_after_until_the_tables_are_checked(start):
    running = await start(MAP_CONFIG, url="postgresql://nobody@127.0.0.1:9/none", wait=False)
    answer = await running.client.request("GET", "/openapi.json")
    assert answer.status == 503
    assert answer.headers["content-type"] == "application/json"
    assert int(answer.headers["retry-after"]) > 0
    assert set(answer.json()) == {"error"}


@pytest_twisted.ensureDeferred
async def test_the_map_form_with_rotated_keys_is_described_without_its_keys(start, sql):
    sql("CREATE TABLE game_events (timestamp bigint NOT NULL, event_type text NOT NULL, score bigint)")
    running = await start(MAP_CONFIG)
    answer = await running.client.request("GET", "/openapi.json")
    assert answer.status == 200
    assert SECRET.encode() not in answer.body
    paths = answer.json()["paths"]
    assert {"/apps/mygame/events", "/apps/mygame/events/game_events"} <= set(paths)
    assert event_schema(answer.json(), "/apps/mygame/events/game_events")["required"] == [
        "timestamp", "event_type"]


@pytest_twisted.ensureDeferred
async def test_the_document_has_a_route_label_of_its_own_in_the_metrics(game):
    assert (await game.client.request("GET", "/openapi.json")).status == 200
    metrics = await scrape(game.client)
    assert value(metrics, "attolytics_requests_total", route="/openapi.json", status="200") == 1
