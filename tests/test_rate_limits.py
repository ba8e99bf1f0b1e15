"""Limits against abuse, in memory with the site's clock moved by the test: the per-app rate limit
(429 with Retry-After, nothing stored, recovery), by client (two clients apart, through a
trusted proxy, memory bounded), a request past the burst (413), the batch cap (413 before any
event is checked), keys in the list form, and the configuration's refusals."""

import pytest

from attolytics.config import ConfigError, RateLimit, parse_config
from attolytics.http.rate_limits import Buckets
from support.memory import InMemoryService

pytestmark = pytest.mark.unit

KEY = "s3cret-key"


def config(rate_limit: str = "", extra: str = "") -> str:
    limit = f"    rate_limit: {rate_limit}\n" if rate_limit else ""
    return (f"{extra}tables:\n  clicks:\n    columns:\n      - {{name: n, type: i32}}\n"
            f"apps:\n  game:\n    secret_key: {KEY}\n{limit}    tables: [clicks]\n")


def post(service, count: int, headers=None, n=1):
    return service.post_events("game", "clicks", [{"n": n}] * count, KEY, headers)


# --- the bucket ----------------------------------------------------------------------------------


def test_a_bucket_starts_full_refills_at_its_rate_and_says_how_long_to_wait():
    buckets = Buckets(RateLimit(2.0, 10, "app"))
    assert buckets.take(None, 10, now=100.0) is None
    assert buckets.take(None, 1, now=100.0) == 0.5
    assert buckets.take(None, 3, now=101.0) == 0.5  # 2 tokens back after a second; nothing taken
    assert buckets.take(None, 2, now=101.0) is None
    assert buckets.take(None, 10, now=1000.0) is None  # never more than the burst
    assert buckets.take(None, 1, now=1000.0) == 0.5


def test_client_buckets_are_bounded_and_the_least_recently_seen_forgotten():
    buckets = Buckets(RateLimit(1.0, 5, "client"), max_buckets=3)
    for client in ("a", "b", "c"):
        assert buckets.take(client, 5, now=0.0) is None
    assert buckets.take("a", 1, now=0.0) == 1.0  # seen again: now the most recent
    assert buckets.take("d", 5, now=0.0) is None
    assert len(buckets) == 3
    assert buckets.take("b", 5, now=0.0) is None  # b was forgotten: a full bucket again
    assert buckets.take("a", 1, now=0.0) == 1.0  # a was not


# --- the routes ----------------------------------------------------------------------------------


def test_a_burst_over_the_limit_gets_429_with_retry_after_stores_nothing_and_recovers():
    service = InMemoryService(config("{events_per_second: 2, burst: 10}"))
    assert post(service, 6).status == 200
    refused = post(service, 6)
    assert refused.status == 429
    assert refused.headers["retry-after"] == "1"  # 2 tokens short at 2 a second
    assert refused.json() == {"error": "app 'game' takes at most 2 events a second; retry in 1 s"}
    assert post(service, 6).status == 429
    assert sum(len(rows) for rows in service.writer.rows.values()) == 6
    service.clock.advance(1)
    assert post(service, 6).status == 200
    assert post(service, 1).status == 429
    service.clock.advance(3.5)
    assert post(service, 7).status == 200
    assert sum(len(rows) for rows in service.writer.rows.values()) == 19


def test_retry_after_is_the_whole_seconds_until_the_request_fits():
    service = InMemoryService(config("{events_per_second: 0.5, burst: 10}"))
    assert post(service, 10).status == 200
    assert post(service, 3).headers["retry-after"] == "6"
    service.clock.advance(5.9)
    assert post(service, 3).headers["retry-after"] == "1"
    service.clock.advance(0.1)
    assert post(service, 3).status == 200


def test_a_request_larger_than_the_burst_can_never_fit():
    service = InMemoryService(config("{events_per_second: 100, burst: 5}"))
    answer = post(service, 6)
    assert answer.status == 413
    assert answer.json()["error"] == ("a request of 6 events can never fit the rate limit of app 'game', "
                                      "which takes at most 5 at once; send fewer per request")
    assert post(service, 5).status == 200


def test_by_client_keeps_two_clients_apart_also_behind_a_trusted_proxy():
    service = InMemoryService(config("{events_per_second: 1, burst: 3, by: client}",
                                     "trusted_proxies: [10.0.0.0/8]\n"), peer="10.1.1.1")
    alice = {"X-Forwarded-For": "203.0.113.7"}
    bob = {"X-Forwarded-For": "198.51.100.9, 203.0.113.7"}  # a hop the proxy added: bob is last
    assert post(service, 3, alice).status == 200
    assert post(service, 1, alice).status == 429
    assert post(service, 3, {"X-Forwarded-For": "203.0.113.7, 198.51.100.9"}).status == 200
    assert post(service, 1, bob).status == 429
    assert post(service, 3, {"X-Forwarded-For": "192.0.2.1"}).status == 200
    answer = post(service, 1, alice)
    assert answer.json()["error"] == "app 'game' takes at most 1 event a second from each client; retry in 1 s"


def test_by_client_believes_no_forwarded_address_from_an_untrusted_peer():
    service = InMemoryService(config("{events_per_second: 1, burst: 3, by: client}"), peer="192.0.2.50")
    assert post(service, 3, {"X-Forwarded-For": "203.0.113.7"}).status == 200
    # Another forged address is the same client: the peer's bucket is empty.
    assert post(service, 1, {"X-Forwarded-For": "198.51.100.9"}).status == 429
    assert post(service, 1).status == 429


def test_the_batch_cap_refuses_before_any_event_is_checked():
    service = InMemoryService(config(extra="max_events_per_request: 3\n"))
    answer = service.post_events("game", "clicks", [{"n": "not a number"}] * 4, KEY)
    assert answer.status == 413
    assert answer.json() == {"error": "a request may carry at most 3 events (max_events_per_request); "
                                      "this one carries 4"}
    assert post(service, 3).status == 200
    assert parse_config(config(), "x.yaml").max_events_per_request == 10_000


def test_the_metrics_count_rate_limited_events_and_429_answers():
    service = InMemoryService(config("{events_per_second: 1, burst: 2}"))
    post(service, 2)
    post(service, 2)
    rendered = service.metrics.render().decode()
    assert 'attolytics_events_rejected_total{app="game",reason="rate_limited"} 2.0' in rendered
    assert 'attolytics_requests_total{route="/apps/{app}/events/{event_type}",status="429"} 1.0' in rendered
    assert "_created" not in rendered


def test_the_openapi_document_lists_429_and_the_limits_of_rate_limited_apps_only():
    text = config("{events_per_second: 1, burst: 4, by: client}", "max_events_per_request: 100\n") + (
        "  open:\n    secret_key: other-key\n    tables: [clicks]\n")
    paths = InMemoryService(text).request("GET", "/openapi.json").json()["paths"]
    for route in ("/apps/game/events", "/apps/game/events/clicks"):
        post = paths[route]["post"]
        assert post["responses"]["429"]["headers"]["Retry-After"]
        assert post["description"].endswith(
            " A request carries at most 4 events (more: 413, nothing stored). The app takes at most 1 event "
            "a second from each client, 4 at once: past that, 429 with Retry-After.")
    for route in ("/apps/open/events", "/apps/open/events/clicks"):
        post = paths[route]["post"]
        assert "429" not in post["responses"]
        assert post["description"].endswith(" A request carries at most 100 events (more: 413, nothing stored).")


# --- the configuration ---------------------------------------------------------------------------


LIST_FORM = """\
apps:
  - app_id: game
    {keys}
    event_types: [{{event_type_id: clicks}}]
tables:
  clicks:
    columns: [{{name: n, type: i32}}]
"""


@pytest.mark.parametrize("keys, expected", [
    ("app_secret_keys: [old-key, new-key]", (b"old-key", b"new-key")),
    ("app_secret_key: old-key\n    app_secret_keys: [new-key, old-key]", (b"old-key", b"new-key")),
    ("app_secret_key: only-key", (b"only-key",)),
])
def test_list_form_apps_rotate_keys_with_app_secret_keys(keys, expected):
    config = parse_config(LIST_FORM.format(keys=keys), "x.yaml")
    assert config.apps["game"].secret_keys == expected


def test_both_keys_of_a_list_form_app_are_taken():
    service = InMemoryService(LIST_FORM.format(keys="app_secret_keys: [old-key, new-key]"))
    for key in ("old-key", "new-key"):
        assert service.post_events("game", "clicks", [{"n": 1}], key).status == 200
    assert service.post_events("game", "clicks", [{"n": 1}], "other-key").status == 403


@pytest.mark.parametrize("text, message", [
    (config("{events_per_second: 0, burst: 5}"),
     "x.yaml: apps.game.rate_limit.events_per_second: expected a number of events above 0, got 0"),
    (config("{events_per_second: 5}"), "x.yaml: apps.game.rate_limit.burst: missing"),
    (config("{events_per_second: 5, burst: 5, by: ip}"),
     "x.yaml: apps.game.rate_limit.by: expected app (one limit for the app) or client (one per client "
     "address), got 'ip'"),
    (config(extra="max_events_per_request: 0\n"),
     "x.yaml: max_events_per_request: expected a positive integer, got 0"),
    (config("{}"), "x.yaml: apps.game.rate_limit: give events_per_second and burst, such as "
                   "{events_per_second: 200, burst: 1000}"),
    (config("{events_per_second: 1e-3, burst: 5}"),
     "x.yaml: apps.game.rate_limit.events_per_second: expected a number of events above 0, got '1e-3' (YAML reads "
     "an exponent without a dot as text: write 1.0e-3)"),
    (LIST_FORM.format(keys="app_secret_keys: []"), "x.yaml: apps[0].app_secret_keys: list at least one key"),
    (LIST_FORM.format(keys='access_control_allow_origin: "*"'), "x.yaml: apps[0].app_secret_key: missing (or list keys in app_secret_keys)"),
])
def test_a_wrong_limit_or_key_list_is_named(text, message):
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "x.yaml")
    assert str(caught.value).startswith(message)
