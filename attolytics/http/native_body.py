"""The adapter for Attolytics' own bodies, on both event routes: `{"secret_key", "events"}`, the
key in the body or as a Bearer token, each event's table named by the route or by its `_t`.

The C decoder (fast_body.py) reads the bodies it can decide; the precise parser (strict_json.py) reads
the others, and any body whose events the C decoder's form could not turn into rows.
"""

from attolytics.config import App
from attolytics.http.answers import ApiError
from attolytics.http.strict_json import parse_json
from attolytics.http.fast_body import FastBodies
from attolytics.http.submission import EventsByTable, Submission
from attolytics.logs import Seldom, logger
from attolytics.outcomes import EventRejected

log = logger(__name__)

# The member of an event that names its table, on the route that does not.
ROUTING_KEY = "_t"


def bearer_token(request) -> bytes | None:
    """The token of an `Authorization: Bearer <token>` header, if any."""
    header = request.getHeader(b"authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(b" ")
    if scheme.lower() != b"bearer" or not token.strip():
        raise ApiError(401, "Authorization must be Bearer <secret key>")
    return token.strip()


def given_keys(secret_key: str | None, bearer: bytes | None) -> list[bytes]:
    """The keys a request carries: the body's secret_key (unless empty) and the Bearer token."""
    found = [secret_key.encode("utf-8", errors="surrogatepass")] if secret_key else []
    return found + [bearer] if bearer else found


class NativeBodies:
    """Reads our bodies into Submissions; `serve(tables)` gives the C decoder its tables."""

    def __init__(self, clock):
        self._fast = None
        self._faults = Seldom(clock)  # when a fault of the C decoder was last logged

    def serve(self, tables) -> None:
        """Decode events for these tables (name -> Table) from now on."""
        self._fast = FastBodies(tables)

    def read(self, request, app: App, event_type_id: str | None, raw: bytes) -> Submission:
        """The request's key and events, once the body is an object of secret_key and events;
        counts them on the request (request.events_received) as soon as they are known, and only
        then reads the Authorization header, so that a request refused for it is counted."""
        routing_key = ROUTING_KEY if event_type_id is None else None
        fast = self._decode(raw, app, event_type_id)
        if fast is not None:
            request.events_received = fast.events
            return Submission(app, given_keys(fast.secret_key, bearer_token(request)), fast.events, event_type_id,
                              routing_key, decoded=fast.decoded,
                              read=lambda: _grouped(parse_json(raw), app, event_type_id))
        body = parse_json(raw)
        if isinstance(body, dict) and isinstance(body.get("events"), list):
            request.events_received = len(body["events"])
        bearer = bearer_token(request)
        events = _grouped(body, app, event_type_id)
        return Submission(app, given_keys(body.get("secret_key"), bearer), len(body["events"]), event_type_id,
                          routing_key, events=events)

    def _decode(self, raw: bytes, app: App, event_type_id: str | None):
        """The C decoder's FastBody, or None when the precise parser must read the body."""
        if self._fast is None:
            return None
        try:
            return self._fast.decode(raw, app, event_type_id)
        except Exception:
            # A fault of the C decoder (it only reads) must not cost a client its events.
            self.fast_failed(app)
            return None

    def fast_failed(self, app: App) -> None:
        """Log the fault being handled, with its traceback, at most once a minute (saying how many
        bodies failed since), so that a fault on every request does not flood the log."""
        faults = self._faults.due()
        if faults:
            log.failure("the fast path failed on a body of app {app_id} ({faults} since the last such "
                        "message); the precise path answers them", app_id=app.app_id, faults=faults)


def _grouped(body, app: App, event_type_id: str | None) -> EventsByTable:
    """The events of a parsed body by table name, once the body has our shape."""
    events = _events_of(body)
    groups: dict[str, list] = {}  # table name -> [(index, event)], in first-seen order
    misrouted = None
    for index, event in enumerate(events):
        try:
            type_id = event_type_id if event_type_id is not None else _routed(app, event, index)
        except EventRejected as e:
            misrouted = e
            break
        groups.setdefault(app.event_types[type_id], []).append((index, event))
    return EventsByTable(list(groups.items()), misrouted)


def _events_of(body) -> list:
    """The events of a body of secret_key and events, with nothing else in it."""
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object with secret_key and events")
    for key in body:
        if key not in ("secret_key", "events"):
            raise ApiError(400, f"unknown key {key[:100]!r} in body; expected secret_key and events")
    key = body.get("secret_key")
    if key is not None and not isinstance(key, str):
        raise ApiError(400, "secret_key must be a string")
    events = body.get("events")
    if not isinstance(events, list):
        raise ApiError(400, "events must be a JSON array of event objects")
    return events


def _routed(app: App, event, index: int) -> str:
    """The event type an event of the `_t` route names, once the app has it."""
    if not isinstance(event, dict):
        raise EventRejected(index, None, "an event must be a JSON object")
    type_id = event.get(ROUTING_KEY)
    if type_id is None:
        raise EventRejected(index, ROUTING_KEY, "_t is missing; it names the table of the event")
    if not isinstance(type_id, str):
        raise EventRejected(index, ROUTING_KEY, "_t must be a string naming the table of the event")
    if type_id not in app.event_types:
        raise EventRejected(index, ROUTING_KEY, f"app {app.app_id!r} has no table {type_id[:100]!r}", status=404)
    return type_id
