"""GET /metrics: the counters move exactly with what happened."""

import pytest
import pytest_twisted

from support.configs import START
from support.metrics import scrape, value

pytestmark = pytest.mark.service


@pytest_twisted.ensureDeferred
async def test_counters_move_exactly_with_what_happened(game):
    client = game.client
    assert (await client.post_events("mygame", "game_events", [START, START])).status == 200
    assert (await client.post_events("mygame", "game_events", [START])).status == 200
    bad = await client.post_events("mygame", "game_events", [START, {"timestamp": "x"}, START])
    assert bad.status == 400
    assert (await client.post_events("mygame", "game_events", [START], secret="wrong")).status == 403

    metrics = await scrape(game.client)
    assert value(metrics, "attolytics_events_inserted_total", app="mygame", table="game_events") == 3
    assert value(metrics, "attolytics_events_rejected_total", app="mygame", reason="invalid") == 3
    assert value(metrics, "attolytics_events_rejected_total", app="mygame", reason="wrong_key") == 1
    route = "/apps/{app}/events/{event_type}"
    assert value(metrics, "attolytics_requests_total", route=route, status="200") == 2
    assert value(metrics, "attolytics_requests_total", route=route, status="400") == 1
    assert value(metrics, "attolytics_requests_total", route=route, status="403") == 1
    assert value(metrics, "attolytics_request_seconds_count") == 4
    assert value(metrics, "attolytics_writer_batch_rows_sum") == 3
    assert value(metrics, "attolytics_writer_batch_rows_count") == 2
    assert value(metrics, "attolytics_writer_queue_rows") == 0
    assert value(metrics, "attolytics_writer_queue_limit_rows") == 100_000  # max_queued_rows
    assert value(metrics, "attolytics_database_ready") == 1


@pytest_twisted.ensureDeferred
async def test_database_not_ready_shows_0(start):
    running = await start(url="postgresql://nobody@127.0.0.1:9/none", wait=False)
    metrics = await scrape(running.client)
    assert value(metrics, "attolytics_database_ready") == 0
