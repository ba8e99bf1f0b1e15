"""Apps that only servers use stay private: an app no web page may post to
(`access_control_allow_origin: []`) is left out of the browser client at /attolytics.js, and an
app with `openapi: false` (or under a top-level `openapi: false`) out of /openapi.json. In memory."""

import json
import re

import pytest

from attolytics.config import ConfigError, parse_config
from attolytics.http.browser import BrowserClient
from support.memory import InMemoryService

pytestmark = pytest.mark.unit

KEY = "private-apps-key"
TABLES = """
tables:
  clicks:
    columns:
      - {name: id, type: uuid, unique: true}
      - {name: page, type: text}
  ledger:
    columns:
      - {name: id, type: uuid, unique: true}
      - {name: amount_cents, type: i64, required: true}
"""
CONFIG = TABLES + f"""
apps:
  web:
    secret_key: {KEY}
    access_control_allow_origin: https://game.example
    tables: [clicks]
  billing:
    secret_key: {KEY}
    access_control_allow_origin: []
    openapi: false
    rate_limit: {{events_per_second: 10, burst: 20}}
    tables: [ledger]
"""


def script_values(body: bytes) -> dict:
    """The values the service wrote into the script: name -> parsed JSON."""
    return {name: json.loads(value) for name, value in re.findall(r"var ([A-Z_]+) = (.*);", body.decode())
            if name in ("EVENTS_AT_ONCE", "EVENT_IDS", "EVENT_TYPES")}


def test_an_app_no_page_may_post_to_is_left_out_of_the_script():
    service = InMemoryService(CONFIG)
    values = script_values(service.request("GET", "/attolytics.js").body)
    assert values == {"EVENTS_AT_ONCE": {}, "EVENT_IDS": {}, "EVENT_TYPES": {"web": ["clicks"]}}
    # With the event id columns start-up finds, too.
    ids = {"web": {"clicks": "id"}, "billing": {"ledger": "id"}}
    client = BrowserClient(service.config, ids)
    assert script_values(client.plain)["EVENT_IDS"] == {"web": {"clicks": "id"}}
    assert b"billing" not in client.plain and b"ledger" not in client.plain


def test_the_script_names_every_app_pages_may_post_to_with_its_event_types():
    config = CONFIG.replace("access_control_allow_origin: []", 'access_control_allow_origin: "*"')
    values = script_values(InMemoryService(config).request("GET", "/attolytics.js").body)
    assert values["EVENT_TYPES"] == {"billing": ["ledger"], "web": ["clicks"]}
    assert values["EVENTS_AT_ONCE"] == {"billing": 20}


def test_no_page_may_post_to_an_app_with_an_empty_list_of_origins():
    service = InMemoryService(CONFIG)
    event = [{"amount_cents": 5}]
    for origin in ("https://game.example", "null"):
        refused = service.post_events("billing", "ledger", event, KEY, headers={"Origin": origin})
        assert refused.status == 403 and "access-control-allow-origin" not in refused.headers
        assert refused.json()["error"] == (f"pages from {origin!r} may not post to app 'billing'; it takes "
                                           "events from no web page (access_control_allow_origin: [])")
        preflight = service.request("OPTIONS", "/apps/billing/events/ledger", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST"})
        assert preflight.status == 204 and "access-control-allow-origin" not in preflight.headers
    # A server sends no Origin.
    assert service.post_events("billing", "ledger", event, KEY).status == 200
    assert service.post_events("web", "clicks", [{"page": "/"}], KEY,
                               headers={"Origin": "https://game.example"}).status == 200


def openapi_of(config_text: str) -> dict:
    return json.loads(InMemoryService(config_text).request("GET", "/openapi.json").body)


def test_an_app_with_openapi_false_is_left_out_of_the_document():
    document = openapi_of(CONFIG)
    assert [path for path in document["paths"] if path.startswith("/apps/")] == [
        "/apps/web/events", "/apps/web/events/clicks"]
    text = json.dumps(document)
    assert "billing" not in text and "ledger" not in text and "amount_cents" not in text


def test_a_top_level_openapi_false_leaves_out_every_app_that_does_not_say_true():
    config = "openapi: false\n" + CONFIG.replace("    openapi: false\n", "    openapi: true\n")
    document = openapi_of(config)
    assert [path for path in document["paths"] if path.startswith("/apps/")] == [
        "/apps/billing/events", "/apps/billing/events/ledger"]
    assert "/healthz" in document["paths"] and "clicks" not in json.dumps(document)
    preflight = document["paths"]["/apps/billing/events"]["options"]["description"]
    assert "Allowed origins: none (no web page may post to this app)" in preflight


@pytest.mark.parametrize("text, message", [
    (CONFIG.replace("openapi: false", "openapi: no-thanks"),
     "test.conf.yaml: apps.billing.openapi: expected true or false, got 'no-thanks'"),
    ("openapi: 0\n" + CONFIG, "test.conf.yaml: openapi: expected true or false, got 0"),
    (TABLES + f"apps:\n  - {{app_id: a, app_secret_key: {KEY}, openapi: []}}\n",
     "test.conf.yaml: apps[0].openapi: expected true or false, got a list"),
])
def test_the_openapi_key_is_true_or_false(text, message):
    with pytest.raises(ConfigError) as error:
        parse_config(text, "test.conf.yaml")
    assert str(error.value) == message


def test_both_forms_read_the_new_keys():
    listed = parse_config(TABLES + f"""
openapi: false
apps:
  - app_id: a
    app_secret_key: {KEY}
    access_control_allow_origin: []
    event_types: [{{event_type_id: clicks}}]
  - app_id: b
    app_secret_key: {KEY}
    openapi: true
    event_types: [{{event_type_id: ledger}}]
""", "test.conf.yaml")
    a, b = listed.apps["a"], listed.apps["b"]
    assert (a.browsers, a.openapi, a.allows_any_origin) == (False, False, False)
    assert (b.browsers, b.openapi, b.allows_any_origin) == (True, True, True)
    mapped = parse_config(CONFIG, "test.conf.yaml").apps
    assert (mapped["web"].browsers, mapped["web"].openapi) == (True, True)
    assert (mapped["billing"].browsers, mapped["billing"].openapi) == (False, False)
