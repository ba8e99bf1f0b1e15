"""Limits against abuse with the real service and PostgreSQL: a rate-limited burst stores nothing
and the app recovers once the (test's) clock has moved; under load, one client far over its
limit beside a well-behaved one, which sees only 200s, while forged addresses cannot make the
service keep more buckets than its bound."""

import json
import threading
import time
from datetime import datetime, timezone

import pytest
import pytest_twisted
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread

from support.configs import GAME_CONFIG, SECRET
from support.http import KeptAlive
from support.metrics import scrape, value

pytestmark = pytest.mark.service


def config(rate_limit: str) -> str:
    return ("trusted_proxies: [127.0.0.1]\n"
            "tables:\n  clicks:\n    columns:\n      - {name: n, type: i32}\n"
            f"apps:\n  game:\n    secret_key: {SECRET}\n    rate_limit: {rate_limit}\n    tables: [clicks]\n")


def clock_now() -> Clock:
    clock = Clock()
    clock.advance(datetime(2026, 11, 30, tzinfo=timezone.utc).timestamp())
    return clock


@pytest_twisted.ensureDeferred
async def test_a_rate_limited_burst_stores_nothing_and_the_app_recovers(start, sql):
    clock = clock_now()
    running = await start(config("{events_per_second: 5, burst: 20}"), clock=clock)
    assert running.fatal == []
    client = running.client
    assert (await client.post_events("game", "clicks", [{"n": 1}] * 20)).status == 200
    refused = await client.post_events("game", "clicks", [{"n": 2}] * 10)
    assert (refused.status, refused.headers["retry-after"]) == (429, "2")
    assert refused.json() == {"error": "app 'game' takes at most 5 events a second; retry in 2 s"}
    assert sql("select n, count(*) from clicks group by n") == [(1, 20)]
    clock.advance(1.5)  # 7.5 tokens: still short
    assert (await client.post_events("game", "clicks", [{"n": 2}] * 10)).status == 429
    clock.advance(0.5)
    assert (await client.post_events("game", "clicks", [{"n": 2}] * 10)).status == 200
    too_many = await client.post_events("game", "clicks", [{"n": 3}] * 21)
    assert too_many.status == 413
    assert sql("select n, count(*) from clicks group by n order by n") == [(1, 20), (2, 10)]
    metrics = await scrape(client)
    assert value(metrics, "attolytics_events_rejected_total", app="game", reason="rate_limited") == 20
    assert value(metrics, "attolytics_requests_total", route="/apps/{app}/events/{event_type}", status="429") == 2


class Client(threading.Thread):
    """Posts batches of `events` from the address `forwarded_for` (through the trusted proxy
    127.0.0.1), waiting `pause` seconds between them, until stopped; counts the statuses."""

    def __init__(self, port: int, events: int, forwarded_for, pause: float = 0.0):
        super().__init__(daemon=True)
        self.port, self.events, self.forwarded_for, self.pause = port, events, forwarded_for, pause
        self.stop = threading.Event()
        self.statuses: dict[int, int] = {}

    def run(self):
        body = json.dumps({"secret_key": SECRET, "events": [{"n": self.events}] * self.events}).encode()
        with KeptAlive(self.port) as connection:
            sent = 0
            while not self.stop.is_set():
                address = self.forwarded_for(sent) if callable(self.forwarded_for) else self.forwarded_for
                answer = connection.exchange("POST", "/apps/game/events/clicks", body,
                                             {"Content-Type": "application/json", "X-Forwarded-For": address})
                self.statuses[answer.status] = self.statuses.get(answer.status, 0) + 1
                sent += 1
                self.stop.wait(self.pause)


@pytest_twisted.ensureDeferred
async def test_one_client_far_over_its_limit_leaves_a_well_behaved_one_alone(start, sql):
    running = await start(config("{events_per_second: 200, burst: 400, by: client}"))
    assert running.fatal == []
    buckets = running.service.getServiceNamed("http").site.resource.routes.intake.admission.limits.buckets("game")
    buckets.max_buckets = 200  # the bound, made small enough to reach
    port = running.port
    polite = Client(port, 5, "198.51.100.1", pause=0.05)  # about 100 events a second
    flood = Client(port, 100, "203.0.113.66")  # as fast as it can, far over 200 a second
    spoofer = Client(port, 1, lambda n: f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}")
    for client in (polite, flood, spoofer):
        client.start()

    def enough():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (sum(polite.statuses.values()) < 40 or flood.statuses.get(429, 0) < 40
                                               or sum(spoofer.statuses.values()) < 600):
            time.sleep(0.05)

    await deferToThread(enough)
    for client in (polite, flood, spoofer):
        client.stop.set()
    await deferToThread(lambda: [client.join(10) for client in (polite, flood, spoofer)])
    assert set(polite.statuses) == {200} and polite.statuses[200] >= 40
    assert flood.statuses.get(429, 0) >= 40
    assert sum(spoofer.statuses.values()) >= 600 and len(buckets) <= 200
    stored = dict(sql("select n, count(*) from clicks group by n"))
    assert stored[5] == 5 * polite.statuses[200]
    assert stored[100] == 100 * flood.statuses.get(200, 0)


@pytest_twisted.ensureDeferred
async def test_a_list_form_app_takes_each_of_its_keys_while_they_rotate(start, sql):
    rotating = GAME_CONFIG.replace(f"app_secret_key: {SECRET}\n",
                                   f"app_secret_key: {SECRET}\n    app_secret_keys: [new-key]\n")
    running = await start(rotating)
    assert running.fatal == []
    for n, key in enumerate((SECRET, "new-key")):
        answer = await running.client.post_events("mygame", "game_events", [{"timestamp": n, "event_type": key}], key)
        assert (answer.status, answer.json()) == (200, {"inserted": 1})
        bearer = await running.client.request("POST", "/apps/mygame/events/game_events",
                                              {"events": [{"timestamp": 10 + n, "event_type": key}]},
                                              {"Authorization": f"Bearer {key}"})
        assert bearer.status == 200
    refused = await running.client.post_events("mygame", "game_events", [{"timestamp": 9, "event_type": "x"}], "old")
    assert refused.status == 403
    assert sql("select timestamp, event_type from game_events order by timestamp") == [
        (0, SECRET), (1, "new-key"), (10, SECRET), (11, "new-key")]
