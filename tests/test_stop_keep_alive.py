"""A stop and the connections clients keep alive: a request sent on one after the stop began is
still answered (with Connection: close) and stored, as is one that was still arriving, and an
idle connection is closed after the grace; none is closed under a request."""

import socket

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.internet.threads import deferToThread
from twisted.web.resource import Resource

from attolytics.http.endpoint import HttpEndpointService
from attolytics.http.site import AttolyticsSite
from attolytics.shutdown import Shutdown
from support.configs import GAME_CONFIG, SECRET
from support.waiting import wait_for

pytestmark = pytest.mark.service

BODY = b'{"secret_key": "%s", "events": [{"timestamp": %d, "event_type": "kept alive"}]}'


def head(length: int) -> bytes:
    return (b"POST /apps/mygame/events/game_events HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % length)


def request(timestamp: int) -> bytes:
    body = BODY % (SECRET.encode(), timestamp)
    return head(len(body)) + body


def answer_of(connection: socket.socket) -> bytes:
    """One whole answer (head and Content-Length body) read from `connection`."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(65536) or pytest.fail(f"closed before an answer: {data!r}")
    top, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in top.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += connection.recv(65536) or pytest.fail("closed within an answer")
    return top + b"\r\n\r\n" + body


def closed_by_the_service(connection: socket.socket) -> bool:
    """Whether the service closed `connection` (with nothing more sent)."""
    return connection.recv(65536) == b""


def kept_alive(port: int) -> socket.socket:
    """A connection that has had one request answered and stays open, as a proxy keeps one."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    connection.sendall(request(1))
    answer = answer_of(connection)
    assert answer.startswith(b"HTTP/1.1 200") and b"connection: close" not in answer.lower(), answer
    return connection


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("arriving", [False, True], ids=["sent after the stop began", "arriving as it began"])
async def test_a_request_on_a_kept_alive_connection_during_a_stop_is_answered_then_closed(start, sql, arriving):
    running = await start(GAME_CONFIG)
    connection = await deferToThread(kept_alive, running.port)
    whole = request(2)
    before = whole[:-10] if arriving else b""
    in_flight = running.service.getServiceNamed("http").site.in_flight.items
    try:
        if before:
            connection.sendall(before)
            await wait_for(lambda: in_flight, what="the request's first line in")
        stopping = running.stop()  # stops listening; the grace for kept-alive connections begins
        connection.sendall(whole[len(before):])
        answer = await deferToThread(answer_of, connection)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"inserted": 1}'), answer
        assert b"\r\nconnection: close\r\n" in answer.lower()
        assert await deferToThread(closed_by_the_service, connection)
        await stopping
    finally:
        connection.close()
    assert sql("select timestamp from game_events order by timestamp") == [(1,), (2,)]


@pytest_twisted.ensureDeferred
async def test_an_idle_kept_alive_connection_is_closed_after_the_grace(start, sql):
    running = await start(GAME_CONFIG)
    endpoint = running.service.getServiceNamed("http")
    endpoint.keep_alive_grace = 0.05
    idle = await deferToThread(kept_alive, running.port)
    try:
        await running.stop()
        # Closed between requests: nothing was sent on it, and the service sent nothing more.
        assert await deferToThread(closed_by_the_service, idle)
    finally:
        idle.close()
    assert not endpoint.site.connections.items
    assert sql("select count(*) from game_events") == [(1,)]


class LargeAnswer(Resource):
    """Answers every request with more bytes than the sockets between it and a client hold."""

    isLeaf = True
    size = 16_000_000

    def render(self, request):
        return b"x" * self.size


def read_to_the_end(connection: socket.socket) -> tuple[int, str]:
    """Read until the service closes `connection`: the bytes read, and how it ended."""
    connection.settimeout(5)
    count = 0
    try:
        while data := connection.recv(1 << 20):
            count += len(data)
    except TimeoutError:
        return count, "still open"
    return count, "closed"


@pytest_twisted.ensureDeferred
async def test_an_idle_connection_still_sending_its_last_answer_closes_once_it_is_sent():
    site = AttolyticsSite(LargeAnswer(), 10_000, 30.0, reactor=reactor)
    listening, fatal = [], []
    endpoint = HttpEndpointService(serverFromString(reactor, "tcp:0:interface=127.0.0.1"), "a test port", site,
                                   Shutdown(reactor, 10.0), listening.append, fatal.append)
    endpoint.keep_alive_grace = 0.05
    endpoint.startService()
    await wait_for(lambda: listening or fatal, what="listening")
    connection = socket.create_connection(("127.0.0.1", listening[0].getHost().port))
    try:
        connection.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # and read nothing yet
        await wait_for(lambda: site.connections.items and not site.in_flight.items, what="the answer finished")
        await endpoint.stopService()
        received, ending = await deferToThread(read_to_the_end, connection)
    finally:
        connection.close()
    assert ending == "closed" and received > LargeAnswer.size, (received, ending)
    await wait_for(lambda: not site.connections.items, what="the connection forgotten")
