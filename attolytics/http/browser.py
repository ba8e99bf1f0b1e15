"""The browser client as served at /attolytics.js: the packaged script with this service's body limit."""

import gzip
from importlib.resources import files

_PLACEHOLDER = b"__MAX_BODY_BYTES__"


class BrowserClient:
    """The script's text for one service, plain and gzipped, ready to serve."""

    def __init__(self, max_body_bytes: int):
        template = files("attolytics.http").joinpath("static/attolytics.js").read_bytes()
        if template.count(_PLACEHOLDER) != 1:
            raise RuntimeError("the packaged attolytics.js must hold its placeholder exactly once")
        self.plain = template.replace(_PLACEHOLDER, str(max_body_bytes).encode())
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
