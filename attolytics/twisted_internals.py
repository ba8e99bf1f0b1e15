"""Every use of a part of Twisted that is not its public API, in one place, each pinned by a test
(tests/test_twisted_internals.py) so that a Twisted upgrade that changes it fails a test, not a
production process. No name in backquotes below appears anywhere else in attolytics
(tests/test_layout.py checks it).

Checked on Twisted 23.10.0, 24.3.0, 24.11.0, 25.5.0, 26.4.0 and 26.10.0: what is used here holds
on each. setup.py asks for 25.5 or later, below 27: before 25.5 a POST body is always parsed as a
form, and its Content-Type parser raises on hostile headers (tests/test_hostile.py), and 23.10
answers a request line with any HTTP version as given.

Used, and why:

- `_path` of twisted.web.http.HTTPChannel (request_line_path): the path of the request line, which
  the channel holds until the head is complete. An early 413 (a Content-Length over the limit,
  seen before the request has its path) needs it for the CORS headers of the app the path names.
  The public way, overriding lineReceived to keep the line, costs a call per header line of every
  request.
- `_respondToBadRequestAndDisconnect` of twisted.web.http.HTTPChannel (HookedHTTPChannel): how the
  channel answers a malformed request; overridden to answer in JSON like every other error.
  Twisted has no public hook for it.
- `_shouldShutdown` of twisted.internet.tcp.Port (close_without_shutdown): keeps a port that stops
  listening from shutting its socket down, which would end the socket in every process that shares
  it (the workers accept on it, supervisor.py holds it). Twisted sets it itself for adopted sockets.
- `numberAccepts` of twisted.internet.tcp.Port, with the port's doRead replaced on the instance
  (accept_one_at_a_time): how many connections one read accepts, which Twisted grows by 20 after
  a full round; set to one before each read so that workers sharing a socket share a burst.
  Not underscored, but undocumented.
- A copy of twisted.web.server.Request.process (process_with_date): the same steps, with a Date
  header made once a second by the caller instead of once a request. It uses none of Twisted's
  private names: `_handleStar` (the answer to OPTIONS *) is written here with public calls, and
  no `_IEncodingResource` is looked for (nor its `_encoder` set): no resource of the service
  encodes its answers on the fly.

Replaced by public ways:

- `_disconnected` of twisted.web.http.Request: the request records a lost connection in its own
  connectionLost (http/request.py).
- `_parsePOSTFormSubmission` of twisted.web.server.Site: Site's parsePOSTFormSubmission argument
  (Twisted 25.5 and later), given by http/site.py.

Looked at, and public: storage/pool.py overrides doRead of txpostgres's Connection, the
IReadDescriptor method the reactor calls; what it relies on is txpostgres raising from it when the
server is gone (tests/test_reconnect.py), not a part of Twisted.
"""

from twisted.python.failure import Failure
from twisted.web import http, server


def request_line_path(channel) -> bytes:
    """The path of the request line a channel has read, before the request has it (b"" if none)."""
    return getattr(channel, "_path", b"")


class HookedHTTPChannel(http.HTTPChannel):
    """An HTTP channel whose answer to a malformed request is its malformed_request()."""

    def malformed_request(self) -> None:
        """Answer a malformed request and close the connection (by default, as twisted.web does)."""
        super()._respondToBadRequestAndDisconnect()

    def _respondToBadRequestAndDisconnect(self):
        self.malformed_request()


def close_without_shutdown(port):
    """Stop listening on `port` and close its socket without shutting the socket down, so that
    other processes holding a copy of it go on accepting; a Deferred, as stopListening gives."""
    port._shouldShutdown = False
    return port.stopListening()


def accept_one_at_a_time(port) -> None:
    """Make each read of a listening `port` accept one connection, not a growing burst."""
    read = port.doRead

    def accept_one():
        port.numberAccepts = 1
        return read()

    port.doRead = accept_one


def process_with_date(request: server.Request, date: bytes) -> None:
    """What twisted.web's Request.process does, with `date` as the Date header: find the resource
    the path names in the request's site and render it."""
    request.site = request.channel.site
    request.setHeader(b"Server", server.version)
    request.setHeader(b"Date", date)
    request.prepath = []
    request.postpath = list(map(http.unquote, request.path[1:].split(b"/")))
    if request.path == b"*":
        _answer_star(request)
        return
    try:
        request.render(request.site.getResourceFor(request))
    except BaseException:
        request.processingFailed(Failure())


def _answer_star(request: server.Request) -> None:
    """`OPTIONS *` asks whether the server is there: 200; any other method on `*` is 405."""
    if request.method != b"OPTIONS":
        request.setResponseCode(http.NOT_ALLOWED)
        request.setHeader(b"Allow", b"OPTIONS")
    request.setHeader(b"Content-Length", b"0")
    request.finish()
