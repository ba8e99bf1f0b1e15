"""The browser client as served at /attolytics.js: the packaged script with this service's body
limit, its events-per-request cap and its event id columns written in."""

import gzip
import json
from importlib.resources import files

from attolytics.config import DEFAULT_MAX_EVENTS_PER_REQUEST

_MAX_BODY_BYTES = b"__MAX_BODY_BYTES__"
_EVENT_IDS = b"__EVENT_IDS__"
_MAX_EVENTS_PER_REQUEST = b"__MAX_EVENTS_PER_REQUEST__"


class BrowserClient:
    """The script's text for one service, plain and gzipped, ready to serve.

    `event_ids` maps app id -> event type -> the uuid column the client fills with a new id for
    each event (unless the page gave one), so that a resent event is stored once.
    `max_events_per_request` is the service's cap on the events of one request, which the client
    keeps each batch within.
    """

    def __init__(self, max_body_bytes: int, event_ids: dict | None = None,
                 max_events_per_request: int = DEFAULT_MAX_EVENTS_PER_REQUEST):
        template = files("attolytics.http").joinpath("static/attolytics.js").read_bytes()
        values = {
            _MAX_BODY_BYTES: str(int(max_body_bytes)).encode(),
            _MAX_EVENTS_PER_REQUEST: str(int(max_events_per_request)).encode(),
            _EVENT_IDS: json.dumps(event_ids or {}, sort_keys=True).encode(),
        }
        for placeholder in values:
            if template.count(placeholder) != 1:
                raise RuntimeError(f"the packaged attolytics.js must hold {placeholder.decode()} exactly once")
        for placeholder, value in values.items():
            template = template.replace(placeholder, value)
        self.plain = template
        self.gzipped = gzip.compress(self.plain, mtime=0)

    def body_for(self, accept_encoding: bytes | None) -> tuple[bytes, bytes | None]:
        """The body to send, and its Content-Encoding, for a request's Accept-Encoding header."""
        if accept_encoding is not None and _accepts_gzip(accept_encoding):
            return self.gzipped, b"gzip"
        return self.plain, None


def _accepts_gzip(header: bytes) -> bool:
    """Whether an Accept-Encoding header allows gzip: by name, else by `*`, with a q above 0."""
    qualities = {}
    for item in header.lower().split(b","):
        name, *params = (part.strip() for part in item.split(b";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition(b"=")
            if key.strip() == b"q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        qualities.setdefault(name, quality)
    return qualities.get(b"gzip", qualities.get(b"*", 0.0)) > 0
