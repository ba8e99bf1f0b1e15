"""`workers: 2` under the installed twistd: two processes serve one socket; a worker killed comes
back; /metrics counts exactly whichever worker answers; SIGHUP reaches both; SIGTERM under load
loses no acknowledged event; systemd hears READY=1 once both serve."""

import contextlib
import json
import os
import re
import select
import signal
import socket
import threading
import time
import uuid

import pytest

from support.http import KeptAlive, exchange, free_port
from support.postgres import query
from support.twistd import listen_on, notify_receiver, serve, wait_for_notification, wait_until_served
from support.waiting import wait_until

pytestmark = pytest.mark.twistd

KEY = "workers-test-key"
PATH = "/apps/game/events/clicks"


def config(port: int, database_url: str, keys=(KEY,)) -> str:
    key_lines = "".join(f"      - {key}\n" for key in keys)
    return (f"listen: {listen_on(port)}\ndatabase_url: '{database_url}'\nworkers: 2\nshutdown_timeout: 5\n"
            f"tables:\n  clicks:\n    columns:\n      - {{name: id, type: uuid, unique: true}}\n"
            f"      - {{name: n, type: i32}}\n"
            f"apps:\n  game:\n    secret_keys:\n{key_lines}    tables: [clicks]\n")


def post_batch(client: KeptAlive, ids: list[str], key: str = KEY):
    body = {"secret_key": key, "events": [{"id": i, "n": 1} for i in ids]}
    return client.exchange("POST", PATH, json.dumps(body).encode(), {"Content-Type": "application/json"})


def worker_pids(output: str) -> dict[int, int]:
    """Worker number -> the pid it was last started with, from the parent's log."""
    return {int(n): int(pid) for n, pid in re.findall(r"started worker (\d+) \(pid (\d+)\)", output)}


ANSWERED = re.compile(r"worker (\d+)\] \S+ POST /apps/game/events/clicks 200")


def served_by(output: str) -> set[str]:
    """The workers that logged an answer to a POST of events."""
    return set(ANSWERED.findall(output))


@contextlib.contextmanager
def paused_worker(pid: int):
    """SIGSTOP a worker for the block, so that the other accepts every connection."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def answers_by(output: str, worker: int) -> int:
    """How many answers to a POST of events this worker logged."""
    return ANSWERED.findall(output).count(str(worker))


def since_restart(output: str, pid: int) -> str:
    """The log after the line that started the worker with this pid."""
    return output.split(f"(pid {pid})", 1)[-1]


def both_ready(run) -> None:
    """Wait until both workers have their tables ready (READY=1 comes once they listen)."""
    wait_until(lambda: all(f"database#info worker {n}] ready" in run.output for n in (1, 2)),
               what="both workers ready")


def metrics_total(port: int) -> float:
    body = exchange(port, "GET", "/metrics").body.decode()
    found = re.search(r'^attolytics_events_inserted_total\{app="game",table="clicks"\} (\S+)$', body, re.M)
    return float(found.group(1)) if found else 0.0


class Load(threading.Thread):
    """Clients on connections of their own, each posting batches of new ids until told to stop;
    records every status and the ids of each batch answered 200."""

    def __init__(self, port: int, clients: int = 4):
        super().__init__(daemon=True)
        self.port, self.clients = port, clients
        self.stop = threading.Event()
        self.statuses: list[int] = []
        self.acknowledged: list[str] = []
        self.lock = threading.Lock()

    def run(self):
        threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _client(self):
        while not self.stop.is_set():
            ids = [str(uuid.uuid4()) for _ in range(5)]
            try:
                with KeptAlive(self.port) as client:
                    answer = post_batch(client, ids)
            except OSError:  # the socket closed while stopping: no answer, nothing acknowledged
                continue
            with self.lock:
                self.statuses.append(answer.status)
                if answer.status == 200:
                    self.acknowledged.extend(ids)


def test_two_workers_serve_and_a_killed_one_comes_back(tmp_path, database_url):
    port = free_port()
    (tmp_path / "app.yaml").write_text(config(port, database_url))
    address = str(tmp_path / "notify.sock")
    with notify_receiver(address) as receiver, serve(tmp_path, "-c", "app.yaml", env={"NOTIFY_SOCKET": address}) as run:
        assert wait_for_notification(receiver, "READY=1") == ["READY=1"]
        wait_until_served(port, run, path=PATH, key=KEY)
        both_ready(run)
        before = worker_pids(run.output)
        assert len(set(before.values())) == 2
        sent = 0
        for serving, paused in ((1, 2), (2, 1)):  # the kernel may hand one worker every connection
            with paused_worker(before[paused]):
                seen = len(run.output)
                for _ in range(5):
                    with KeptAlive(port) as client:
                        assert post_batch(client, [str(uuid.uuid4())]).status == 200
                    sent += 1
                wait_until(lambda: answers_by(run.output[seen:], serving) >= 5, what=f"worker {serving} answering all 5")
        os.kill(before[1], signal.SIGKILL)
        wait_until(lambda: worker_pids(run.output)[1] != before[1], what="worker 1 started again")
        wait_until(lambda: "database#info worker 1] ready" in since_restart(run.output, worker_pids(run.output)[1]),
                   what="the new worker 1 ready")
        for _ in range(20):
            with KeptAlive(port) as client:
                assert post_batch(client, [str(uuid.uuid4())]).status == 200
            sent += 1
        stored = query(database_url, "select count(*) from clicks")[0][0]
        assert stored == sent
        # Whichever worker answers, the counts are every worker's, the killed one's too.
        assert [metrics_total(port) for _ in range(6)] == [float(sent)] * 6
    assert "ended: A process has ended with a probable error condition: process ended by signal 9" in run.output
    assert run.returncode == 0


def test_sighup_reaches_every_worker(tmp_path, database_url):
    port = free_port()
    (tmp_path / "app.yaml").write_text(config(port, database_url))
    address = str(tmp_path / "notify.sock")
    with notify_receiver(address) as receiver, serve(tmp_path, "-c", "app.yaml", env={"NOTIFY_SOCKET": address}) as run:
        wait_for_notification(receiver, "READY=1")
        wait_until_served(port, run, path=PATH, key=KEY)
        both_ready(run)
        (tmp_path / "app.yaml").write_text(config(port, database_url, keys=(KEY, "rotated-in-key")))
        run.process.send_signal(signal.SIGHUP)
        assert wait_for_notification(receiver, "READY=1") == ["RELOADING=1", "READY=1"]
        assert len(re.findall(r"reload#info worker \d\] reloaded app.yaml", run.output)) == 2
        for _ in range(20):  # whichever worker accepts, the new key works
            with KeptAlive(port) as client:
                assert post_batch(client, [str(uuid.uuid4())], key="rotated-in-key").status == 200
    assert run.returncode == 0


def test_sighup_while_the_workers_start_reaches_them_once_they_serve(tmp_path, database_url):
    """SIGHUP before a worker's handler is set would end it (signal 1): it waits until it serves."""
    port = free_port()
    (tmp_path / "app.yaml").write_text(config(port, database_url))
    with serve(tmp_path, "-c", "app.yaml") as run:
        wait_until(lambda: "started worker 2" in run.output, what="worker 2 started", seconds=30)
        run.process.send_signal(signal.SIGHUP)
        wait_until(lambda: "reload#info] reloaded app.yaml" in run.output, what="the reload done", seconds=60)
        assert len(re.findall(r"reload#info worker \d\] reloaded app.yaml", run.output)) == 2
        assert wait_until_served(port, run, path=PATH, key=KEY)[0] == 200
    assert run.returncode == 0, run.output[-3000:]
    assert "ended:" not in run.output, run.output[-3000:]


def test_sigterm_under_load_loses_nothing_acknowledged(tmp_path, database_url):
    port = free_port()
    (tmp_path / "app.yaml").write_text(config(port, database_url))
    with serve(tmp_path, "-c", "app.yaml") as run:
        wait_until_served(port, run, path=PATH, key=KEY)
        load = Load(port)
        load.start()
        both_ready(run)
        # Worker 2 takes connections too, whichever worker the kernel would wake first.
        with paused_worker(worker_pids(run.output)[1]):
            wait_until(lambda: "2" in served_by(run.output), what="worker 2 serving")
        wait_until(lambda: len(load.acknowledged) > 200 and served_by(run.output) == {"1", "2"},
                   what="load on both workers")
        seconds = run.stop()
        load.stop.set()
        load.join(timeout=30)
    assert seconds is not None and run.returncode == 0, run.output[-3000:]
    assert set(load.statuses) <= {200, 503}, load.statuses
    stored = {row[0] for row in query(database_url, "select id::text from clicks")}
    assert set(load.acknowledged) <= stored
    assert query(database_url, "select count(*) = count(distinct id) from clicks") == [(True,)]
    assert "Traceback" not in run.output, run.output[run.output.find("Traceback") - 1500:][:5000]


def refused_while_open(port: int, held: socket.socket) -> bool | None:
    """Try to connect until refused: whether `held`, a connection to the service, was still open
    then (None: never refused in time)."""
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            closed = select.select([held], [], [], 0)[0] != []  # readable: the service closed it
            return not closed
        time.sleep(0.01)
    return None


def test_sigterm_closes_the_socket_while_the_workers_finish(tmp_path, database_url):
    """No connection waits in the socket's queue for a worker that will never accept it: the
    socket refuses connections while the workers finish (here: the keep-alive grace of one)."""
    port = free_port()
    (tmp_path / "app.yaml").write_text(config(port, database_url))
    with serve(tmp_path, "-c", "app.yaml") as run:
        wait_until_served(port, run, path=PATH, key=KEY)
        with KeptAlive(port) as idle:  # kept open: its worker's stop waits the keep-alive grace
            assert post_batch(idle, [str(uuid.uuid4())]).status == 200
            run.process.send_signal(signal.SIGTERM)
            assert refused_while_open(port, idle.connection.sock) is True
        assert run.wait() is not None
    assert run.returncode == 0, run.output[-3000:]


def test_a_worker_that_cannot_start_stops_them_all_with_status_1(tmp_path, database_url):
    query(database_url, "create table clicks (id text, n int)")
    port = free_port()
    (tmp_path / "app.yaml").write_text(config(port, database_url))
    with serve(tmp_path, "-c", "app.yaml") as run:
        assert run.wait(30) is not None
    assert run.returncode == 1
    assert "table 'clicks' exists but does not match its declaration: column 'id' is declared uuid but is text" in run.output
    assert "worker 1 could not start" in run.output or "worker 2 could not start" in run.output
    assert "Traceback" not in run.output, run.output[run.output.find("Traceback") - 1500:][:5000]
