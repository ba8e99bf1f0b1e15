"""SIGTERM while clients keep posting: the installed twistd plugin exits 0 in time, and every
event it acknowledged with 200 is in the table exactly once."""

import http.client
import json
import signal
import subprocess
import threading
import time
from collections import Counter

import psycopg2

from test_twistd import EXAMPLE_KEY, TWISTD, free_port, wait_until_served

# The seed's table with an id column, so each acknowledged event can be found again.
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
LOAD_SECONDS = 1.5
EXIT_TIMEOUT = 20
# However the shutdown goes, no client runs longer than this.
CLIENT_DEADLINE = LOAD_SECONDS + EXIT_TIMEOUT + 10
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
        connection = None
        try:
            while not self.stop.is_set():
                if time.monotonic() > deadline:
                    self.ended_by = "deadline"
                    return
                ids = list(range(self.next_id, self.next_id + BATCH))
                self.next_id += BATCH
                body = json.dumps({"secret_key": EXAMPLE_KEY, "events": [
                    {"id": i, "timestamp": 1554130180, "event_type": "load", "score": i % 100} for i in ids
                ]})
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=ANSWER_TIMEOUT)
                self.sent.extend(ids)
                try:
                    connection.request("POST", PATH, body, {"Content-Type": "application/json"})
                    response = connection.getresponse()
                    content = response.read()
                except (OSError, http.client.HTTPException) as e:
                    self.ended_by = repr(e)
                    return
                finally:
                    if not self.persistent:
                        connection.close()
                        connection = None
                self.statuses[response.status] += 1
                if response.status == 200 and json.loads(content) == {"inserted": BATCH}:
                    self.acknowledged.extend(ids)
                elif response.status == 503:
                    time.sleep(0.02)
                else:
                    self.unexpected.append((response.status, content[:200]))
        finally:
            if connection is not None:
                connection.close()


def stored_ids(database_url) -> Counter:
    with psycopg2.connect(database_url) as connection, connection.cursor() as cur:
        cur.execute("select id, count(*) from game_events group by id")
        counts = Counter(dict(cur.fetchall()))
    connection.close()
    return counts


def test_sigterm_under_load_exits_0_and_keeps_every_acknowledged_event(tmp_path, database_url,
                                                                        record_property):
    (tmp_path / "app.yaml").write_text(CONFIG)
    port = free_port()
    log_path = tmp_path / "twistd.log"
    stop = threading.Event()
    clients = [Client(n, port, persistent=n % 2 == 0, stop=stop) for n in range(CLIENTS)]
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            TWISTD + ["-n", "--pidfile=", "attolytics", "-c", "app.yaml", "--db-url", database_url,
                      "--listen", f"tcp:{port}:interface=127.0.0.1"],
            cwd=tmp_path, stdout=log_file, stderr=subprocess.STDOUT,
        )
    exit_seconds = None
    try:
        assert wait_until_served(port, process, 60) == (200, {"inserted": 0})
        for client in clients:
            client.start()
        time.sleep(LOAD_SECONDS)
        assert process.poll() is None, "twistd died under load"
        acknowledged_before_sigterm = sum(len(client.acknowledged) for client in clients)
        sigterm_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=EXIT_TIMEOUT)
            exit_seconds = time.monotonic() - sigterm_at
        except subprocess.TimeoutExpired:
            pass
    finally:
        if process.poll() is None:
            stop.set()
            process.kill()
            process.wait(timeout=10)
        # Once the process is gone the clients end on their own, with a connection error.
        for client in clients:
            if client.ident is not None:
                client.join(timeout=CLIENT_DEADLINE)
        stop.set()
    log = log_path.read_text(errors="replace")

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
    assert process.returncode == 0, log[-3000:]
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
