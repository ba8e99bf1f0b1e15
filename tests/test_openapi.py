"""GET /openapi.json: a true description of the running service, proven by schemathesis against
the installed twistd plugin. One twistd process serves the module; its tables span the column
types, one of them declared in the config and one read from the catalog. Once the module is
done, its fixture checks at teardown what the schemathesis run stored and refused, and that the
process stops cleanly.
"""

import collections
import json
import os
from dataclasses import dataclass, field

import jsonschema_rs
import psycopg2
import pytest
import schemathesis
from schemathesis.core.parameters import ParameterLocation

from support.http import exchange, free_port
from support.openapi import event_schema, resolve
from support.twistd import STOP_TIMEOUT, Twistd, listen_on, serve, wait_until_ready

pytestmark = pytest.mark.twistd

KEY = "a-long-random-key-for-the-openapi-test"
SHOP_KEY = "the-second-app-has-a-key-of-its-own"
READY_WAIT = 60
# Hypothesis' draws per operation; the coverage phase adds its own boundary cases on top.
MAX_EXAMPLES = 30

# Declared in the config (created at start-up): one column of most types, and one header column.
# page_views is not declared: the service reads it from the catalog, generated column and default included.
CONFIG = f"""
tables:
  purchases:
    columns:
      - {{name: ts, type: timestamp, required: true}}
      - {{name: amount, type: "numeric(10,2)", required: true}}
      - {{name: points, type: "numeric(12)"}}
      - {{name: quantity, type: integer}}
      - {{name: total_cents, type: i64}}
      - {{name: weight, type: real}}
      - {{name: ratio, type: double precision}}
      - {{name: paid, type: boolean}}
      - {{name: note, type: text}}
      - {{name: sku, type: varchar(12)}}
      - {{name: country, type: char(2)}}
      - {{name: meta, type: jsonb}}
      - {{name: day, type: date}}
      - {{name: order_id, type: uuid}}
      - {{name: client, type: varchar(40), header: X-Client}}
apps:
  - app_id: game
    app_secret_key: {KEY}
    event_types:
      - event_type_id: purchase
        table: purchases
      - event_type_id: view
        table: page_views
  - app_id: shop
    app_secret_key: {SHOP_KEY}
    access_control_allow_origin: https://shop.example
    event_types:
      - event_type_id: purchases
"""

PAGE_VIEWS = """
CREATE TABLE page_views (
    id bigint GENERATED ALWAYS AS IDENTITY,
    page text NOT NULL,
    ms smallint,
    at timestamp without time zone,
    extra json,
    created timestamptz NOT NULL DEFAULT now()
)
"""
TABLES = ("purchases", "page_views")


# --- the service, once for the module ----------------------------------------------------------


@dataclass
class Live:
    """The running twistd, its database, and what the schemathesis run got."""

    run: Twistd
    port: int
    database: "psycopg2.extensions.connection"
    statuses: collections.Counter = field(default_factory=collections.Counter)
    inserted: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rows(self) -> int:
        """Rows in all the test's tables together."""
        with self.database.cursor() as cur:
            cur.execute("SELECT " + " + ".join(f"(SELECT count(*) FROM {table})" for table in TABLES))
            return cur.fetchone()[0]


def get(port: int, path: str):
    """GET on a fresh connection."""
    return exchange(port, "GET", path, timeout=10)


@pytest.fixture(scope="module")
def live(module_database, tmp_path_factory):
    """`twistd -n attolytics -q` on this module's database.

    At teardown, once every test of the module has run: SIGTERM stops the process cleanly; and
    when the schemathesis run took place (statuses were recorded), it reached the database and
    was refused too, never with a 5xx.
    """
    connection = psycopg2.connect(module_database)
    connection.autocommit = True
    with connection.cursor() as cur:
        cur.execute(PAGE_VIEWS)
    directory = tmp_path_factory.mktemp("openapi")
    (directory / "app.yaml").write_text(CONFIG)
    port = free_port()
    try:
        with serve(directory, "-c", "app.yaml", "--db-url", module_database,
                   "--listen", listen_on(port), "-q") as run:
            wait_until_ready(port, run, READY_WAIT)
            live = Live(run, port, connection)
            yield live
            seconds = run.stop(STOP_TIMEOUT)
        output = run.output
        assert seconds is not None, f"twistd did not stop within {STOP_TIMEOUT} s of SIGTERM:\n{output}"
        assert run.returncode == 0, output
        assert "Traceback" not in output, output
        assert "unexpected error" not in output, output
        if live.statuses:
            # The schemathesis run reached the database: it was not all refusals.
            assert live.statuses[200] >= 100, live.statuses
            assert live.inserted >= 100, live.statuses
            assert live.rows() == live.inserted
            assert live.statuses[400] >= 100, live.statuses
            assert not [status for status in live.statuses if status >= 500], live.statuses
    finally:
        connection.close()


def document(live) -> dict:
    answer = get(live.port, "/openapi.json")
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/json"
    return json.loads(answer.body)


# --- schemathesis against the live service ------------------------------------------------------


def schemathesis_config() -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "generation": {
            "max-examples": MAX_EXAMPLES,
            # The same cases every CI run, as tests/conftest.py does for hypothesis.
            "deterministic": bool(os.environ.get("CI")),
        },
    })


@pytest.fixture(scope="module")
def api_schema(live):
    return schemathesis.openapi.from_url(live.url + "/openapi.json", config=schemathesis_config())


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture
def schemathesis_node_id(request):
    """schemathesis 4.32 renames the test item through `_nodeid`, which pytest 9.2 no longer has."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


def use_the_key(case) -> None:
    """Events are sent with the app's key as a bearer token; a key schemathesis made up, in the
    body or as a token, becomes the app's own. A key of the wrong type or a malformed
    Authorization header stays: those are for the service to refuse."""
    if case.method != "POST":
        return
    key = KEY if case.path.startswith("/apps/game/") else SHOP_KEY
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("secret_key"), str) and body["secret_key"]:
        body["secret_key"] = key
    case.headers = case.headers or {}
    bearer = case.headers.get("Authorization")
    if bearer is None or bearer.startswith("Bearer ") and bearer[len("Bearer "):].strip():
        case.headers["Authorization"] = f"Bearer {key}"


# The event types whose table has a column filled from a request header (X-Client).
HEADER_TABLE_TYPES = {"/apps/game/": "purchase", "/apps/shop/": "purchases"}


def header_is_checked(case) -> bool:
    """Whether an event of the request goes to the table that a header fills: only then is the
    header's value checked (a request without such events stores nothing, so refuses nothing)."""
    events = case.body.get("events") if isinstance(case.body, dict) else None
    if not isinstance(events, list) or not events:
        return False
    if not case.path.endswith("/events"):
        return case.path.rsplit("/", 1)[1] in HEADER_TABLE_TYPES.values()
    wanted = HEADER_TABLE_TYPES[case.path[: case.path.index("/", len("/apps/")) + 1]]
    return any(isinstance(event, dict) and event.get("_t") == wanted for event in events)


def unchecked_negative_header(case) -> list:
    """negative_data_rejection, left out when the broken part may be a header nothing reads."""
    negative = case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER)
    if negative and not header_is_checked(case):
        return [schemathesis.checks.negative_data_rejection]
    return []


@schema.parametrize()
@pytest.mark.usefixtures("schemathesis_node_id")
def test_the_service_answers_as_its_document_says(case, live):
    use_the_key(case)
    before = live.rows()
    response = case.call()
    stored = live.rows() - before
    live.statuses[response.status_code] += 1
    live.inserted += stored
    case.validate_response(response, excluded_checks=unchecked_negative_header(case))
    # 200 means committed: exactly the request's events are in the tables; any other answer, none.
    if response.status_code == 200 and case.method == "POST":
        assert stored == response.json()["inserted"] == len(case.body["events"])
    else:
        assert stored == 0, f"{response.status_code} {response.text[:200]}, but {stored} rows stored"


# --- the document itself ------------------------------------------------------------------------


def items(node):
    """Every (key, value) pair in a JSON document, at any depth."""
    if isinstance(node, dict):
        for key, child in node.items():
            yield key, child
            yield from items(child)
    elif isinstance(node, list):
        for item in node:
            yield from items(item)


def test_the_document_is_valid_openapi_3_1(live):
    doc = document(live)
    assert doc["openapi"].startswith("3.1.")
    schemathesis.openapi.from_dict(doc).validate()
    # That validation stops at schemas: each one is checked against JSON Schema 2020-12 itself.
    schemas = [child for key, child in items(doc) if key == "schema"]
    schemas += doc["components"]["schemas"].values()
    for schema_object in schemas:
        jsonschema_rs.meta.validate({"$schema": "https://json-schema.org/draft/2020-12/schema",
                                     **schema_object})
    for key, target in items(doc):
        if key == "$ref":
            assert resolve(doc, {"$ref": target}), target


def test_the_document_lists_every_app_and_event_type_with_its_methods(live):
    paths = document(live)["paths"]
    events = {"/apps/game/events", "/apps/game/events/purchase", "/apps/game/events/view",
              "/apps/shop/events", "/apps/shop/events/purchases"}
    service = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/attolytics.js"}
    # Segment's API names no app in its paths: they are the same for every configuration.
    segment = {"/v1/{call}": {"post", "options"}, "/v1/projects/{write_key}/settings": {"get"},
               "/sourceConfig": {"get", "options"}, "/sourceConfig/": {"get", "options"}}
    assert set(paths) == events | service | set(segment)
    for path in events:
        assert set(paths[path]) == {"post", "options"}
    for path in service:
        assert set(paths[path]) == {"get"}
    for path, methods in segment.items():
        assert set(paths[path]) == methods


def test_the_document_holds_no_key(live):
    text = get(live.port, "/openapi.json").body.decode()
    assert KEY not in text
    assert SHOP_KEY not in text


def test_columns_become_exact_properties(live):
    doc = document(live)
    purchase = event_schema(doc, "/apps/game/events/purchase")
    properties = purchase["properties"]
    assert purchase["additionalProperties"] is False
    assert purchase["required"] == ["ts", "amount"]
    assert "client" not in properties  # filled from the X-Client header, never from the body
    assert properties["quantity"]["type"] == ["integer", "null"]
    assert (properties["quantity"]["minimum"], properties["quantity"]["maximum"]) == (-2**31, 2**31 - 1)
    assert (properties["total_cents"]["minimum"], properties["total_cents"]["maximum"]) == (-2**63, 2**63 - 1)
    assert properties["amount"]["exclusiveMaximum"] == 10**8
    assert properties["amount"]["multipleOf"] == 0.01
    assert (properties["points"]["exclusiveMaximum"], properties["points"]["multipleOf"]) == (10**12, 1)
    assert properties["sku"]["maxLength"] == 12
    assert properties["country"]["maxLength"] == 2
    assert properties["paid"]["type"] == ["boolean", "null"]
    assert "format" not in properties["order_id"]  # looser than format: uuid, as the service is
    [header] = doc["paths"]["/apps/game/events/purchase"]["post"]["parameters"]
    assert (header["name"], header["in"], header["required"]) == ("X-Client", "header", False)
    assert header["schema"]["maxLength"] == 40

    view = event_schema(doc, "/apps/game/events/view")
    assert view["required"] == ["page"]  # created is NOT NULL but has a default
    assert set(view["properties"]) == {"page", "ms", "at", "extra", "created"}  # id is generated
    assert "null" not in json.dumps(view["properties"]["created"])
    assert (view["properties"]["ms"]["minimum"], view["properties"]["ms"]["maximum"]) == (-2**15, 2**15 - 1)


def test_the_multi_table_route_takes_each_event_type_with_its_t(live):
    doc = document(live)
    branches = [resolve(doc, branch) for branch in event_schema(doc, "/apps/game/events")["oneOf"]]
    assert [branch["properties"]["_t"] for branch in branches] == [
        {"const": "purchase", "description": "The event type."},
        {"const": "view", "description": "The event type."},
    ]
    for branch, path in zip(branches, ["/apps/game/events/purchase", "/apps/game/events/view"]):
        typed = event_schema(doc, path)
        assert branch["required"] == ["_t", *typed["required"]]
        assert branch["properties"] == {"_t": branch["properties"]["_t"], **typed["properties"]}
        assert branch["additionalProperties"] is False
