"""Event ids: a table that skips duplicates stores a resent event once, and the answer counts both."""

import time
import uuid

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import DeferredList, ensureDeferred

from attolytics.config import WriterSettings, parse_config
from attolytics.storage.declarations import declared_types
from attolytics.storage.pool import ConnectionPool
from attolytics.storage.preparation import prepare_tables
from attolytics.storage.writer import Writer
from support.configs import SECRET
from support.metrics import scrape, value
from support.waiting import sleep, wait_for

pytestmark = pytest.mark.service

CLICKS = f"""
tables:
  clicks:
    columns:
      - {{name: id, type: uuid, unique: true}}
      - {{name: page, type: text, required: true}}
  views:
    columns:
      - {{name: page, type: text, required: true}}
apps:
  web:
    secret_key: {SECRET}
    tables: [clicks, views]
"""


def click(page="/", id=None):
    return {"_t": "clicks", "id": str(id or uuid.uuid4()), "page": page}


async def post(running, events):
    return await running.client.request("POST", "/apps/web/events", {"secret_key": SECRET, "events": events})


@pytest.fixture
def clicks(start):
    running = pytest_twisted.blockon(ensureDeferred(start(CLICKS)))
    assert running.fatal == []
    return running


@pytest_twisted.ensureDeferred
async def test_an_event_sent_twice_is_stored_once(clicks, sql):
    event = click("/home")
    first = await post(clicks, [event])
    again = await post(clicks, [event])
    assert (first.status, first.json()) == (200, {"inserted": 1, "duplicates": 0})
    assert (again.status, again.json()) == (200, {"inserted": 0, "duplicates": 1})
    assert sql("select id::text, page from clicks") == [(event["id"], "/home")]


@pytest_twisted.ensureDeferred
async def test_an_id_repeated_in_one_request_counts_once_as_inserted_then_as_duplicates(clicks, sql):
    event, other = click("/a"), click("/b")
    answer = await post(clicks, [event, other, event, dict(event, page="/changed"), other])
    assert (answer.status, answer.json()) == (200, {"inserted": 2, "duplicates": 3})
    # The first of each id is the one stored.
    assert sorted(sql("select id::text, page from clicks")) == sorted([(event["id"], "/a"), (other["id"], "/b")])


@pytest_twisted.ensureDeferred
async def test_the_same_id_spelled_otherwise_is_the_same_id(clicks, sql):
    id = uuid.uuid4()
    spellings = [str(id), str(id).upper(), id.hex, "{" + str(id) + "}"]
    answer = await post(clicks, [click(id=spelling) for spelling in spellings])
    assert answer.json() == {"inserted": 1, "duplicates": 3}
    assert sql("select count(*) from clicks") == [(1,)]


@pytest_twisted.ensureDeferred
async def test_events_without_an_id_are_all_stored(clicks, sql):
    answer = await post(clicks, [{"_t": "clicks", "page": "/x"}, {"_t": "clicks", "id": None, "page": "/x"}])
    assert answer.json() == {"inserted": 2, "duplicates": 0}
    assert sql("select count(*) from clicks where id is null") == [(2,)]


@pytest_twisted.ensureDeferred
async def test_duplicates_appear_when_the_request_wrote_to_such_a_table(clicks, sql):
    mixed = await post(clicks, [{"_t": "views", "page": "/"}, click(), {"_t": "views", "page": "/"}])
    assert mixed.json() == {"inserted": 3, "duplicates": 0}
    views_only = await post(clicks, [{"_t": "views", "page": "/"}])
    assert views_only.json() == {"inserted": 1}
    # An empty batch writes to no table; on this route it answers as the app's tables that skip
    # duplicates would, so that a client always finds the key (issue 19).
    nothing = await post(clicks, [])
    assert nothing.json() == {"inserted": 0, "duplicates": 0}


@pytest_twisted.ensureDeferred
async def test_the_unique_index_is_made_in_the_tables_schema(start, sql):
    sql("create schema analytics")
    config = CLICKS.replace("  clicks:", "  analytics.clicks:").replace("[clicks, views]", "[analytics.clicks, views]")
    running = await start(config)
    assert running.fatal == []
    assert sql("select schemaname, indexname, indexdef like 'CREATE UNIQUE INDEX%%' from pg_indexes"
               " where tablename = 'clicks'") == [("analytics", "clicks_id_key", True)]
    event = dict(click(), _t="analytics.clicks")
    assert (await post(running, [event, event])).json() == {"inserted": 1, "duplicates": 1}
    again = await start(config)  # a second start finds the index and makes none
    assert again.fatal == []
    assert sql("select count(*) from pg_indexes where tablename = 'clicks'") == [(1,)]


@pytest_twisted.ensureDeferred
async def test_an_existing_table_gets_its_unique_index(start, sql):
    sql("create table clicks (id uuid, page text not null)")
    sql("insert into clicks values (gen_random_uuid(), '/before')")
    running = await start(CLICKS)
    assert running.fatal == []
    assert sql("select indexname from pg_indexes where tablename = 'clicks'") == [("clicks_id_key",)]


@pytest_twisted.ensureDeferred
async def test_an_existing_primary_key_on_the_column_is_used(start, sql):
    sql("create table clicks (id uuid primary key, page text not null)")
    running = await start(CLICKS)
    assert running.fatal == []
    assert sql("select indexname from pg_indexes where tablename = 'clicks'") == [("clicks_pkey",)]
    event = click()
    assert (await post(running, [event, event])).json() == {"inserted": 1, "duplicates": 1}


@pytest_twisted.ensureDeferred
async def test_ids_stored_twice_already_stop_start_up_with_a_clear_message(start, sql):
    sql("create table clicks (id uuid, page text not null)")
    sql("insert into clicks values ('00000000-0000-0000-0000-000000000001', '/'), "
        "('00000000-0000-0000-0000-000000000001', '/')")
    running = await start(CLICKS)
    assert len(running.fatal) == 1
    message = running.fatal[0]
    assert message.startswith("test.conf.yaml: table 'clicks': CREATE UNIQUE INDEX IF NOT EXISTS \"clicks_id_key\"")
    assert "could not create unique index" in message and "is duplicated" in message


@pytest_twisted.ensureDeferred
async def test_an_index_of_that_name_that_does_not_fit_stops_start_up(start, sql):
    sql("create table clicks (id uuid, page text not null)")
    sql("create index clicks_id_key on clicks (page)")
    running = await start(CLICKS)
    assert running.fatal == ["test.conf.yaml: table 'clicks': clicks_id_key exists but is not a unique "
                             "index on (id) alone, which skipping duplicates needs"]


# Tables the user made: skip_duplicates

USER_MADE = f"""
apps:
  - app_id: shop
    app_secret_key: {SECRET}
    event_types:
      - {{event_type_id: orders, skip_duplicates: [shop, number]}}
"""


def order(number, shop="north", email=None):
    return {"shop": shop, "number": number, "email": email or f"{shop}-{number}@example.com"}


@pytest_twisted.ensureDeferred
async def test_a_user_made_table_skips_duplicates_on_its_unique_key(start, sql):
    sql("create table orders (shop text not null, number int not null, email text unique,"
        " primary key (shop, number))")
    running = await start(USER_MADE)
    assert running.fatal == []
    first = await running.client.post_events("shop", "orders", [order(1), order(2), order(1, "south")])
    assert first.json() == {"inserted": 3, "duplicates": 0}
    again = await running.client.post_events("shop", "orders", [order(2), order(3), order(1)])
    assert again.json() == {"inserted": 1, "duplicates": 2}
    assert sql("select count(*) from orders") == [(4,)]


@pytest_twisted.ensureDeferred
async def test_another_unique_index_still_answers_409(start, sql):
    sql("create table orders (shop text not null, number int not null, email text unique,"
        " primary key (shop, number))")
    running = await start(USER_MADE)
    assert (await running.client.post_events("shop", "orders", [order(1)])).status == 200
    clash = await running.client.post_events("shop", "orders", [order(2, email="north-1@example.com")])
    assert clash.status == 409
    assert "duplicate key" in clash.json()["error"]
    assert sql("select count(*) from orders") == [(1,)]


@pytest_twisted.ensureDeferred
async def test_a_key_left_to_its_default_is_always_new(start, sql):
    sql("create table hits (id uuid primary key default gen_random_uuid(), page text)")
    config = USER_MADE.replace("event_type_id: orders, skip_duplicates: [shop, number]",
                               "event_type_id: hits, skip_duplicates: [id]")
    running = await start(config)
    assert running.fatal == []
    known = str(uuid.uuid4())
    answer = await running.client.post_events("shop", "hits", [{"page": "/"}, {"page": "/"}, {"id": known},
                                                              {"id": known}])
    assert answer.json() == {"inserted": 3, "duplicates": 1}


@pytest.mark.parametrize("index", [None, "create unique index on orders (shop)",
                                   "create unique index on orders (shop, number) where number > 0",
                                   "create index on orders (shop, number)"],
                         ids=["none", "other-columns", "partial", "not-unique"])
@pytest_twisted.ensureDeferred
async def test_skip_duplicates_without_a_unique_index_on_those_columns_is_refused(start, sql, index):
    sql("create table orders (shop text not null, number int not null, email text)")
    if index:
        sql(index)
    running = await start(USER_MADE)
    assert running.fatal == [
        "test.conf.yaml: table 'orders': skip_duplicates (shop, number) needs a unique index or "
        "primary key on exactly these columns, and the table has none; make one, such as "
        "CREATE UNIQUE INDEX ON orders (shop, number)"]


@pytest_twisted.ensureDeferred
async def test_skip_duplicates_naming_a_column_the_table_lacks_is_refused(start, sql):
    sql("create table orders (shop text primary key)")
    running = await start(USER_MADE)
    assert running.fatal == ["test.conf.yaml: table 'orders': skip_duplicates names column 'number', "
                             "which the table does not have"]


# The writer: duplicates of one batch, and of concurrent batches


@pytest_twisted.ensureDeferred
async def test_requests_of_one_batch_with_the_same_id_store_it_once(database_url, sql):
    config = parse_config(CLICKS, "w.yaml")
    db = ConnectionPool(database_url, reactor, size=1)
    await db.connect()
    try:
        tables = await prepare_tables(db, config, declared_types(config), reactor)
        clicks_table = tables["clicks"]
        writer = Writer(db, reactor, WriterSettings(max_delay_ms=50, max_batch_rows=100))
        shared = str(uuid.uuid4())

        def rows(*ids):
            return [(clicks_table, [clicks_table.row({"id": i, "page": "/"}, n) for n, i in enumerate(ids)])]

        answers = [writer.insert(rows(shared, str(uuid.uuid4()))), writer.insert(rows(shared)),
                   writer.insert(rows(str(uuid.uuid4()), shared))]
        results = [stored for _, stored in await DeferredList(answers, fireOnOneErrback=True)]
        assert [(r.inserted, r.duplicates) for r in results] == [(2, 0), (0, 1), (1, 1)]
        assert sql("select count(distinct xmin::text), count(*) from clicks") == [(1, 3)]
    finally:
        db.close()


@pytest_twisted.ensureDeferred
async def test_the_same_ids_from_two_connections_at_once_are_stored_once(start, sql):
    running = await start(CLICKS + "writer: {connections: 2}\n")
    events = [click() for _ in range(200)]
    answers = await DeferredList([ensureDeferred(post(running, events)) for _ in range(6)],
                                 fireOnOneErrback=True)
    bodies = [answer.json() for _, answer in answers]
    assert sum(body["inserted"] for body in bodies) == 200
    assert all(body["inserted"] + body["duplicates"] == 200 for body in bodies)
    assert sql("select count(*), count(distinct id) from clicks") == [(200, 200)]


@pytest_twisted.ensureDeferred
async def test_the_metrics_count_inserted_and_duplicates_apart(clicks):
    event = click()
    await post(clicks, [event, event, click()])
    metrics = await scrape(clicks.client)
    assert value(metrics, "attolytics_events_inserted_total", app="web", table="clicks") == 2
    assert value(metrics, "attolytics_events_duplicate_total", app="web", table="clicks") == 1


# PostgreSQL killed under load: clients that resend every 503 until 200


class ResendingClient:
    """Sends batches of fresh ids one after another, each again after every 503 until a 200,
    until told to stop (between batches)."""

    def __init__(self, client):
        self.client = client
        self.batches: list[list[dict]] = []
        self.statuses: list[tuple[float, int]] = []
        self.duplicates = 0
        self.running = True

    async def run(self):
        while self.running:
            events = [click(f"/{len(self.batches)}") for _ in range(5)]
            self.batches.append(events)
            while True:
                answer = await self.client.request("POST", "/apps/web/events",
                                                   {"secret_key": SECRET, "events": events})
                self.statuses.append((time.monotonic(), answer.status))
                if answer.status == 200:
                    body = answer.json()
                    assert body["inserted"] + body["duplicates"] == len(events)
                    self.duplicates += body["duplicates"]
                    break
                assert answer.status == 503, answer.body
                await sleep(0.05)


@pytest_twisted.ensureDeferred
async def test_resending_every_503_until_200_stores_each_event_once(start, own_postgres, record_property):
    running = await start(CLICKS, url=own_postgres.url)
    clients = [ResendingClient(running.client) for _ in range(6)]
    load = DeferredList([ensureDeferred(c.run()) for c in clients], fireOnOneErrback=True, consumeErrors=True)
    await sleep(0.5)
    await own_postgres.kill()
    await sleep(1.0)
    await own_postgres.start()
    back = time.monotonic()
    await wait_for(lambda: all(any(t > back and s == 200 for t, s in c.statuses) for c in clients),
                   seconds=30, what="every client stored a batch after PostgreSQL came back")
    for c in clients:
        c.running = False
    await load
    sent = {event["id"] for c in clients for events in c.batches for event in events}
    stored = own_postgres.count("select id::text, count(*) from clicks group by id")
    record_property("events", len(sent))
    record_property("503s", sum(s == 503 for c in clients for _, s in c.statuses))
    record_property("duplicates skipped", sum(c.duplicates for c in clients))
    assert any(s == 503 for c in clients for _, s in c.statuses), "PostgreSQL was not down while clients sent"
    assert {id for id, _ in stored} == sent
    assert [n for _, n in stored if n != 1] == []
