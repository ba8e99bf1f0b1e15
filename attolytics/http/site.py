"""The twisted.web Site of the service: no tracebacks to clients, one access log line per request."""

import time

from twisted.internet.defer import Deferred, succeed
from twisted.web.server import Site

from attolytics.http.request import JsonErrorsChannel, request_factory
from attolytics.logs import Seldom, logger

# The access log keeps the namespace log shippers already filter its lines on.
log = logger("attolytics.site")


class Underway:
    """What a site has begun and not yet ended (its requests, from their first line until
    answered; its connections, until closed), so that shutdown can wait for them."""

    def __init__(self):
        self.items = set()
        self._waiters: list[Deferred] = []

    def started(self, item) -> None:
        """A request's first line has arrived, or a connection was made."""
        self.items.add(item)

    def ended(self, item) -> None:
        """A request was answered, refused, or its connection lost; or a connection was closed."""
        self.items.discard(item)
        if not self.items:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def idle(self) -> Deferred:
        """Fires when none is left."""
        if not self.items:
            return succeed(None)
        waiter = Deferred()
        self._waiters.append(waiter)
        return waiter


class _Unwatched:
    """The live view of a site that has none: no one ever watches it."""

    watched = False


class AttolyticsSite(Site):
    """A Site whose requests enforce the body limit and a deadline, and whose access log is
    structured."""

    displayTracebacks = False
    # Plain HTTP/1.1 channels (no HTTP/2 negotiation, which needs TLS anyway), with JSON errors.
    protocol = JsonErrorsChannel

    def __init__(self, resource, max_body_bytes: int, receive_timeout: float, early_headers=None,
                 metrics=None, reactor=None, access_log: bool = True, live=None):
        super().__init__(
            resource,
            requestFactory=request_factory(max_body_bytes, receive_timeout, early_headers),
            # No idle timer of twisted.web's, which it sets anew after every request: the
            # channel's own deadline covers an idle connection (JsonErrorsChannel).
            timeout=None,
            reactor=reactor,
            # Never parse bodies as HTML forms: the API takes JSON, and twisted.web's form
            # detection parses Content-Type with the email package, a fifth of the time of a
            # small request.
            parsePOSTFormSubmission=False,
        )
        self.receive_timeout = receive_timeout
        self._early_headers = early_headers
        self.in_flight = Underway()
        self.connections = Underway()
        # Set as the service stops: every answer from then on closes its connection.
        self.closing = False
        self.metrics = metrics
        # Whether log() writes a line for each request (the service's verbosity says).
        self.access_log = access_log
        # The live view's feed (attolytics/live/feed.py), given each request while watched.
        self.live = live if live is not None else _Unwatched()
        self._live_faults = Seldom(self.reactor)

    def stop_keeping_alive(self) -> None:
        """From now on, every answer (those not yet begun too) closes its connection."""
        self.closing = True
        for channel in list(self.connections.items):
            for request in channel.requests:
                request.close_after_answer()

    def close_idle_connections(self) -> None:
        """Close the connections that carry no request now (with `closing`, the others close
        after their answer)."""
        for channel in list(self.connections.items):
            if not channel.requests:
                # The channel's own close: it unregisters the channel as its transport's producer
                # (the transport's, with an answer still buffered, would wait for it for ever).
                channel.loseConnection()

    def limit(self, max_body_bytes: int, receive_timeout: float) -> None:
        """Take requests that arrive from now on with this body limit and deadline."""
        self.requestFactory = request_factory(max_body_bytes, receive_timeout, self._early_headers)
        self.receive_timeout = receive_timeout

    def _show_live(self, request) -> None:
        """Give `request` to the live view: Request.finish() called log(), so a fault of the view
        must stop here, or the answer and the connection's next requests would be lost."""
        try:
            self.live.record(request)
        except Exception:
            faults = self._live_faults.due()
            if faults:
                log.failure("the live view failed on a request ({faults} since the last such message)",
                            faults=faults)

    def log(self, request):
        """Count and log one line per finished request, with fields for log shippers; and show it
        in the live view while someone watches (when no one does, that costs one look)."""
        seconds = time.monotonic() - request.started
        route = request.route
        if self.metrics is not None:
            self.metrics.child(self.metrics.requests, route.label, str(request.code)).inc()
            self.metrics.request_seconds.observe(seconds)
        if self.live.watched:
            self._show_live(request)
        if not self.access_log:
            return
        address = request.getClientAddress()
        app = route.app_id
        log.info(
            "{client} {method} {path} {status} {bytes} bytes {duration:.1f} ms",
            client=getattr(address, "host", "-"),
            method=request.method.decode("latin-1"),
            path=route.label if route.secret else request.uri.decode("latin-1")[:200],
            route=route.label,
            app=app[:100] if app is not None else None,
            events=request.events_received,
            status=request.code,
            bytes=request.sentLength,
            duration=round(seconds * 1000, 3),
        )
