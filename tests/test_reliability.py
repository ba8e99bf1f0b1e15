"""The worst days: PostgreSQL gone and back, down at start-up, slow clients, stopping under load."""

import itertools
import socket
import time

import pytest
import pytest_twisted
from psycopg2.extensions import make_dsn, parse_dsn
from twisted.internet import reactor
from twisted.internet.defer import DeferredList, ensureDeferred
from twisted.internet.protocol import ClientCreator, Factory, Protocol
from twisted.internet.threads import deferToThread

from support.configs import GAME_CONFIG, SECRET
from support.http import read_until_closed
from support.postgres import query
from support.waiting import sleep, wait_for

pytestmark = pytest.mark.service

IDS_CONFIG = f"""
tables:
  hits:
    columns:
      - {{name: id, type: i64, required: true}}
      - {{name: n, type: i32}}
apps:
  - app_id: app
    app_secret_key: {SECRET}
    event_types: [{{event_type_id: hits}}]
"""


# Health


@pytest_twisted.ensureDeferred
async def test_healthz_and_readyz(start):
    unreachable = await start(url="postgresql://nobody@127.0.0.1:9/none", wait=False)
    health = await unreachable.client.request("GET", "/healthz")
    assert (health.status, health.json()) == (200, {"status": "ok"})
    not_ready = await unreachable.client.request("GET", "/readyz")
    assert not_ready.status == 503 and not_ready.json()["ready"] is False
    ready = await (await start()).client.request("GET", "/readyz")
    assert (ready.status, ready.json()) == (200, {"ready": True})


# PostgreSQL down at start-up, then up


@pytest_twisted.ensureDeferred
async def test_database_down_at_start_up_then_up(start, own_postgres):
    await own_postgres.kill()
    running = await start(IDS_CONFIG, url=own_postgres.url, wait=False)
    first = await running.client.post_events("app", "hits", [{"id": 1}])
    assert first.status == 503 and int(first.headers["retry-after"]) > 0
    assert (await running.client.request("GET", "/readyz")).status == 503
    await own_postgres.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answer = await running.client.post_events("app", "hits", [{"id": 2}])
        if answer.status == 200:
            break
        assert answer.status == 503
        await sleep(0.2)
    assert answer.status == 200, "the service did not start serving once PostgreSQL was up"
    assert running.fatal == []
    assert own_postgres.count("select id from hits") == [(2,)]


@pytest_twisted.ensureDeferred
async def test_readyz_names_the_connection_problem_while_postgres_is_down(start, own_postgres):
    await own_postgres.kill()
    running = await start(IDS_CONFIG, url=own_postgres.url, wait=False)
    deadline = time.monotonic() + 30
    while True:
        answer = await running.client.request("GET", "/readyz")
        assert answer.status == 503
        error = answer.json()["error"]
        if error != "the tables are not checked yet" or time.monotonic() > deadline:
            break
        await sleep(0.1)
    # libpq's own words, on one line: a missing socket here.
    assert error.startswith("cannot reach PostgreSQL: connection to server on socket"), error
    assert error.endswith("; retrying") and "\n" not in error, error
    await own_postgres.start()
    deadline = time.monotonic() + 30
    while (answer := await running.client.request("GET", "/readyz")).status != 200:
        assert time.monotonic() < deadline, answer.json()
        await sleep(0.2)
    assert answer.json() == {"ready": True}


@pytest_twisted.ensureDeferred
async def test_readyz_names_the_connection_problem_of_an_outage_after_start_up(start, own_postgres):
    running = await start(IDS_CONFIG, url=own_postgres.url)
    assert (await running.client.request("GET", "/readyz")).status == 200
    await own_postgres.kill()
    deadline = time.monotonic() + 30
    while True:
        answer = await running.client.request("GET", "/readyz")
        error = answer.json().get("error", "")
        if error.startswith("cannot reach PostgreSQL") or time.monotonic() > deadline:
            break
        await sleep(0.2)
    assert answer.status == 503
    assert error.startswith("cannot reach PostgreSQL: ") and error.endswith("; reconnecting"), error
    assert "\n" not in error
    await own_postgres.start()
    deadline = time.monotonic() + 30
    while (answer := await running.client.request("GET", "/readyz")).status != 200:
        assert time.monotonic() < deadline, answer.json()
        await sleep(0.2)


# PostgreSQL pulled out from under load, then back


class Load:
    """Clients posting events with unique ids; remembers which ids were acknowledged."""

    def __init__(self, client, workers=6, per_request=5):
        self.client = client
        self.ids = itertools.count(1)
        self.acknowledged: list[int] = []
        self.statuses: list[tuple[float, int]] = []
        self.running = True
        self.per_request = per_request
        self.done = DeferredList([ensureDeferred(self._worker()) for _ in range(workers)],
                                 fireOnOneErrback=True, consumeErrors=True)

    async def _worker(self):
        while self.running:
            ids = [next(self.ids) for _ in range(self.per_request)]
            answer = await self.client.post_events("app", "hits", [{"id": i} for i in ids])
            self.statuses.append((time.monotonic(), answer.status))
            if answer.status == 200:
                self.acknowledged.extend(ids)
            else:
                assert answer.status == 503, answer.body
                assert int(answer.headers["retry-after"]) > 0
                await sleep(0.05)

    async def stop(self):
        self.running = False
        await self.done


@pytest_twisted.ensureDeferred
async def test_postgres_killed_and_restarted_under_load(start, own_postgres, record_property):
    running = await start(IDS_CONFIG, url=own_postgres.url)
    load = Load(running.client)
    await sleep(1.0)
    await own_postgres.kill()
    await sleep(1.0)
    statuses_while_down = [s for t, s in load.statuses[-20:]]
    await own_postgres.start()
    back = time.monotonic()
    while time.monotonic() < back + 30:
        if any(s == 200 and t > back for t, s in load.statuses):
            break
        await sleep(0.1)
    await sleep(0.5)
    await load.stop()

    healed_after = min(t for t, s in load.statuses if s == 200 and t > back) - back
    stored = own_postgres.count("select id, count(*) from hits group by id")
    counts = dict(stored)
    lost = [i for i in load.acknowledged if i not in counts]
    duplicated = [i for i, n in counts.items() if n > 1]
    assert 503 in statuses_while_down
    assert lost == [] and duplicated == []
    assert len(load.acknowledged) > 0
    assert healed_after < 15
    # The figures of the run, in the JUnit XML report (pytest --junitxml=FILE).
    record_property("acknowledged", len(load.acknowledged))
    record_property("stored", len(counts))
    record_property("lost", len(lost))
    record_property("duplicated", len(duplicated))
    record_property("seconds_to_first_200", round(healed_after, 2))


# Slow and idle clients


SHORT_TIMEOUT = GAME_CONFIG + "request_timeout: 1.5\n"


def _slowloris(port: int, seconds: float) -> bytes:
    """Send a request's headers one byte at a time; return what the server answered."""
    head = b"POST /apps/mygame/events/game_events HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        deadline = time.monotonic() + seconds
        for byte in head:
            if time.monotonic() > deadline:
                break
            try:
                s.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.1)
        return read_until_closed(s)


@pytest_twisted.ensureDeferred
async def test_slow_client_is_cut_off_and_others_are_served(start, sql):
    running = await start(SHORT_TIMEOUT)
    port = running.port
    slow = deferToThread(_slowloris, port, 8)
    await sleep(0.3)
    began = time.monotonic()
    answer = await running.client.post_events("mygame", "game_events", [{"timestamp": 1, "event_type": "x"}])
    assert answer.status == 200 and time.monotonic() - began < 1.0
    answered = await slow
    assert answered.startswith(b"HTTP/1.1 408"), answered[:100]
    assert b"did not arrive within 1.5 seconds" in answered


def _idle_sockets(port: int, count: int) -> list:
    return [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]


@pytest_twisted.ensureDeferred
async def test_many_idle_connections_do_not_starve_active_ones(start, sql):
    running = await start()
    idle = await deferToThread(_idle_sockets, running.port, 300)
    try:
        await sleep(0.2)
        began = time.monotonic()
        answer = await running.client.post_events("mygame", "game_events", [{"timestamp": 1, "event_type": "x"}])
        assert answer.status == 200 and time.monotonic() - began < 1.0
    finally:
        for s in idle:
            s.close()


# Stopping


def waiting_for_a_lock(database_url, statement: str) -> bool:
    """Whether a statement of the service that begins with `statement` waits for a lock now."""
    return query(database_url, "select count(*) from pg_stat_activity where datname = current_database()"
                               " and wait_event_type = 'Lock' and starts_with(query, %s)", (statement,))[0][0] > 0


def service_connections(database_url) -> int:
    """Connections to the test database other than the test's own."""
    return query(database_url, "select count(*) from pg_stat_activity where datname = current_database()"
                               " and pid <> pg_backend_pid() and backend_type = 'client backend'")[0][0]


@pytest_twisted.ensureDeferred
async def test_a_stop_during_start_up_abandons_it(start, sql, database_url):
    sql("create table hits (id bigint not null, n integer)")
    sql("begin")
    sql("lock table hits in access exclusive mode")  # start-up's CREATE INDEX waits on this lock
    running = await start(IDS_CONFIG.replace("type: i64, required: true", "type: i64, required: true, indexed: true"),
                          wait=False)
    await wait_for(lambda: waiting_for_a_lock(database_url, "CREATE INDEX"), what="start-up waiting for the lock")
    await running.stop()
    sql("commit")
    # Start-up went no further once the stop began: the service never became ready, and its
    # connections are closed.
    await wait_for(lambda: service_connections(database_url) == 1, what="only the sql fixture's connection left")
    assert running.writer is None and running.fatal == []
    assert (await running.service.getServiceNamed("database").starting) is None


class HeldProxy(Protocol):
    """One connection to a PostgreSQL whose bytes are held until the test releases them: a
    connect the service cannot hurry."""

    def __init__(self, proxy):
        self.proxy = proxy
        self.held = []
        self.peer = None

    def connectionMade(self):
        self.proxy.open.add(self)
        if self.proxy.released:
            self.forward()

    def dataReceived(self, data):
        if self.peer is None:
            self.held.append(data)
        else:
            self.peer.transport.write(data)

    def forward(self):
        server = self

        class ToPostgres(Protocol):
            def connectionMade(self):
                server.peer = self
                for data in server.held:
                    self.transport.write(data)

            def dataReceived(self, data):
                server.transport.write(data)

            def connectionLost(self, reason):
                server.transport.loseConnection()

        ClientCreator(reactor, ToPostgres).connectUNIX(self.proxy.socket_path)

    def connectionLost(self, reason):
        self.proxy.open.discard(self)
        if self.peer is not None:
            self.peer.transport.loseConnection()


class HeldConnections(Factory):
    """A TCP port in front of the test database that holds every connection until release()."""

    def __init__(self, database_url):
        params = parse_dsn(database_url)
        self.socket_path = f"{params['host']}/.s.PGSQL.{params.get('port', 5432)}"
        self.released = False
        self.open = set()
        self.port = reactor.listenTCP(0, self, interface="127.0.0.1")
        self.url = make_dsn(database_url, host="127.0.0.1", port=self.port.getHost().port)

    def buildProtocol(self, addr):
        return HeldProxy(self)

    def release(self):
        self.released = True
        for connection in list(self.open):
            connection.forward()


@pytest_twisted.ensureDeferred
async def test_a_connect_that_completes_after_the_stop_is_closed(start, database_url):
    proxy = HeldConnections(database_url)
    try:
        running = await start(GAME_CONFIG, url=proxy.url, wait=False)
        await wait_for(lambda: proxy.open, what="the service connecting")
        await running.stop()
        proxy.release()
        # The connect completes now, after the stop: its connection is closed at once.
        await wait_for(lambda: not proxy.open, what="the late connection closed")
        assert running.writer is None and running.fatal == []
    finally:
        await proxy.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_stop_while_the_database_is_down_never_starts_up_later(start, own_postgres):
    own_postgres.count("create table hits (id text)")  # does not fit IDS_CONFIG: start-up would fail
    await own_postgres.kill()
    running = await start(IDS_CONFIG + "shutdown_timeout: 3\n", url=own_postgres.url, wait=False)
    assert (await running.client.post_events("app", "hits", [{"id": 1}])).status == 503
    # A request that never arrives whole keeps the shutdown waiting its 3 s...
    slow = socket.create_connection(("127.0.0.1", running.port))
    slow.sendall(b"POST /apps/app/events/hits HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
    in_flight = running.service.getServiceNamed("http").site.in_flight.items
    try:
        await wait_for(lambda: in_flight, what="the slow request in flight")
        stopping = running.stop()
        # ...while PostgreSQL is back, with a table that does not fit.
        await own_postgres.start()
        await stopping
    finally:
        slow.close()
    # Start-up was abandoned when the stop began: it did not try again, so no problem was found
    # (which would end the process with status 1) and nothing was created.
    assert running.fatal == []
    assert own_postgres.count("select to_regclass('hits_id_idx'), count(*) from pg_stat_activity"
                              " where datname = current_database() and pid <> pg_backend_pid()"
                              " and backend_type = 'client backend'") == [(None, 0)]




def insert_waits_for_a_lock(database_url) -> bool:
    """Whether an INSERT of the service waits for a lock in PostgreSQL now."""
    return query(database_url, "select count(*) from pg_stat_activity where datname = current_database()"
                               " and wait_event_type = 'Lock' and query like 'INSERT%'")[0][0] > 0


@pytest_twisted.ensureDeferred
async def test_stop_lets_requests_in_flight_commit(start, sql, database_url):
    running = await start(GAME_CONFIG)
    sql("begin")
    sql("lock table game_events in access exclusive mode")  # the flush waits on this lock
    pending = ensureDeferred(running.client.post_events("mygame", "game_events", [{"timestamp": 1, "event_type": "x"}]))
    await wait_for(lambda: running.writer is not None and running.writer.queued_rows > 0,
                   what="the request queued")
    stopping = running.stop()
    await wait_for(lambda: insert_waits_for_a_lock(database_url), what="the INSERT waiting for the lock")
    # The rows are in PostgreSQL, waiting for the lock: the stop must wait for their answer.
    assert not stopping.called
    sql("commit")
    assert (await pending).status == 200
    await stopping
    assert sql("select count(*) from game_events")[0][0] == 1


@pytest_twisted.ensureDeferred
async def test_stop_is_bounded_and_never_acknowledges_what_it_could_not_commit(start, sql):
    running = await start(GAME_CONFIG + "shutdown_timeout: 1\n")
    sql("begin")
    sql("lock table game_events in access exclusive mode")
    pending = ensureDeferred(running.client.post_events("mygame", "game_events", [{"timestamp": 1, "event_type": "x"}]))
    await wait_for(lambda: running.writer is not None and running.writer.queued_rows > 0,
                   what="the request queued")
    began = time.monotonic()
    await running.stop()
    assert time.monotonic() - began < 3
    answer = await pending
    sql("commit")
    # The INSERT was sent: whether it commits once the lock is gone is not known when the
    # service stops, and the client is told so. Never a 200 for it; never twice.
    assert answer.status == 503
    assert "may or may not be stored" in answer.json()["error"]
    assert sql("select count(*) from game_events")[0][0] in (0, 1)


def _trickle_body(port: int) -> bytes:
    """A complete head, then the body a byte every 0.2 s; return what the server answered."""
    head = (b"POST /apps/mygame/events/game_events HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head)
        try:
            for _ in range(40):
                s.sendall(b" ")
                time.sleep(0.2)
        except OSError:
            pass
        return read_until_closed(s)


@pytest_twisted.ensureDeferred
async def test_trickling_body_is_cut_off(start):
    running = await start(SHORT_TIMEOUT)
    answered = await deferToThread(_trickle_body, running.port)
    assert answered.startswith(b"HTTP/1.1 408"), answered[:100]


@pytest_twisted.ensureDeferred
async def test_health_routes_allow_only_get(start):
    running = await start()
    answer = await running.client.request("POST", "/healthz", b"{}", {"Content-Type": "application/json"})
    assert answer.status == 405
    assert "GET" in answer.headers["allow"] and "POST" not in answer.headers["allow"]
