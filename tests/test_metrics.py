"""GET /metrics: the counters move exactly with what happened."""

import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families

START = {"timestamp": 1554130180, "event_type": "game_start"}


async def scrape(running) -> dict:
    """{(sample name, frozenset(labels)): value} from /metrics."""
    answer = await running.client.request("GET", "/metrics")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.body.decode())
        for sample in family.samples
    }


def value(metrics, name, **labels):
    return metrics.get((name, frozenset(labels.items())), 0.0)


@pytest_twisted.ensureDeferred
async def test_counters_move_exactly_with_what_happened(seed):
    client = seed.client
    assert (await client.post_events("mygame", "game_events", [START, START])).status == 200
    assert (await client.post_events("mygame", "game_events", [START])).status == 200
    bad = await client.post_events("mygame", "game_events", [START, {"timestamp": "x"}, START])
    assert bad.status == 400
    assert (await client.post_events("mygame", "game_events", [START], secret="wrong")).status == 403

    metrics = await scrape(seed)
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
    assert value(metrics, "attolytics_database_ready") == 1


@pytest_twisted.ensureDeferred
async def test_database_not_ready_shows_0(start):
    running = await start(url="postgresql://nobody@127.0.0.1:9/none", wait=False)
    metrics = await scrape(running)
    assert value(metrics, "attolytics_database_ready") == 0
