"""An HTTP request that refuses a body larger than the limit, before or while it arrives, and a
request that takes too long to arrive; and the channel that answers protocol errors in JSON."""

import json
import time
from io import BytesIO

from twisted.web import http, server

from attolytics.http.paths import OTHER, Route, route_of
from attolytics.twisted_internals import HookedHTTPChannel, process_with_date, request_line_path

REFUSED_LINGER_SECONDS = 2.0


_date = [0, b""]  # the second, and the Date header written for it


def _http_date() -> bytes:
    """The Date header for now, made once a second."""
    now = int(time.time())
    if now != _date[0]:
        _date[:] = [now, http.datetimeToString(now)]
    return _date[1]


def _too_slow_message(seconds: float) -> str:
    """The 408 message for a request that did not arrive in time."""
    return f"the request did not arrive within {seconds:g} seconds"


class LimitedRequest(server.Request):
    """A twisted.web request that never buffers more than `max_body_bytes` of body.

    A declared Content-Length over the limit is answered 413 before any of the body is read;
    a chunked body is counted as it arrives and cut off with 413 once it passes the limit.
    A request whose head and body have not all arrived `receive_timeout` seconds after its
    first line is answered 408 and cut off, so a slow client cannot hold a connection open.
    """

    # Set by request_factory() for each site.
    max_body_bytes: int
    receive_timeout: float
    refused = False
    _received = 0
    # What the request carries for the access log, the metrics and its rows: its route, once
    # its line is in; how many events its body held, once read; when its first line arrived,
    # for durations (monotonic) and as a moment (Unix seconds on the site's reactor clock).
    route: Route = OTHER
    events_received = 0
    # Whether the connection was lost before the answer was finished: no answer can be written.
    client_gone = False
    started: float
    received_at: float

    def __init__(self, channel, *args, **kwargs):
        super().__init__(channel, *args, **kwargs)
        self.started = time.monotonic()
        site = getattr(channel, "site", None)
        self.received_at = site.reactor.seconds() if site is not None else time.time()
        # Kept here: twisted.web drops request.channel once the answer is finished.
        self._channel = channel
        if isinstance(channel, JsonErrorsChannel):
            channel.expect(self)
        self._tracker = getattr(site, "in_flight", None)
        if self._tracker is not None:
            self._tracker.started(self)

    def process(self):
        # twisted.web's, but with the Date header written once a second, not once a request.
        process_with_date(self, _http_date())

    def __repr__(self):
        # twisted.web's own repr decodes the URI as ASCII, and a log line naming a request whose
        # URI is not (a HEAD with a body, say) would fail to format.
        return f"<Request {self.method!r} {self.uri!r}>"

    def close_after_answer(self) -> None:
        """Close the connection once this request is answered (the service is stopping)."""
        if not self.startedWriting:
            self.setHeader(b"Connection", b"close")
        self._channel.persistent = False

    def too_slow(self):
        """Its head and body did not all arrive within receive_timeout of its first line."""
        self._refuse(408, _too_slow_message(self.receive_timeout))

    def _all_received(self):
        if isinstance(self._channel, JsonErrorsChannel):
            self._channel.received(self)

    def finish(self):
        # Answer first: ending may let a waiting shutdown go on and close the connection.
        result = super().finish()
        self._ended()
        return result

    def connectionLost(self, reason):
        self.client_gone = True
        self._ended()
        return super().connectionLost(reason)

    def _ended(self):
        self._all_received()
        if self._tracker is not None:
            self._tracker.ended(self)

    @staticmethod
    def early_headers(route: Route, origin: bytes | None) -> dict[str, str]:
        """Extra headers (CORS) for an answer given before the request is complete."""
        return {}

    def gotLength(self, length):
        if length is not None and length > self.max_body_bytes:
            self._refuse(413, self._too_large())
            return
        # Always in memory: the limit bounds it, and a temporary file would cost a syscall per chunk.
        self.content = BytesIO()

    def handleContentChunk(self, data):
        if self.refused:
            return
        self._received += len(data)
        if self._received > self.max_body_bytes:
            self.content = None
            self._refuse(413, self._too_large())
            return
        self.content.write(data)

    def requestReceived(self, command, path, version):
        if self.refused:
            return
        self._all_received()
        self.route = route_of(path)
        super().requestReceived(command, path, version)

    def _too_large(self) -> str:
        return f"request body larger than the limit of {self.max_body_bytes} bytes"

    def _refuse(self, status: int, message: str):
        """Answer at once, before the request is complete, and close once the answer is sent."""
        self.refused = True
        self._ended()
        # The request line is parsed but not yet handed to this request: the channel holds it.
        route = route_of(request_line_path(self.channel))
        origin = self.requestHeaders.getRawHeaders(b"origin", [None])[0]
        transport = self.channel.transport
        write_json_answer(transport, status, message, self.early_headers(route, origin))
        if status == 413 and hasattr(transport, "loseWriteConnection"):
            # Half close, so the answer is not lost to a reset while the client is still
            # sending; the rest of its body is read and dropped for a moment, then cut.
            transport.loseWriteConnection()
            self.channel.callLater(REFUSED_LINGER_SECONDS, transport.loseConnection)
        else:
            transport.loseConnection()


_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 413: b"Content Too Large",
            414: b"URI Too Long"}


def write_json_answer(transport, status: int, message: str, headers: dict[str, str] | None = None):
    """Write a whole JSON error answer straight to the transport, for a request that never
    reaches the resource (it is too large, too slow, or not HTTP)."""
    body = json.dumps({"error": message}).encode()
    head = {
        "Content-Type": "application/json",
        "Connection": "close",
        "Content-Length": str(len(body)),
        **(headers or {}),
    }
    transport.write(
        b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])
        + b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in head.items())
        + b"\r\n"
        + body
    )


class JsonErrorsChannel(HookedHTTPChannel):
    """An HTTP/1.1 channel whose protocol errors are answered in JSON like every other error,
    and which gives a client `receive_timeout` seconds to send each request line, and then the
    head and body of that request.

    One deadline a connection, for what it awaits: moving it costs an assignment, and its one
    timer wakes up at most once a timeout, to look (a timer set and cancelled per request is
    work the reactor does for every request).
    """

    _due = None  # when what is awaited must have arrived; None while a request is answered
    _receiving = None  # the request whose head and body are awaited; None for a request line
    _watch = None
    _connections = None  # the site's open connections (Underway), which this one joins

    def connectionMade(self):
        super().connectionMade()
        self.expect(None)
        self._connections = getattr(getattr(self, "site", None), "connections", None)
        if self._connections is not None:
            self._connections.started(self)

    def expect(self, request) -> None:
        """From now on, await the rest of `request`, or (None) the next request line."""
        site = getattr(self, "site", None)
        timeout = request.receive_timeout if request is not None else getattr(site, "receive_timeout", None)
        if not timeout:
            return
        self._receiving = request
        self._due = site.reactor.seconds() + timeout
        if self._watch is None:
            self._watch = self.callLater(timeout, self._look)

    def received(self, request) -> None:
        """`request` is all in (or refused): nothing is awaited until it is answered."""
        if self._receiving is request:
            self._due = self._receiving = None

    def _look(self):
        self._watch = None
        if self._due is None:
            return
        left = self._due - self.site.reactor.seconds()
        if left > 0:
            self._watch = self.callLater(left, self._look)
            return
        request, self._due, self._receiving = self._receiving, None, None
        if request is not None:
            request.too_slow()
        else:
            write_json_answer(self.transport, 408, _too_slow_message(self.site.receive_timeout))
            self.transport.loseConnection()

    def checkPersistence(self, request, version):
        # Called once a request is all in: while the service stops, its answer ends the connection.
        if getattr(self.site, "closing", False):
            request.setHeader(b"Connection", b"close")
            return False
        return super().checkPersistence(request, version)

    def requestDone(self, request):
        super().requestDone(request)
        if self.persistent and self._receiving is None:
            self.expect(None)

    def connectionLost(self, reason):
        if self._connections is not None:
            self._connections.ended(self)
        self._due = self._receiving = None
        if self._watch is not None and self._watch.active():
            self._watch.cancel()
        self._watch = None
        return super().connectionLost(reason)

    def lineLengthExceeded(self, line):
        # The request line or a header is longer than the channel reads (16 KiB).
        write_json_answer(self.transport, 414, "request line or header too long")
        self.transport.loseConnection()

    def malformed_request(self):
        """Twisted's own answer to a malformed request has no body; this one says what it is."""
        write_json_answer(self.transport, 400, "malformed HTTP request")
        self.loseConnection()


def request_factory(max_body_bytes: int, receive_timeout: float, early_headers=None):
    """A requestFactory for twisted.web.server.Site with the given body limit and deadline.

    `early_headers(route, origin)` gives extra headers for an early 413 or 408 (CORS, say).
    """
    attributes = {"max_body_bytes": max_body_bytes, "receive_timeout": receive_timeout}
    if early_headers is not None:
        attributes["early_headers"] = staticmethod(early_headers)
    return type("Request", (LimitedRequest,), attributes)
