"""The browser client as served at /attolytics.js: the packaged script with this service's body
limit and its event id columns written in."""

import gzip
import json
from importlib.resources import files

_MAX_BODY_BYTES = b"__MAX_BODY_BYTES__"
_EVENT_IDS = b"__EVENT_IDS__"


class BrowserClient:
    """The script's text for one service, plain and gzipped, ready to serve.

    `event_ids` maps app id -> event type -> the uuid column the client fills with a new id for
    each event (unless the page gave one), so that a resent event is stored once.
    """

    def __init__(self, max_body_bytes: int, event_ids: dict | None = None):
        template = files("attolytics.http").joinpath("static/attolytics.js").read_bytes()
        for placeholder in (_MAX_BODY_BYTES, _EVENT_IDS):
            if template.count(placeholder) != 1:
                raise RuntimeError(f"the packaged attolytics.js must hold {placeholder.decode()} exactly once")
        ids = json.dumps(event_ids or {}, sort_keys=True)
        self.plain = template.replace(_MAX_BODY_BYTES, str(max_body_bytes).encode()).replace(
            _EVENT_IDS, ids.encode())
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
