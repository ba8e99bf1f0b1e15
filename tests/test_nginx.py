"""Two installed twistd instances behind a real nginx running contrib/nginx.conf's upstream and
proxy settings, one of them stopped under load (SIGTERM, or SIGKILL): nginx passes the requests
it cannot connect with to the other, never sends a POST to a second instance, and every event
acknowledged is stored exactly once."""

import http.client
import json
import signal
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import pytest

from support.configs import clicks_config
from support.http import exchange, free_port
from support.nginx import CONTRIB, nginx_binary, nginx_in_front, without_comments
from support.postgres import query
from support.twistd import listen_on, serve, wait_until_served
from support.waiting import wait_until

pytestmark = pytest.mark.twistd

KEY = "nginx-test-key"
PATH = "/apps/game/events/clicks"
# Each event has an id of its own: a copy stored twice would show, and a batch sent again after
# a 502 or 503 is stored once.
CONFIG = clicks_config(KEY)
CLIENTS = 6
BATCH = 5
# Batches each client has acknowledged before the stop, and after the instance has exited.
BATCHES_BEFORE = 15
BATCHES_AFTER = 15
LOAD_WAIT = 30
EXIT_TIMEOUT = 20
ANSWER_TIMEOUT = 40
# What nginx logs when an instance it had sent a request to went away without answering.
LOST_ON_THE_WAY = ("Connection reset by peer", "upstream prematurely closed connection", "Broken pipe")


@dataclass
class Attempt:
    """One request through nginx: its tag (in the query string, which the route ignores and the
    instances' access logs show), the batch it carried, and what came back."""

    tag: str
    batch: tuple[int, int]
    status: int
    answer: dict
    at: float


@dataclass
class Client:
    """Posts batches of new events through nginx, one request at a time; a batch answered 502,
    503 or 504 is sent again, the same events, until it gets 200."""

    number: int
    port: int
    stop: threading.Event
    attempts: list[Attempt] = field(default_factory=list)
    batches: list[list[str]] = field(default_factory=list)
    failure: str | None = None

    def run(self) -> None:
        """Post batch after batch until the test says stop."""
        try:
            while not self.stop.is_set():
                self.batches.append([str(uuid.uuid4()) for _ in range(BATCH)])
                self._until_acknowledged(len(self.batches) - 1)
        except BaseException as e:  # reported by the test, not lost in the thread
            self.failure = repr(e)

    def _until_acknowledged(self, batch: int) -> None:
        body = json.dumps({"secret_key": KEY, "events": [
            {"id": i, "client": self.number} for i in self.batches[batch]]}).encode()
        while not self.stop.is_set():
            tag = uuid.uuid4().hex
            try:
                answer = exchange(self.port, "POST", f"{PATH}?request={tag}", body,
                                  {"Content-Type": "application/json"}, timeout=ANSWER_TIMEOUT)
            except (OSError, http.client.HTTPException) as e:
                raise AssertionError(f"no answer through nginx: {e!r}") from e
            is_json = answer.headers.get("content-type", "").startswith("application/json")
            parsed = answer.json() if is_json else {"body": answer.body[:200].decode(errors="replace")}
            self.attempts.append(Attempt(tag, (self.number, batch), answer.status, parsed, time.time()))
            if answer.status == 200:
                return
            if answer.status not in (502, 503, 504):
                raise AssertionError(f"unexpected answer {answer.status}: {answer.body[:300]!r}")
            time.sleep(0.05)

    def acknowledged_after(self, moment: float) -> int:
        """How many of its requests were answered 200 after `moment` (Unix seconds)."""
        return sum(1 for a in self.attempts if a.status == 200 and a.at > moment)


@dataclass
class Run:
    """What a run saw: the clients' requests, both instances' output, nginx's logs."""

    clients: list[Client]
    stopped: object  # the Twistd that was stopped
    other_output: str
    nginx_logged: list
    nginx_errors: str
    stopped_at: float
    exited_at: float
    ports: tuple[int, int]

    @property
    def attempts(self) -> list[Attempt]:
        """Every request of every client."""
        return [a for c in self.clients for a in c.attempts]

    def statuses(self) -> Counter:
        """How many requests got each status."""
        return Counter(a.status for a in self.attempts)

    def acknowledged_ids(self) -> list[str]:
        """The ids of the events of every batch answered 200."""
        return [i for c in self.clients for a in c.attempts if a.status == 200 for i in c.batches[a.batch[1]]]

    def sent_ids(self) -> set[str]:
        """The ids of every event sent."""
        return {i for c in self.clients for b in c.batches for i in b}


def instance_directory(directory, port: int, database_url: str, workers: int = 1):
    """A folder holding app.yaml for an instance of `workers` processes listening on `port`."""
    directory.mkdir()
    (directory / "app.yaml").write_text(
        f"listen: {listen_on(port)}\ndatabase_url: '{database_url}'\nworkers: {workers}\n{CONFIG}")
    return directory


def loaded(clients, batches: int, since: float = 0.0) -> bool:
    """Every client has had `batches` acknowledged after `since` (or one has failed)."""
    return any(c.failure for c in clients) or all(c.acknowledged_after(since) >= batches for c in clients)


def run_load(tmp_path, database_url, stop_signal, workers: int = 1) -> Run:
    """Two instances behind nginx under load from CLIENTS threads; the first (of `workers`
    processes) is sent `stop_signal` once every client has BATCHES_BEFORE batches acknowledged,
    and the load goes on until each has BATCHES_AFTER more after it exited."""
    nginx_binary()  # skipped (failed under CI) before anything starts, when nginx is missing
    ports = (free_port(), free_port())
    stop = threading.Event()
    with serve(instance_directory(tmp_path / "a", ports[0], database_url, workers), "-c", "app.yaml") as first:
        wait_until_served(ports[0], first, path=PATH, key=KEY)
        # The second starts once the first has made the table: they never race to create it.
        with serve(instance_directory(tmp_path / "b", ports[1], database_url), "-c", "app.yaml") as second:
            wait_until_served(ports[1], second, path=PATH, key=KEY)
            with nginx_in_front(tmp_path / "nginx", list(ports)) as nginx:
                clients = [Client(n, nginx.port, stop) for n in range(CLIENTS)]
                threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
                try:
                    for thread in threads:
                        thread.start()
                    wait_until(lambda: loaded(clients, BATCHES_BEFORE), LOAD_WAIT, "load through nginx")
                    stopped_at = time.time()
                    first.process.send_signal(stop_signal)
                    assert first.wait(EXIT_TIMEOUT) is not None, first.output[-3000:]
                    exited_at = time.time()
                    wait_until(lambda: loaded(clients, BATCHES_AFTER, exited_at), LOAD_WAIT, "load after the stop")
                finally:
                    stop.set()
                    for thread in threads:
                        thread.join(ANSWER_TIMEOUT + 5)
                logged, errors = nginx.logged(), nginx.output
    assert "[emerg]" not in errors and "[alert]" not in errors, errors[-3000:]
    return Run(clients, first, second.output, logged, errors, stopped_at, exited_at, ports)


def tags_logged(output: str) -> Counter:
    """The request tags of the POSTs an instance's access log names (each answered by it)."""
    return Counter(line.split("?request=", 1)[1].split()[0]
                   for line in output.splitlines() if f"POST {PATH}?request=" in line)


def assert_no_request_reached_two_instances(run: Run) -> None:
    """No tag is in both instances' logs, nor twice in one: nginx sent no POST twice."""
    answered = tags_logged(run.stopped.output) + tags_logged(run.other_output)
    assert [t for t, n in answered.items() if n > 1] == []
    assert set(answered) <= {a.tag for a in run.attempts}


def assert_stored_once(run: Run, database_url: str) -> None:
    """Every acknowledged event is in the table exactly once; only events sent are there; a
    batch acknowledged on its first attempt had no copy stored before (nothing resent it)."""
    stored = Counter(dict(query(database_url, "select id::text, count(*) from clicks group by id")))
    acknowledged = run.acknowledged_ids()
    assert len(acknowledged) == len(set(acknowledged))
    assert [i for i, n in stored.items() if n != 1] == []
    lost = set(acknowledged) - set(stored)
    assert not lost, f"{len(lost)} of {len(acknowledged)} acknowledged events are not stored"
    assert set(stored) <= run.sent_ids()
    tries = Counter(a.batch for a in run.attempts)
    firsts = [a.answer for a in run.attempts if a.status == 200 and tries[a.batch] == 1]
    assert firsts and all(answer == {"inserted": BATCH, "duplicates": 0} for answer in firsts), firsts[:5]


def assert_served_by_both_then_by_the_other(run: Run) -> None:
    """nginx spread the load over both instances before the stop; the requests it began after
    the first had exited were answered by the second (but for 502s, which lost_on_the_way()
    checks)."""
    first, second = (f"127.0.0.1:{port}" for port in run.ports)
    posts = [line for line in run.nginx_logged if line.method == "POST"]
    before = Counter(line.upstreams[-1] for line in posts if line.at < run.stopped_at)
    assert before[first] > 0 and before[second] > 0, before
    after = [line for line in posts if line.began > run.exited_at and line.status != 502]
    assert {(line.status, line.upstreams[-1]) for line in after} == {(200, second)}
    # A client's first batch acknowledged after the exit may have begun before it (and nginx
    # logs times to the millisecond).
    assert len(after) >= CLIENTS * (BATCHES_AFTER - 2)


def lost_on_the_way(run: Run) -> list[Attempt]:
    """The requests answered 502: each must be one nginx sent to the stopped instance alone,
    which went away without answering it, and none that nginx then passed on."""
    first = f"127.0.0.1:{run.ports[0]}"
    by_tag = {line.uri.split("?request=", 1)[1]: line for line in run.nginx_logged if "?request=" in line.uri}
    lost = [a for a in run.attempts if a.status == 502]
    for attempt in lost:
        assert by_tag[attempt.tag].upstreams == [first], by_tag[attempt.tag]
        assert attempt.tag not in tags_logged(run.other_output)
        errors = [line for line in run.nginx_errors.splitlines() if attempt.tag in line and "[error]" in line]
        assert errors and all(any(why in line for why in LOST_ON_THE_WAY) for line in errors), errors
    # Once one failed, nginx took that instance out: at most the requests then under way.
    assert len(lost) <= CLIENTS, len(lost)
    return lost


def test_contrib_passes_on_only_what_failed_to_connect():
    """The settings the load tests rely on are those of contrib/nginx.conf."""
    text = without_comments(CONTRIB.read_text())
    assert "proxy_next_upstream error timeout;" in text
    assert "non_idempotent" not in text
    assert "keepalive 32;" in text and "proxy_http_version 1.1;" in text


@pytest.mark.parametrize("workers", [1, 2], ids=["one process", "two workers"])
def test_sigterm_to_one_instance_under_load(tmp_path, database_url, record_property, workers):
    """A graceful stop: the instance finishes what it took and exits 0; nginx's connections to
    it are refused from then on, and it passes those requests to the other instance."""
    run = run_load(tmp_path, database_url, signal.SIGTERM, workers)
    record_property("statuses", dict(run.statuses()))
    assert [c.failure for c in run.clients if c.failure] == []
    assert run.stopped.returncode == 0, run.stopped.output[-3000:]
    assert_no_request_reached_two_instances(run)
    # The stopping instance ends each connection nginx keeps alive to it after one more answer
    # (Connection: close), and closes those left idle after a second. A 502 could still be a
    # request nginx wrote on an idle connection in the instant it was closed, or one queued on
    # the listening socket as it closed (none in 7 runs); lost_on_the_way() checks that it is
    # nothing else, and that nginx did not pass it on.
    lost = lost_on_the_way(run)
    # Rare: none in 13 runs. (When the socket of two workers still queued connections as they
    # stopped, every stop lost 6, one a client.)
    assert len(lost) <= 2, run.statuses()
    # Every other request was answered 200 by an instance, never 503 (as it did before the
    # connections were closed so: a request on a kept-alive connection met the closed pool).
    answered = tags_logged(run.stopped.output) + tags_logged(run.other_output)
    assert {a.tag for a in run.attempts} - set(answered) == {a.tag for a in lost}
    assert set(run.statuses()) - {502} == {200}, run.statuses()
    assert_served_by_both_then_by_the_other(run)
    assert_stored_once(run, database_url)


def test_sigkill_of_one_instance_under_load(tmp_path, database_url, record_property):
    """A crash: the requests the instance had taken get 502 and are not passed on (it may have
    stored them); the clients send them again and each event is stored once."""
    run = run_load(tmp_path, database_url, signal.SIGKILL)
    record_property("statuses", dict(run.statuses()))
    assert [c.failure for c in run.clients if c.failure] == []
    assert run.stopped.returncode == -signal.SIGKILL
    assert_no_request_reached_two_instances(run)
    # The requests the killed instance had taken are answered 502, and not passed on.
    lost_on_the_way(run)
    assert set(run.statuses()) <= {200, 502}, run.statuses()
    assert_served_by_both_then_by_the_other(run)
    assert_stored_once(run, database_url)
