"""PgBouncer in transaction mode between the service and PostgreSQL: tables made at start-up,
events stored, duplicates skipped, refusals kept, a batch written again request by request, a
partition made on the spot; and, under load, PgBouncer restarted (safely, at once, or killed)
or PostgreSQL restarted behind it: only 200 and 503 seen, nothing acknowledged lost, nothing
stored twice. Each transaction may run on another server connection than the one before, so
none of this may rest on session state."""

import time
import uuid
from collections import Counter
from datetime import datetime, timezone

import psycopg2
import pytest
import pytest_twisted
from twisted.internet.defer import DeferredList, ensureDeferred
from twisted.internet.task import Clock

from support.configs import SECRET
from support.pgbouncer import running_pgbouncer
from support.waiting import sleep, wait_for

pytestmark = pytest.mark.service

TABLES = f"""
rejected_events: refused
tables:
  clicks:
    columns:
      - {{name: id, type: uuid, unique: true}}
      - {{name: page, type: text, required: true}}
  scores:
    columns:
      - {{name: player, type: text, required: true}}
      - {{name: score, type: i32, required: true}}
apps:
  web:
    secret_key: {SECRET}
    tables: [clicks, scores]
"""
# One connection: a request that waits for a lock holds back the next ones, which then share a
# transaction.
ONE_CONNECTION = TABLES + "writer: {connections: 1}\n"
VISITS = f"""
tables:
  visits:
    partition: {{column: ts, interval: day, ahead: 0, keep: 7}}
    columns:
      - {{name: ts, type: timestamptz, required: true}}
      - {{name: page, type: text}}
apps:
  web:
    secret_key: {SECRET}
    tables: [visits]
"""
NOW = datetime(2026, 11, 30, 12, tzinfo=timezone.utc)


@pytest.fixture
def pgbouncer(database_url, tmp_path):
    """PgBouncer in transaction mode in front of the test's database; `url` goes through it."""
    with running_pgbouncer(database_url, tmp_path / "pgbouncer") as bouncer:
        yield bouncer


def click(page="/", id=None):
    """An event of the clicks table, with a new id unless given one."""
    return {"_t": "clicks", "id": str(id or uuid.uuid4()), "page": page}


def score(player, points):
    """An event of the scores table."""
    return {"_t": "scores", "player": player, "score": points}


async def post(running, events):
    """POST events to the web app's route for events naming their table."""
    return await running.client.request("POST", "/apps/web/events", {"secret_key": SECRET, "events": events})


async def started(start, pgbouncer, config=TABLES, clock=None):
    """The service, started on `config` with its database reached through `pgbouncer`."""
    running = await start(config, url=pgbouncer.url, clock=clock)
    assert running.fatal == []
    return running


# The service through PgBouncer


@pytest_twisted.ensureDeferred
async def test_start_up_makes_the_declared_tables_through_pgbouncer(pgbouncer, start, sql):
    await started(start, pgbouncer)
    assert sql("select relname from pg_class where relname in ('clicks', 'scores', 'refused') "
               "and relkind = 'r' order by relname") == [("clicks",), ("refused",), ("scores",)]
    assert sql("select indexdef like '%UNIQUE%(id)' from pg_indexes where tablename = 'clicks'") == [(True,)]


@pytest_twisted.ensureDeferred
async def test_events_are_stored_and_resent_ones_skipped_through_pgbouncer(pgbouncer, start, sql):
    running = await started(start, pgbouncer)
    first, second = click("/a"), click("/b")
    stored = await post(running, [first, second, score("ann", 3)])
    assert (stored.status, stored.json()) == (200, {"inserted": 3, "duplicates": 0})
    again = await post(running, [second, click("/c"), second])
    assert (again.status, again.json()) == (200, {"inserted": 1, "duplicates": 2})
    assert sql("select page, count(*) from clicks group by page order by page") == [("/a", 1), ("/b", 1), ("/c", 1)]
    assert sql("select player, score from scores") == [("ann", 3)]


@pytest_twisted.ensureDeferred
async def test_a_request_postgresql_refuses_gets_400_and_is_kept_through_pgbouncer(pgbouncer, start, sql):
    running = await started(start, pgbouncer)
    sql("alter table scores add constraint positive check (score >= 0)")
    refused = await post(running, [score("ann", 1), score("bob", -1)])
    assert refused.status == 400 and "check constraint" in refused.json()["error"]
    await wait_for(lambda: sql("select count(*) from refused")[0][0] == 2, what="the refused events kept")
    assert sql("select status, at_fault, event->>'player' from refused order by event_index") == [
        (400, None, "ann"), (400, None, "bob")]
    assert sql("select count(*) from scores") == [(0,)]


@pytest_twisted.ensureDeferred
async def test_in_a_shared_transaction_only_the_refused_request_fails_through_pgbouncer(
        pgbouncer, start, sql, database_url):
    running = await started(start, pgbouncer, ONE_CONNECTION)
    stored_before = click("/before")
    assert (await post(running, [stored_before])).status == 200
    sql("alter table scores add constraint positive check (score >= 0)")
    locker = psycopg2.connect(database_url)
    try:
        with locker.cursor() as cur:
            cur.execute("lock table scores in access exclusive mode")
        first = ensureDeferred(post(running, [score("ann", 1)]))  # takes the one connection, waits
        await wait_for(lambda: running.writer.queued_rows == 1, what="the first request being written")
        bad = ensureDeferred(post(running, [score("bob", -1)]))
        good = ensureDeferred(post(running, [click(id=stored_before["id"]), click("/new"), score("cy", 2)]))
        await wait_for(lambda: running.writer.queued_rows == 5, what="both requests queued behind it")
    finally:
        locker.rollback()
        locker.close()
    # The two queued requests go in one transaction, which fails on bob's row (and the resent
    # click): written again with a SAVEPOINT per request, only bob's is refused.
    assert (await first).status == 200
    refused, stored = await bad, await good
    assert refused.status == 400 and "check constraint" in refused.json()["error"]
    assert (stored.status, stored.json()) == (200, {"inserted": 2, "duplicates": 1})
    assert sql("select player from scores order by player") == [("ann",), ("cy",)]
    assert sql("select page from clicks order by page") == [("/before",), ("/new",)]


@pytest_twisted.ensureDeferred
async def test_a_partition_is_made_on_the_spot_through_pgbouncer(pgbouncer, start, sql):
    clock = Clock()
    clock.advance(NOW.timestamp())
    running = await started(start, pgbouncer, VISITS, clock)
    await running.service.getServiceNamed("maintenance").run()
    answer = await running.client.post_events("web", "visits", [
        {"ts": "2026-11-30T13:00:00Z", "page": "/now"}, {"ts": "2026-11-27T08:00:00Z", "page": "/late"}])
    assert (answer.status, answer.json()) == (200, {"inserted": 2})
    assert sql("select tableoid::regclass::text, page from visits order by ts") == [
        ("visits_p20261127", "/late"), ("visits_p20261130", "/now")]


# PgBouncer restarted under load


class Resender:
    """Sends batches of fresh event ids one after another, each again after every 503 until a
    200, until told to stop (between batches); stops at any other status, keeping it."""

    def __init__(self, running):
        self.running = running
        self.batches: list[list[dict]] = []
        self.statuses: list[tuple[float, int]] = []
        self.acknowledged: list[str] = []  # the ids of the events of batches answered 200
        self.unexpected: list[tuple[int, bytes]] = []
        self.reasons: Counter = Counter()  # the errors of the 503s
        self.duplicates = 0
        self.sending = True

    async def run(self):
        """Send until told to stop, or until an answer that is neither 200 nor 503."""
        while self.sending and not self.unexpected:
            events = [click(f"/{len(self.batches)}") for _ in range(5)]
            self.batches.append(events)
            while not self.unexpected:
                answer = await post(self.running, events)
                self.statuses.append((time.monotonic(), answer.status))
                body = answer.json()
                if answer.status == 200 and body["inserted"] + body["duplicates"] == len(events):
                    self.acknowledged.extend(event["id"] for event in events)
                    self.duplicates += body["duplicates"]
                    break
                if answer.status != 503 or int(answer.headers.get("retry-after", "0")) <= 0:
                    self.unexpected.append((answer.status, answer.body))
                else:
                    self.reasons[body["error"]] += 1
                await sleep(0.05)

    def stored_after(self, moment: float) -> bool:
        """Whether a batch of its was answered 200 after `moment`."""
        return any(status == 200 and t > moment for t, status in self.statuses)


class Load:
    """Clients resending at once through a service, each its own batches."""

    def __init__(self, running, clients: int = 6):
        self.clients = [Resender(running) for _ in range(clients)]
        self.done = DeferredList([ensureDeferred(c.run()) for c in self.clients], fireOnOneErrback=True,
                                 consumeErrors=True)

    async def storing_after(self, moment: float = 0.0) -> None:
        """Wait until each client has had a batch answered 200 after `moment`; a client that met
        another status, or failed, ends the wait too (check() says why)."""
        def stored():
            return self.done.called or all(c.stored_after(moment) or c.unexpected for c in self.clients)
        await wait_for(stored, seconds=30, what="every client storing a batch")

    def answered_503_after(self, moment: float, every: bool = False) -> bool:
        """Whether any client (or `every` one) was answered 503 after `moment`."""
        return (all if every else any)(
            any(s == 503 and t > moment for t, s in c.statuses) for c in self.clients)

    async def stop(self, record_property) -> None:
        """Let each client finish its batch, then stop; the figures go in the JUnit XML report."""
        for c in self.clients:
            c.sending = False
        await self.done
        statuses = [status for c in self.clients for _, status in c.statuses]
        record_property("requests", len(statuses))
        record_property("503s", statuses.count(503))
        record_property("duplicates skipped", sum(c.duplicates for c in self.clients))
        record_property("503 errors", dict(sum((c.reasons for c in self.clients), Counter())))

    def check(self, stored: dict, began: float) -> None:
        """Only 200 and 503 were answered, 503s after `began`; each event acknowledged is stored
        once and nothing else is (`stored`: id -> rows)."""
        assert [u for c in self.clients for u in c.unexpected] == []
        assert {s for c in self.clients for _, s in c.statuses} == {200, 503}
        assert self.answered_503_after(began), "no 503 while the database could not be reached"
        # A client stops between batches: every batch sent was answered 200 in the end.
        sent = {event["id"] for c in self.clients for events in c.batches for event in events}
        acknowledged = [id for c in self.clients for id in c.acknowledged]
        assert sorted(acknowledged) == sorted(sent)
        assert set(stored) == sent
        assert {id: n for id, n in stored.items() if n != 1} == {}


@pytest.mark.parametrize("how", ["safe", "immediate", "crash"],
                         ids=["safe shutdown", "immediate shutdown", "kill -9"])
@pytest_twisted.ensureDeferred
async def test_pgbouncer_restarted_under_load_loses_nothing_acknowledged(
        pgbouncer, start, sql, how, record_property):
    running = await started(start, pgbouncer)
    load = Load(running)
    await load.storing_after()
    began = time.monotonic()
    await pgbouncer.restart(how)
    await load.storing_after(time.monotonic())
    await load.stop(record_property)
    assert len(set(pgbouncer.pids)) == 2, "PgBouncer was not restarted"
    load.check(dict(sql("select id::text, count(*) from clicks group by id")), began)


@pytest.fixture
def bouncer_of_own_postgres(own_postgres, tmp_path):
    """PgBouncer in front of a PostgreSQL the test may kill. After a failed server login it turns
    clients away for server_login_retry (15 s by default): 1 s here."""
    with running_pgbouncer(own_postgres.url, tmp_path / "pgbouncer", {"server_login_retry": 1}) as bouncer:
        yield bouncer


@pytest_twisted.ensureDeferred
async def test_postgresql_restarted_behind_pgbouncer_under_load_loses_nothing_acknowledged(
        bouncer_of_own_postgres, own_postgres, start, record_property):
    # PgBouncer keeps the service's connections while PostgreSQL is down; a write it holds
    # waiting for a server is given up after flush_timeout.
    running = await started(start, bouncer_of_own_postgres, TABLES + "writer: {flush_timeout: 2}\n")
    load = Load(running)
    await load.storing_after()
    began = time.monotonic()
    await own_postgres.kill()
    await wait_for(lambda: load.answered_503_after(began, every=True), what="a 503 for each client")
    await own_postgres.start()
    await load.storing_after(time.monotonic())
    await load.stop(record_property)
    load.check(dict(own_postgres.count("select id::text, count(*) from clicks group by id")), began)
