"""What attolytics/twisted_internals.py relies on in Twisted, pinned: each use of a part that is not
Twisted's public API is checked against the installed Twisted, so that an upgrade that changes
one fails here."""

import os
import re
import socket

import pytest
from twisted.internet import tcp
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.web import http, resource, server
from twisted.web.test.requesthelper import DummyChannel

from attolytics.http.site import AttolyticsSite
from attolytics.twisted_internals import (
    HookedHTTPChannel,
    accept_one_at_a_time,
    close_without_shutdown,
    process_with_date,
    request_line_path,
)
from support.configs import GAME_CONFIG
from support.memory import InMemoryService

pytestmark = pytest.mark.unit

DATE = b"Thu, 01 Jan 1970 00:00:00 GMT"


# process_with_date: the same answer as Twisted's own Request.process, but for the Date header.


class _Leaf(resource.Resource):
    isLeaf = True

    def render(self, request):
        return b"prepath=%r postpath=%r" % (request.prepath, request.postpath)


class _Broken(resource.Resource):
    isLeaf = True

    def render(self, request):
        raise ValueError("broken")


def _site() -> server.Site:
    root = resource.Resource()
    root.putChild(b"leaf", _Leaf())
    root.putChild(b"broken", _Broken())
    site = server.Site(root)
    site.displayTracebacks = False
    return site


class _Theirs(server.Request):
    pass


class _Ours(server.Request):
    def process(self):
        process_with_date(self, DATE)


def _answer(request_class, method: bytes, path: bytes) -> bytes:
    channel = DummyChannel()
    channel.site = _site()
    request = request_class(channel, False)
    request.gotLength(0)
    request.requestReceived(method, path, b"HTTP/1.1")
    written = channel.transport.written.getvalue()
    return re.sub(rb"\r\nDate: [^\r]*\r\n", b"\r\nDate: -\r\n", written)


@pytest.mark.parametrize("method, path", [
    (b"GET", b"/leaf"),
    (b"GET", b"/leaf/a%2Fb/c%20d?x=1"),
    (b"POST", b"/leaf/"),
    (b"GET", b"/missing"),
    (b"GET", b"/broken"),
    (b"OPTIONS", b"*"),
    (b"GET", b"*"),
    (b"HEAD", b"/leaf"),
])
def test_process_answers_as_twisted_does_but_for_the_date(method, path):
    ours = _answer(_Ours, method, path)
    assert ours == _answer(_Theirs, method, path)
    assert b"\r\nDate: -\r\n" in ours


# Every name Twisted's process has used from 23.10 on: a new one means a step the copy lacks.
PROCESS_NAMES = {
    "BaseException", "Failure", "_IEncodingResource", "_encoder", "_handleStar", "channel",
    "datetimeToString", "failure", "getEncoder", "getResourceFor", "http", "list", "map", "path",
    "postpath", "prepath", "processingFailed", "providedBy", "render", "resource", "setHeader",
    "site", "split", "unquote", "version",
}


def test_twisted_process_takes_no_step_the_copy_does_not_know():
    assert set(server.Request.process.__code__.co_names) <= PROCESS_NAMES


def test_no_resource_of_the_service_encodes_on_the_fly():
    """The copy skips the encoder step: it is used only with the service's own resources."""
    site = InMemoryService(GAME_CONFIG).site
    assert not resource._IEncodingResource.providedBy(site.resource)


# request_line_path: the channel holds the path while the head arrives.


def test_the_request_line_path_is_known_before_the_request_has_it():
    seen = []

    class Early(http.Request):
        def gotLength(self, length):
            seen.append((request_line_path(self.channel), self.path))
            super().gotLength(length)

    channel = http.HTTPChannel()
    channel.requestFactory = Early
    channel.makeConnection(StringTransport())
    channel.dataReceived(b"POST /apps/a/events?x=1 HTTP/1.1\r\nContent-Length: 5\r\n\r\n")
    assert seen == [(b"/apps/a/events?x=1", None)]
    assert request_line_path(object()) == b""


# HookedHTTPChannel: every malformed request reaches the hook.


class _Counting(HookedHTTPChannel):
    malformed = 0

    def malformed_request(self):
        self.malformed += 1
        self.transport.loseConnection()


@pytest.mark.parametrize("data", [
    b"GET /\r\n\r\n",
    b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
    b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
])
def test_a_malformed_request_reaches_the_hook(data):
    channel = _Counting()
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(data)
    assert channel.malformed == 1
    assert transport.value() == b""


def test_the_default_hook_answers_as_twisted_does():
    channel = HookedHTTPChannel()
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(b"GET /\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 400 Bad Request\r\n")


# The listening port: one accept a read, and a close that leaves other copies listening.


def _listening(reactor) -> tcp.Port:
    factory = Factory.forProtocol(Protocol)
    port = tcp.Port(0, factory, interface="127.0.0.1", reactor=reactor)
    port.startListening()
    return port


def _waiting_clients(port, count: int) -> list[socket.socket]:
    clients = [socket.create_connection(("127.0.0.1", port.getHost().port)) for _ in range(count)]
    return clients


def _accepted_by_one_read(port, reactor) -> int:
    clients = _waiting_clients(port, 3)
    before = port.sessionno
    try:
        port.doRead()
        return port.sessionno - before
    finally:
        for client in clients:
            client.close()
        for reader in list(reactor.readers):
            if reader is not port:
                reader.socket.close()
                reactor.removeReader(reader)


def test_a_port_accepts_one_connection_a_read():
    reactor = MemoryReactorClock()
    port = _listening(reactor)
    try:
        assert _accepted_by_one_read(port, reactor) == 3  # Twisted's own: the whole burst
        accept_one_at_a_time(port)
        assert _accepted_by_one_read(port, reactor) == 1
        assert _accepted_by_one_read(port, reactor) == 1
    finally:
        port.socket.close()


@pytest.mark.parametrize("shut_down", [True, False])
def test_a_closed_port_leaves_other_copies_of_its_socket_listening(shut_down):
    reactor = MemoryReactorClock()
    port = _listening(reactor)
    address = ("127.0.0.1", port.getHost().port)
    own = port.socket
    copy = socket.socket(fileno=os.dup(own.fileno()))  # what a worker holds
    try:
        if shut_down:
            port.stopListening()
        else:
            close_without_shutdown(port)
        reactor.advance(0)
        assert own.fileno() == -1  # closed here
        if shut_down:  # Twisted's own: the socket is shut down for every process
            with pytest.raises(OSError):
                socket.create_connection(address, timeout=2).close()
            return
        client = socket.create_connection(address, timeout=2)
        copy.settimeout(2)
        accepted, _ = copy.accept()
        accepted.close()
        client.close()
    finally:
        copy.close()


# The site leaves a form body alone (Site's parsePOSTFormSubmission, the public way).


def test_the_site_parses_no_form_body():
    channel = DummyChannel()
    channel.site = AttolyticsSite(_Leaf(), 1000, 30.0, reactor=MemoryReactorClock())
    request = channel.site.requestFactory(channel, False)
    request.requestHeaders.setRawHeaders(b"content-type", [b"application/x-www-form-urlencoded"])
    request.gotLength(3)
    request.handleContentChunk(b"a=1")
    request.requestReceived(b"POST", b"/?q=2", b"HTTP/1.1")
    assert request.args == {b"q": [b"2"]}
