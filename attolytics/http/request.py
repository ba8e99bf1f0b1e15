"""An HTTP request that refuses a body larger than the limit, before or while it arrives, and a
request that takes too long to arrive; and the channel that answers protocol errors in JSON."""

import json
import time
from io import BytesIO

from twisted.web import http, server

from attolytics.http.route import OTHER, Route, route_of

REFUSED_LINGER_SECONDS = 2.0


def _cancel(call) -> None:
    """Cancel a pending reactor call (a deadline), if it has not run or been cancelled yet."""
    if call is not None and call.active():
        call.cancel()


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
    started: float
    received_at: float

    def __init__(self, channel, *args, **kwargs):
        super().__init__(channel, *args, **kwargs)
        self.started = time.monotonic()
        site = getattr(channel, "site", None)
        self.received_at = site.reactor.seconds() if site is not None else time.time()
        self._deadline = channel.callLater(self.receive_timeout, self._too_slow)
        # Kept here: twisted.web drops request.channel once the answer is finished.
        self._tracker = getattr(site, "in_flight", None)
        if self._tracker is not None:
            self._tracker.started(self)

    def __repr__(self):
        # twisted.web's own repr decodes the URI as ASCII, and a log line naming a request whose
        # URI is not (a HEAD with a body, say) would fail to format.
        return f"<Request {self.method!r} {self.uri!r}>"

    def _too_slow(self):
        self._deadline = None
        self._refuse(408, _too_slow_message(self.receive_timeout))

    def _stop_deadline(self):
        _cancel(self._deadline)
        self._deadline = None

    def finish(self):
        # Answer first: ending may let a waiting shutdown go on and close the connection.
        result = super().finish()
        self._ended()
        return result

    def connectionLost(self, reason):
        self._ended()
        return super().connectionLost(reason)

    def _ended(self):
        self._stop_deadline()
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
        self._stop_deadline()
        self.route = route_of(path)
        super().requestReceived(command, path, version)

    def _too_large(self) -> str:
        return f"request body larger than the limit of {self.max_body_bytes} bytes"

    def _refuse(self, status: int, message: str):
        """Answer at once, before the request is complete, and close once the answer is sent."""
        self.refused = True
        self._ended()
        # The request line is parsed but not yet handed to this request: the channel holds it.
        route = route_of(getattr(self.channel, "_path", b""))
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


class JsonErrorsChannel(http.HTTPChannel):
    """An HTTP/1.1 channel whose protocol errors are answered in JSON like every other error,
    and which gives a client `receive_timeout` seconds to send each request line.

    (The request's own deadline starts once its line is in; the channel's idle timeout alone
    would let a client send a byte at a time forever.)
    """

    _line_deadline = None

    def connectionMade(self):
        super().connectionMade()
        self._await_request_line()

    def _await_request_line(self):
        timeout = getattr(self.site, "receive_timeout", None) if hasattr(self, "site") else None
        if timeout:
            self._line_deadline = self.callLater(timeout, self._request_line_too_slow)

    def _request_line_too_slow(self):
        self._line_deadline = None
        write_json_answer(self.transport, 408, _too_slow_message(self.site.receive_timeout))
        self.transport.loseConnection()

    def _cancel_line_deadline(self):
        _cancel(self._line_deadline)
        self._line_deadline = None

    def lineReceived(self, line):
        self._cancel_line_deadline()
        return super().lineReceived(line)

    def requestDone(self, request):
        super().requestDone(request)
        if self.persistent and not self._line_deadline:
            self._await_request_line()

    def connectionLost(self, reason):
        self._cancel_line_deadline()
        return super().connectionLost(reason)

    def lineLengthExceeded(self, line):
        # The request line or a header is longer than the channel reads (16 KiB).
        write_json_answer(self.transport, 414, "request line or header too long")
        self.transport.loseConnection()

    def _respondToBadRequestAndDisconnect(self):
        # Twisted's own answer to a malformed request has no body; say what it is.
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
