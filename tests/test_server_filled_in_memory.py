"""Columns the service fills, decided in memory: when the request arrived (the site's clock), the
client's address behind the proxies the configuration trusts, anonymised on request, and the app
and the event type a request or an event is for."""

from datetime import datetime, timezone

import pytest

from attolytics.config import ConfigError, parse_config
from attolytics.storage.declarations import declared_types
from support.configs import SECRET, SHARED_TABLE_CONFIG
from support.memory import InMemoryService

pytestmark = pytest.mark.unit

VISITS = f"""
trusted_proxies: [10.0.0.0/8, 192.168.1.1, "fd00::/8"]
tables:
  visits:
    columns:
      - {{name: page, type: text, required: true}}
      - {{name: at, type: timestamptz, source: received_at, required: true}}
      - {{name: local_at, type: timestamp without time zone, source: received_at}}
      - {{name: ip, type: inet, source: client_ip}}
      - {{name: net, type: text, source: client_ip, anonymize: true}}
apps:
  - app_id: web
    app_secret_key: {SECRET}
    event_types: [{{event_type_id: visits}}]
"""


def visit(service: InMemoryService, forwarded=None, events=None):
    headers = [("X-Forwarded-For", value) for value in (forwarded or [])]
    answer = service.post_events("web", "visits", events or [{"page": "/"}], SECRET, headers)
    assert answer.status == 200, answer.body
    return service.writer.rows["visits"][-1]


def filled(row) -> dict:
    return dict(zip(["page", "at", "local_at", "ip", "net"], row))


def test_received_at_is_when_the_request_arrived_on_the_sites_clock():
    service = InMemoryService(VISITS)
    service.clock.advance(1764496535.25)
    service.post_events("web", "visits", [{"page": "/a"}, {"page": "/b"}], SECRET)
    rows = service.writer.rows["visits"]
    moment = datetime(2025, 11, 30, 9, 55, 35, 250000, tzinfo=timezone.utc)
    assert [filled(row)["at"] for row in rows] == [moment, moment]  # one value for the whole request
    assert filled(rows[0])["local_at"] == moment  # PostgreSQL keeps its UTC wall-clock time


@pytest.mark.parametrize("peer, forwarded, ip, net", [
    # An untrusted peer is the client, whatever it forwards.
    ("203.0.113.7", ["198.51.100.1"], "203.0.113.7", "203.0.113.0"),
    # A trusted proxy: the rightmost address that is not itself trusted.
    ("192.168.1.1", ["198.51.100.9"], "198.51.100.9", "198.51.100.0"),
    ("192.168.1.1", ["198.51.100.9, 203.0.113.5, 10.1.2.3"], "203.0.113.5", "203.0.113.0"),
    ("192.168.1.1", ["198.51.100.9", "10.9.9.9"], "198.51.100.9", "198.51.100.0"),  # two headers
    ("192.168.1.1", ["10.1.1.1, 10.2.2.2"], "10.1.1.1", "10.1.1.0"),  # every hop trusted
    ("192.168.1.1", [], "192.168.1.1", "192.168.1.0"),  # nothing forwarded
    # A hop that is not an address: who sent it cannot be known. Empty hops are no hops.
    ("192.168.1.1", ["198.51.100.9, unknown, 10.3.3.3"], None, None),
    ("192.168.1.1", ["198.51.100.9, "], "198.51.100.9", "198.51.100.0"),
    ("192.168.1.1", ["198.51.100.9,,10.3.3.3"], "198.51.100.9", "198.51.100.0"),
    ("192.168.1.1", ["198.51.100.9:4711"], "198.51.100.9", "198.51.100.0"),
    ("192.168.1.1", ["[2001:db8::7]:443"], "2001:db8::7", "2001:db8::"),
    # IPv6: the last 80 bits are zeroed; an IPv4-mapped address is IPv4.
    ("192.168.1.1", ["2001:db8:abcd:12:34:56:78:9"], "2001:db8:abcd:12:34:56:78:9", "2001:db8:abcd::"),
    ("fd00::1", ["2001:db8:1:2::3"], "2001:db8:1:2::3", "2001:db8:1::"),
    ("2001:db8:ff::1", ["198.51.100.1"], "2001:db8:ff::1", "2001:db8:ff::"),
    ("192.168.1.1", ["::ffff:198.51.100.4"], "198.51.100.4", "198.51.100.0"),
])
def test_the_client_address_behind_trusted_proxies(peer, forwarded, ip, net):
    row = filled(visit(InMemoryService(VISITS, peer=peer), forwarded))
    assert (row["ip"], row["net"]) == (ip, net)


def test_a_trusted_proxy_may_be_written_as_an_ipv4_mapped_address():
    config = VISITS.replace('trusted_proxies: [10.0.0.0/8, 192.168.1.1, "fd00::/8"]',
                            'trusted_proxies: ["::ffff:203.0.113.0/120"]')
    row = filled(visit(InMemoryService(config, peer="203.0.113.5"), ["198.51.100.1"]))
    assert row["ip"] == "198.51.100.1"


def test_without_trusted_proxies_the_peer_is_the_client():
    config = VISITS.replace('trusted_proxies: [10.0.0.0/8, 192.168.1.1, "fd00::/8"]\n', "")
    row = filled(visit(InMemoryService(config, peer="10.0.0.1"), ["198.51.100.1"]))
    assert (row["ip"], row["net"]) == ("10.0.0.1", "10.0.0.0")


@pytest.mark.parametrize("field", ["at", "ip", "net"])
def test_an_event_may_not_name_a_column_the_service_fills(field):
    service = InMemoryService(VISITS)
    answer = service.post_events("web", "visits", [{"page": "/"}, {"page": "/", field: "x"}], SECRET)
    assert answer.status == 400
    assert (answer.json()["event"], answer.json()["field"]) == (1, field)
    assert "filled by the service" in answer.json()["error"]
    assert service.writer.row_count == 0


def test_a_unix_socket_peer_is_a_trusted_proxy():
    service = InMemoryService(VISITS, peer="unix")
    assert filled(visit(service, ["198.51.100.9"]))["ip"] == "198.51.100.9"
    # With nothing forwarded, the client's address is unknown: NULL.
    assert (filled(visit(service))["ip"], filled(visit(service))["net"]) == (None, None)


def test_a_required_address_that_cannot_be_known_is_refused_naming_the_column():
    config = VISITS.replace("{name: ip, type: inet, source: client_ip}",
                            "{name: ip, type: inet, source: client_ip, required: true}")
    service = InMemoryService(config, peer="unix")
    answer = service.post_events("web", "visits", [{"page": "/"}], SECRET)
    assert answer.status == 400
    assert (answer.json()["event"], answer.json()["field"]) == (0, "ip")
    assert "is required and filled with the client's address, which is unknown" in answer.json()["error"]


@pytest.mark.parametrize("column, words", [
    ("{name: c, type: i64, source: received_at}", "source: received_at fills only a timestamp column, not bigint"),
    ("{name: c, type: date, source: received_at}", "source: received_at fills only a timestamp column, not date"),
    ("{name: c, type: uuid, source: client_ip}", "source: client_ip fills only an inet, text or varchar"),
    ("{name: c, type: varchar(20), source: client_ip}", "of at least 45 characters, not character varying(20)"),
    ("{name: c, source: nowhere}",
     "source: expected one of received_at, client_ip, app_id, event_type, got 'nowhere'"),
    ("{name: c, header: X-Forwarded-For, source: client_ip}", "filled from a header or by the service, not both"),
    ("{name: c, anonymize: true}", "anonymize: only a column with source: client_ip can be anonymized"),
    ("{name: c, type: uuid, unique: true, source: client_ip}", "unique: an event's id comes from the event"),
])
def test_server_filled_columns_that_cannot_be_are_config_mistakes(column, words):
    text = f"tables:\n  t:\n    columns: [{column}]\napps:\n  - {{app_id: a, app_secret_key: k}}\n"
    with pytest.raises(ConfigError) as caught:
        declared_types(parse_config(text, "my.yaml"))
    assert str(caught.value).startswith("my.yaml: tables.t.columns[0].")
    assert words in str(caught.value)


@pytest.mark.parametrize("proxies, words", [
    ("[not-an-address]", "trusted_proxies[0]: 'not-an-address' is not an IP address or network"),
    ("10.0.0.0/8", "trusted_proxies: expected a list"),
])
def test_trusted_proxies_must_be_addresses_or_networks(proxies, words):
    with pytest.raises(ConfigError) as caught:
        parse_config(f"trusted_proxies: {proxies}\napps:\n  - {{app_id: a, app_secret_key: k}}\n", "my.yaml")
    assert str(caught.value).startswith(f"my.yaml: {words}")




@pytest.mark.parametrize("note", [None, 1.5], ids=["read by the C decoder", "read by the strict parser"])
def test_the_app_and_the_event_type_fill_their_columns_on_both_routes(note):
    """On the typed route the route names the event type; on the _t route each event's own _t."""
    service = InMemoryService(SHARED_TABLE_CONFIG)
    extra = {} if note is None else {"note": note}  # a float in jsonb: decided by the strict parser
    assert service.post_events("ios", "level_lost", [{"level": 1, **extra}], SECRET).status == 200
    answer = service.post("/apps/ios/events", {"secret_key": SECRET, "events": [
        {"_t": "level_up", "level": 2, **extra}, {"_t": "level_lost", "level": 3, **extra}]})
    assert answer.status == 200, answer.body
    assert service.post_events("android", "level_up", [{"level": 4, **extra}], SECRET).status == 200
    rows = [row[:3] for row in service.writer.rows["plays"]]
    assert rows == [(1, "ios", "level_lost"), (2, "ios", "level_up"), (3, "ios", "level_lost"),
                    (4, "android", "level_up")]


@pytest.mark.parametrize("field", ["app", "kind"])
def test_an_event_may_not_name_the_app_or_the_event_type_column(field):
    service = InMemoryService(SHARED_TABLE_CONFIG)
    answer = service.post_events("ios", "level_up", [{"level": 1, field: "x"}], SECRET)
    assert answer.status == 400
    assert (answer.json()["event"], answer.json()["field"]) == (0, field)
    assert "is filled by the service" in answer.json()["error"]


@pytest.mark.parametrize("column, words", [
    ("{name: c, type: i64, source: app_id}", "source: app_id fills only a text or varchar column long enough "
                                             "for every id that fills it ('android'), not bigint"),
    ("{name: c, type: varchar(5), source: app_id}", "('android'), not character varying(5)"),
    ("{name: c, type: char(12), source: event_type}", "('level_lost'), not character(12)"),
    ("{name: c, type: varchar(9), source: event_type}", "('level_lost'), not character varying(9)"),
])
def test_an_app_or_event_type_column_must_hold_every_id(column, words):
    text = SHARED_TABLE_CONFIG.replace("{name: note, type: jsonb}", column)
    with pytest.raises(ConfigError) as caught:
        declared_types(parse_config(text, "my.yaml"))
    assert str(caught.value).startswith("my.yaml: tables.plays.columns[3].source: ")
    assert words in str(caught.value)
