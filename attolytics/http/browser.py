"""The browser client as served at /attolytics.js: the packaged script with this service's
limits (body bytes, events a request, each rate-limited app's burst), and each app's event types
and event id columns written in; an app no web page may post to is left out."""

import gzip
import json
import re
from importlib.resources import files

from attolytics.config import Config

_MAX_BODY_BYTES = b"__MAX_BODY_BYTES__"
_MAX_EVENTS_PER_REQUEST = b"__MAX_EVENTS_PER_REQUEST__"
_EVENTS_AT_ONCE = b"__EVENTS_AT_ONCE__"
_EVENT_IDS = b"__EVENT_IDS__"
_EVENT_TYPES = b"__EVENT_TYPES__"


class BrowserClient:
    """The script's text for one service, plain and gzipped, ready to serve.

    The client keeps each request within the config's max_body_bytes and max_events_per_request,
    and within the burst of an app whose rate limit takes fewer events at once.
    `event_ids` maps app id -> event type -> the uuid column the client fills with a new id for
    each event (unless the page gave one), so that a resent event is stored once. The client
    knows each app's event types, and refuses in the page an event of another type. Apps that
    allow no web page (App.browsers) are not named at all: their ids, types and limits stay
    with the servers that use them.
    """

    def __init__(self, config: Config, event_ids: dict | None = None):
        template = files("attolytics.http").joinpath("static/attolytics.js").read_bytes()
        cap = config.max_events_per_request
        apps = {app.app_id: app for app in config.apps.values() if app.browsers}
        most = {app_id: app.most_events(cap) for app_id, app in apps.items()}
        at_once = {app_id: events for app_id, events in most.items() if events < cap}
        ids = {app_id: columns for app_id, columns in (event_ids or {}).items() if app_id in apps}
        types = {app_id: sorted(app.event_types) for app_id, app in apps.items()}
        values = {
            _MAX_BODY_BYTES: str(int(config.max_body_bytes)).encode(),
            _MAX_EVENTS_PER_REQUEST: str(int(cap)).encode(),
            _EVENTS_AT_ONCE: json.dumps(at_once, sort_keys=True).encode(),
            _EVENT_IDS: json.dumps(ids, sort_keys=True).encode(),
            _EVENT_TYPES: json.dumps(types, sort_keys=True).encode(),
        }
        for placeholder in values:
            if template.count(placeholder) != 1:
                raise RuntimeError(f"the packaged attolytics.js must hold {placeholder.decode()} exactly once")
        # One pass, so that an app id spelled like a placeholder stays as it is.
        pattern = re.compile(b"|".join(map(re.escape, values)))
        self.plain = pattern.sub(lambda found: values[found.group(0)], template)
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
