"""SIGTERM while clients keep posting: the installed twistd plugin exits 0 in time, and every
event it acknowledged with 200 is in the table exactly once."""

import http.client
import json
import threading
import time
from collections import Counter

import pytest

from support.configs import EXAMPLE_KEY
from support.http import KeptAlive, exchange, free_port
from support.postgres import query
from support.twistd import listen_on, serve, wait_until_served
from support.waiting import wait_until

pytestmark = pytest.mark.twistd

# The README's game_events table with an id column, so each acknowledged event can be found again.
CONFIG = f"""
tables:
  game_events:
    columns:
      - {{name: id, type: i64, required: true}}
      - {{name: timestamp, type: i64, required: true}}
      - {{name: event_type, type: string, required: true}}
      - {{name: score, type: i64}}
apps:
  - app_id: mygame
    app_secret_key: {EXAMPLE_KEY}
    event_types:
      - event_type_id: game_events
"""
PATH = "/apps/mygame/events/game_events"
CLIENTS = 8
BATCH = 5
# SIGTERM comes once every client has had this many batches acknowledged: all of them are busy.
LOAD_BATCHES = 20
LOAD_WAIT = 30
EXIT_TIMEOUT = 20
# However the shutdown goes, no client runs longer than this.
CLIENT_DEADLINE = LOAD_WAIT + EXIT_TIMEOUT + 10
ANSWER_TIMEOUT = 15


class Client(threading.Thread):
    """Posts batches of events with ids of its own until a connection error (or the deadline).

    Half of the clients keep one connection open (keep-alive), the others open one per request:
    after SIGTERM the first kind can still reach the server, the second cannot.
    """

    def __init__(self, number: int, port: int, persistent: bool, stop: threading.Event):
        super().__init__(name=f"client-{number}", daemon=True)
        self.port = port
        self.persistent = persistent
        self.stop = stop
        self.next_id = (number + 1) * 1_000_000_000
        self.sent: list[int] = []
        self.acknowledged: list[int] = []
        self.statuses: Counter = Counter()
        self.unexpected: list = []
        self.ended_by = None
        self.failure = None

    def run(self):
        try:
            self._load()
        except BaseException as e:  # reported by the test, not lost in the thread
            self.failure = repr(e)

    def _load(self):
        deadline = time.monotonic() + CLIENT_DEADLINE
        kept = KeptAlive(self.port, ANSWER_TIMEOUT) if self.persistent else None
        try:
            while not self.stop.is_set():
                if time.monotonic() > deadline:
                    self.ended_by = "deadline"
                    return
                ids = list(range(self.next_id, self.next_id + BATCH))
                self.next_id += BATCH
                body = json.dumps({"secret_key": EXAMPLE_KEY, "events": [
                    {"id": i, "timestamp": 1554130180, "event_type": "load", "score": i % 100} for i in ids
                ]}).encode()
                headers = {"Content-Type": "application/json"}
                self.sent.extend(ids)
                try:
                    if kept is not None:
                        answer = kept.exchange("POST", PATH, body, headers)
                    else:
                        answer = exchange(self.port, "POST", PATH, body, headers, timeout=ANSWER_TIMEOUT)
                except (OSError, http.client.HTTPException) as e:
                    self.ended_by = repr(e)
                    return
                self.statuses[answer.status] += 1
                if answer.status == 200 and answer.json() == {"inserted": BATCH}:
                    self.acknowledged.extend(ids)
                elif answer.status == 503:
                    time.sleep(0.02)
                else:
                    self.unexpected.append((answer.status, answer.body[:200]))
        finally:
            if kept is not None:
                kept.close()


def stored_ids(database_url) -> Counter:
    return Counter(dict(query(database_url, "select id, count(*) from game_events group by id")))


def loaded(clients, run) -> bool:
    """Every client has had LOAD_BATCHES batches acknowledged (or the load cannot get there)."""
    if not run.alive() or any(client.ended_by or client.failure for client in clients):
        return True
    return all(len(client.acknowledged) >= LOAD_BATCHES * BATCH for client in clients)


def test_sigterm_under_load_exits_0_and_keeps_every_acknowledged_event(tmp_path, database_url,
                                                                        record_property):
    (tmp_path / "app.yaml").write_text(CONFIG)
    port = free_port()
    stop = threading.Event()
    clients = [Client(n, port, persistent=n % 2 == 0, stop=stop) for n in range(CLIENTS)]
    exit_seconds = None
    try:
        with serve(tmp_path, "-c", "app.yaml", "--db-url", database_url, "--listen", listen_on(port)) as run:
            assert wait_until_served(port, run, 60) == (200, {"inserted": 0})
            for client in clients:
                client.start()
            wait_until(lambda: loaded(clients, run), LOAD_WAIT,
                       f"every client has {LOAD_BATCHES} batches acknowledged")
            assert run.alive(), "twistd died under load"
            acknowledged_before_sigterm = sum(len(client.acknowledged) for client in clients)
            run.terminate()
            # None when it did not exit in time (it is killed then).
            exit_seconds = run.wait(EXIT_TIMEOUT)
    finally:
        # Once the process is gone the clients end on their own, with a connection error.
        for client in clients:
            if client.ident is not None:
                client.join(timeout=CLIENT_DEADLINE)
        stop.set()
    log = run.output

    acknowledged = [i for client in clients for i in client.acknowledged]
    stored = stored_ids(database_url)
    statuses = sum((client.statuses for client in clients), Counter())
    record_property("acknowledged_before_sigterm", acknowledged_before_sigterm)
    record_property("acknowledged", len(acknowledged))
    record_property("stored", sum(stored.values()))
    record_property("sent", sum(len(client.sent) for client in clients))
    record_property("statuses", dict(statuses))
    record_property("exit_seconds", exit_seconds)
    record_property("ended_by", [client.ended_by for client in clients])

    assert exit_seconds is not None, f"twistd did not exit within {EXIT_TIMEOUT} s of SIGTERM:\n{log[-3000:]}"
    assert run.returncode == 0, log[-3000:]
    assert "received SIGTERM, shutting down" in log
    assert "Traceback" not in log, log[log.index("Traceback") - 500:][:4000]
    assert all(client.failure is None for client in clients), [client.failure for client in clients]
    assert all(not client.is_alive() for client in clients), "a client is still running"
    # Every client ended because the server went away, not because its time ran out.
    assert all(client.ended_by not in (None, "deadline") for client in clients), (
        [client.ended_by for client in clients])
    assert [u for client in clients for u in client.unexpected] == []

    assert acknowledged_before_sigterm > 0, statuses
    assert len(acknowledged) == len(set(acknowledged))
    duplicates = {i: n for i, n in stored.items() if n != 1}
    assert duplicates == {}, f"ids stored more than once: {dict(list(duplicates.items())[:20])}"
    lost = set(acknowledged) - set(stored)
    assert not lost, (f"{len(lost)} of {len(acknowledged)} acknowledged ids are not stored, "
                      f"e.g. {sorted(lost)[:20]}")
    # Stored may exceed acknowledged (an answer cut off by the exit), but only with ids sent.
    assert set(stored) <= {i for client in clients for i in client.sent}
