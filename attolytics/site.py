"""The twisted.web Site of the service: no tracebacks to clients, one access log line per request."""

import time

from twisted.web.server import Site

from attolytics.logs import logger
from attolytics.request import request_factory

log = logger(__name__)


class AttolyticsSite(Site):
    """A Site whose requests enforce the body limit and whose access log is structured."""

    displayTracebacks = False

    def __init__(self, resource, max_body_bytes: int, early_headers):
        super().__init__(resource, requestFactory=request_factory(max_body_bytes, early_headers))
        # Never parse bodies as HTML forms: the API takes JSON, and twisted.web's form detection
        # parses Content-Type with the email package, a fifth of the time of a small request.
        # (Site's parsePOSTFormSubmission argument, set the way that works with older Twisted.)
        self._parsePOSTFormSubmission = False

    def log(self, request):
        """Log one line per finished request, with fields for log shippers."""
        started = getattr(request, "started", None)
        address = request.getClientAddress()
        log.info(
            "{client} {method} {path} {status} {bytes} bytes {duration:.1f} ms",
            client=getattr(address, "host", "-"),
            method=request.method.decode("latin-1"),
            path=request.uri.decode("latin-1")[:200],
            status=request.code,
            bytes=request.sentLength,
            duration=(time.monotonic() - started) * 1000 if started else 0.0,
        )
