"""Which route a request's path names, worked out once per request: for the access log, the
metrics, and the CORS headers of an answer given before the request is routed."""

from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

EVENTS = "/apps/{app}/events"
TYPED_EVENTS = "/apps/{app}/events/{event_type}"
_SERVICE_PATHS = {b"/healthz", b"/readyz", b"/metrics", b"/attolytics.js", b"/openapi.json"}


@dataclass(frozen=True)
class Route:
    """A request's route: its label (the path without the ids in it, so labels stay few), and
    on the event routes the app and event type the path names."""

    label: str
    app_id: str | None = None
    event_type_id: str | None = None


OTHER = Route("other")


def route_of(path: bytes) -> Route:
    """The route of a request path (a query string is ignored)."""
    path = path.split(b"?", 1)[0]
    parts = path.split(b"/")
    if len(parts) in (4, 5) and parts[1] == b"apps" and parts[3] == b"events":
        if len(parts) == 4:
            return Route(EVENTS, _segment(parts[2]))
        return Route(TYPED_EVENTS, _segment(parts[2]), _segment(parts[4]))
    if path in _SERVICE_PATHS:
        return Route(path.decode())
    return OTHER


def _segment(raw: bytes) -> str:
    return unquote_to_bytes(raw).decode("utf-8", errors="replace")
