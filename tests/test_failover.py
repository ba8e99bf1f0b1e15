"""Failover to a standby, as managed PostgreSQL services and Patroni clusters do it: a primary
with a synchronous standby, both hosts in the service's one libpq URL with
target_session_attrs=read-write; under load the primary dies and the standby is promoted. Only
200 or 503 is answered, events are acknowledged again within seconds of the promotion, and every
acknowledged event is on the new primary."""

import os
import shutil
import time
import uuid
from collections import Counter

import psycopg2
import pytest
import pytest_twisted
from twisted.internet.defer import DeferredList, ensureDeferred
from twisted.internet.threads import deferToThread

from attolytics.storage.embedded import EmbeddedPostgres
from support.http import free_port
from support.waiting import sleep, wait_for

pytestmark = pytest.mark.service

KEY = "failover-key"
CONFIG = f"""
tables:
  hits:
    columns:
      - {{name: id, type: uuid, unique: true}}
      - {{name: n, type: i64, required: true}}
apps:
  game:
    secret_key: {KEY}
    tables: [hits]
"""
# How long events may go unacknowledged after the promotion; the clients sending at once.
BACK_WITHIN_SECONDS = 15
CLIENTS = 4
PG_CTL_SECONDS = 60


class Replicated:
    """A primary on 127.0.0.1 and a synchronous standby streaming from it (pg_basebackup), each
    listening on a port of its own; `url` names both, for the primary that takes writes."""

    def __init__(self, path):
        from pgserver import _commands

        self.commands = _commands
        path.mkdir()
        os.chmod(path, 0o755)  # the servers run as pgserver's user when the tests run as root
        primary_port, standby_port = free_port(), free_port()
        self.primary = EmbeddedPostgres(str(path / "primary"), listen=("127.0.0.1", primary_port))
        primary_url = self.primary.start()
        self.user = self.primary._server.system_user
        self.standby = path / "standby"
        self.standby.mkdir(mode=0o700)
        sockets = path / "standby-sockets"
        sockets.mkdir()
        os.chmod(sockets, 0o777)
        if self.user is not None:
            shutil.chown(self.standby, user=self.user)
        self._run("pg_basebackup", ["-h", "127.0.0.1", "-p", str(primary_port), "-U", "postgres",
                                    "-D", str(self.standby), "-R", "-X", "stream"])
        connection = psycopg2.connect(primary_url)
        connection.autocommit = True
        with connection.cursor() as cur:
            # Every COMMIT waits until the standby has it: nothing acknowledged is lost.
            cur.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            cur.execute("SELECT pg_reload_conf()")
        connection.close()
        self._pg_ctl(["-w", "-o", f"-h 127.0.0.1 -p {standby_port} -k {sockets}",
                      "-l", str(self.standby / "server.log"), "start"])
        self.url = (f"postgresql://postgres@127.0.0.1:{primary_port},127.0.0.1:{standby_port}/postgres"
                    "?target_session_attrs=read-write&connect_timeout=2")

    def _run(self, program: str, arguments: list[str]) -> None:
        getattr(self.commands, program)(arguments, user=self.user, timeout=PG_CTL_SECONDS)

    def _pg_ctl(self, arguments: list[str]) -> None:
        self.commands.pg_ctl(arguments, pgdata=self.standby, user=self.user, timeout=PG_CTL_SECONDS)

    def synchronous(self) -> bool:
        """Whether the standby streams synchronously from the primary."""
        return query(self.url, "SELECT sync_state FROM pg_stat_replication") == [("sync",)]

    def kill_primary(self) -> None:
        self.primary.stop("immediate")

    def promote(self) -> None:
        self._pg_ctl(["-w", "promote"])

    def stop(self) -> None:
        self.primary.stop("immediate")
        try:
            self._pg_ctl(["-w", "-m", "immediate", "stop"])
        except Exception:  # never started, or stopped already
            pass


def query(url: str, statement: str) -> list:
    connection = psycopg2.connect(url)
    try:
        with connection.cursor() as cur:
            cur.execute(statement)
            return cur.fetchall()
    finally:
        connection.close()


@pytest.fixture
def replicated(tmp_path):
    servers = Replicated(tmp_path / "replicated")
    yield servers
    servers.stop()


@pytest_twisted.ensureDeferred
async def test_a_failover_to_the_synchronous_standby_loses_no_acknowledged_event(start, replicated):
    assert replicated.synchronous()
    running = await start(CONFIG, url=replicated.url)
    assert running.fatal == []
    answers = []  # (monotonic time, status, ids) of every request
    stopped = []

    async def client() -> None:
        """One client sending 10 events a request, each with an id of its own, until stopped."""
        while not stopped:
            ids = [str(uuid.uuid4()) for _ in range(10)]
            answer = await running.client.post_events("game", "hits", [{"id": i, "n": 1} for i in ids], secret=KEY)
            answers.append((time.monotonic(), answer.status, ids))

    clients = [ensureDeferred(client()) for _ in range(CLIENTS)]
    await wait_for(lambda: len(answers) >= 50, what="the clients under way")
    await deferToThread(replicated.kill_primary)
    await deferToThread(replicated.promote)
    promoted = time.monotonic()
    await wait_for(lambda: any(at > promoted and status == 200 for at, status, _ in answers),
                   seconds=BACK_WITHIN_SECONDS, what="an event acknowledged by the new primary")
    await sleep(1)
    stopped.append(True)
    await DeferredList(clients)

    statuses = Counter(status for _, status, _ in answers)
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[503] > 0  # the failover was seen
    assert all(status == 200 for at, status, _ in answers[:50])
    acknowledged = {i for _, status, ids in answers if status == 200 for i in ids}
    stored = {str(row[0]) for row in await deferToThread(query, replicated.url, "SELECT id FROM hits")}
    assert acknowledged - stored == set()
