"""The live view's answers on the admin port: /live, the page, and /live/events, the feed as
server-sent events (attolytics/live/feed.py says what they carry)."""

import base64
import hashlib
import ipaddress
import re
from functools import cache
from importlib.resources import files

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IPushProducer
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from attolytics.http.answers import RETRY_AFTER_SECONDS, write_json
from attolytics.live.feed import frame

# How long a page waits before it connects again, once its stream is cut (EventSource's retry).
RECONNECT_MILLISECONDS = 2000
_INLINE = re.compile(rb"<(script|style)>(.*?)</\1>", re.S)
_STATUS_CLASS = re.compile(r"[1-5]xx")
# A Host header: a name (an IPv6 address in brackets), then a port or none.
_HOST = re.compile(r"(\[[^\]]*\]|[^:\[\]]*)(?::\d{0,5})?")


def live_pages(feed) -> dict:
    """The admin port's pages of the live view (path -> a function of the request), for AdminResource."""
    return {"/live": by_address(page), "/live/events": by_address(lambda request: stream(request, feed))}


def by_address(answer):
    """`answer`, given only a request whose Host is an IP address or localhost; 421 for another.

    The admin port asks for no key: a page of another site that an operator opens could make its
    own name point at 127.0.0.1 (DNS rebinding), and its script would then read the live view as
    a page of its own. Its requests carry that name as their Host; a request for an address never
    comes from another site's page. (/metrics is not held to this: Prometheus may scrape it by name.)
    """
    def answered(request):
        if named_by_address(request.getHeader(b"host")):
            return answer(request)
        return write_json(request, 421, {"error": "the live view answers a request for its address only, never "
                                                  "for a host name (against DNS rebinding): open it as "
                                                  f"{_address_of(request)}/live"})

    return answered


def named_by_address(host: bytes | None) -> bool:
    """Whether a Host header is an IPv4 address, an IPv6 one in brackets, or localhost, with or
    without a port."""
    match = _HOST.fullmatch(host.decode("latin-1")) if host is not None else None
    if match is None:
        return False
    name = match[1]
    if name.lower() == "localhost":
        return True
    bracketed = name.startswith("[")
    try:
        address = ipaddress.ip_address(name[1:-1] if bracketed else name)
    except ValueError:
        return False
    return bracketed == (address.version == 6)


def _address_of(request) -> str:
    """The address of the port `request` came to, as a URL's start: "http://127.0.0.1:8100"."""
    local = request.getHost()
    if isinstance(local, IPv6Address):
        host = "::1" if ipaddress.ip_address(local.host.partition("%")[0]).is_unspecified else local.host
        return f"http://[{host}]:{local.port}"
    if isinstance(local, IPv4Address):
        return f"http://{'127.0.0.1' if local.host == '0.0.0.0' else local.host}:{local.port}"
    return "http://127.0.0.1:<the admin port>"


@cache
def _page() -> tuple[bytes, bytes]:
    """The packaged page, read once, and a Content-Security-Policy that lets only its own inline
    script and style run (by their hashes) and connect only to this port."""
    html = files("attolytics.live").joinpath("static/live.html").read_bytes()
    allowed = {b"script": [], b"style": []}
    for kind, text in _INLINE.findall(html):
        allowed[kind].append(b"'sha256-" + base64.b64encode(hashlib.sha256(text).digest()) + b"'")
    policy = (b"default-src 'none'; script-src " + b" ".join(allowed[b"script"]) + b"; style-src "
              + b" ".join(allowed[b"style"]) + b"; connect-src 'self'; base-uri 'none'; form-action 'none'; "
              b"frame-ancestors 'none'")
    return html, policy


def page(request) -> bytes:
    """The live view's page: plain HTML and JavaScript that read /live/events."""
    html, policy = _page()
    request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
    request.setHeader(b"Content-Security-Policy", policy)
    request.setHeader(b"Cache-Control", b"no-store")
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    request.setHeader(b"Referrer-Policy", b"no-referrer")
    return html


class Wanted:
    """A stream's filter, from its query: `app=<app id>` and `status=` a code (400), a class (4xx)
    or `refused` (any but 2xx); each absent or empty lets every entry through."""

    def __init__(self, app: str | None, status: str | None):
        self.app = app or None
        status = status or None
        if status is not None and not (status.isdigit() or status == "refused" or _STATUS_CLASS.fullmatch(status)):
            raise ValueError("status must be a code (400), a class (4xx) or refused")
        self.status = status

    @classmethod
    def of(cls, request) -> "Wanted":
        """The filter a request's query asks for; ValueError for a status it cannot mean."""
        def arg(name: bytes) -> str | None:
            value = request.args.get(name, [None])[0]
            return value.decode("utf-8", errors="replace") if value is not None else None

        return cls(arg(b"app"), arg(b"status"))

    def __call__(self, app: str | None, status: int) -> bool:
        """Whether an entry of `app` answered `status` passes."""
        if self.app is not None and app != self.app:
            return False
        wanted = self.status
        if wanted is None:
            return True
        if wanted == "refused":
            return not 200 <= status < 300
        if wanted.endswith("xx"):
            return str(status)[:1] == wanted[0]
        return str(status) == wanted


def stream(request, feed):
    """/live/events: what the feed's ring holds (through the query's filter), then each entry as
    it is recorded, until the viewer goes; 503 when as many viewers as allowed watch already, or
    the service is stopping."""
    try:
        wanted = Wanted.of(request)
    except ValueError as e:
        return write_json(request, 400, {"error": str(e)})
    request.setHeader(b"Content-Type", b"text/event-stream; charset=utf-8")
    request.setHeader(b"Cache-Control", b"no-store")
    request.setHeader(b"X-Accel-Buffering", b"no")  # nginx, if one is put in front, passes each frame on
    if request.method == b"HEAD":
        return b""
    viewer = Viewer(request, feed, wanted)
    backlog = feed.watch(viewer)
    if backlog is None:
        request.responseHeaders.removeHeader(b"Content-Type")
        return write_json(request, 503, {"error": "too many viewers of the live view, or the service is "
                                                  "stopping; retry later"},
                          {"Retry-After": str(RETRY_AFTER_SECONDS)})
    request.registerProducer(viewer, True)
    request.notifyFinish().addBoth(lambda _: feed.unwatch(viewer))
    request.write(b"retry: %d\n" % RECONNECT_MILLISECONDS + feed.hello()
                  + b"".join(data for app, status, data in backlog if wanted(app, status)))
    return NOT_DONE_YET


@implementer(IPushProducer)
class Viewer:
    """One stream of the live view: entries its filter wants are written as they come; while its
    connection cannot take more (the transport pauses it), they are counted instead, and the
    count is sent once it can."""

    def __init__(self, request, feed, wanted: Wanted):
        self.request, self.feed, self.wanted = request, feed, wanted
        self.paused = False
        self.missed = 0
        self.ended = False

    def offer(self, app: str | None, status: int, data: bytes) -> None:
        """An entry of the feed."""
        if not self.wanted(app, status):
            return
        if self.paused:
            self.missed += 1
        else:
            self.send(data)

    def send(self, data: bytes) -> None:
        """Write `data` unless the stream is paused or over."""
        if not (self.paused or self.ended or self.request.finished or self.request.client_gone):
            self.request.write(data)

    def pauseProducing(self) -> None:
        """The connection cannot take more for now: count entries instead."""
        self.paused = True

    def resumeProducing(self) -> None:
        """The connection takes more again: say how many entries it missed."""
        self.paused = False
        if self.missed:
            missed, self.missed = self.missed, 0
            self.send(frame("missed", {"count": missed}))

    def stopProducing(self) -> None:
        """The connection is going: watch no more."""
        self.ended = True
        self.feed.unwatch(self)

    def end(self) -> None:
        """Finish the stream (the service stops)."""
        if self.ended:
            return
        self.ended = True
        self.feed.unwatch(self)
        if not (self.request.finished or self.request.client_gone):
            self.request.unregisterProducer()
            self.request.finish()
