"""The HTTP API: Klein routes that check a request, hand its rows to the writer, and answer in JSON."""

import hmac
import json
import zlib
from decimal import Decimal
from urllib.parse import unquote_to_bytes

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.web.resource import Resource
from werkzeug.exceptions import MethodNotAllowed, NotFound

from attolytics import cors, openapi
from attolytics.browser import BrowserClient
from attolytics.config import Config
from attolytics.database import DatabaseUnavailable
from attolytics.logs import logger
from attolytics.metrics import CONTENT_TYPE, Metrics
from attolytics.table import EventRejected
from attolytics.writer import RowsRefused, WriterBusy

log = logger(__name__)

RETRY_AFTER_SECONDS = 5
ALLOWED = "POST, OPTIONS"


class ApiError(Exception):
    """An answer other than 200, with the JSON body that explains it."""

    def __init__(self, status: int, error: str, event: int | None = None, field: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(error)
        self.status = status
        self.body = {"error": error}
        if event is not None:
            self.body["event"] = event
        if field is not None:
            self.body["field"] = field
        self.headers = headers or {}


def _unavailable(reason: str) -> ApiError:
    return ApiError(503, reason, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes):
    """Parse a UTF-8 JSON body strictly: numbers keep their digits, no NaN, no duplicate keys."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(400, f"body is not valid UTF-8 (byte {e.start})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise ApiError(400, "body is not valid JSON: nested too deeply") from None
    except ArithmeticError:  # decimal.InvalidOperation: an exponent beyond Decimal's range
        raise ApiError(400, "body holds a number out of any column's range") from None
    except ValueError as e:
        raise ApiError(400, f"body is not valid JSON: {e}") from None


def _unique_object(pairs):
    result = dict(pairs)
    if len(result) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key[:100]!r} in an object")
            seen.add(key)
    return result


# Made once: json.loads with options would make a decoder for every body.
_DECODER = json.JSONDecoder(
    parse_float=Decimal, parse_constant=_reject_constant, object_pairs_hook=_unique_object
)


def _check_content_type(request) -> None:
    """application/json in UTF-8; or text/plain, which is what a browser's sendBeacon can send
    to another origin without a preflight (its charset is ignored: the body is UTF-8 JSON)."""
    header = request.getHeader(b"content-type")
    if header is None:
        raise ApiError(415, "Content-Type must be application/json")
    media_type, *params = header.decode("latin-1").split(";")
    media_type = media_type.strip().lower()
    if media_type == "text/plain":
        return
    if media_type != "application/json":
        raise ApiError(415, f"Content-Type must be application/json, not {media_type[:100]!r}")
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise ApiError(415, "the only charset accepted is utf-8")


def decoded_body(request, limit: int) -> bytes:
    """The request body, inflated when its Content-Encoding is gzip or deflate.

    Inflating stops one byte past `limit`: a small body that inflates past it gets 413 and is
    never inflated in full.
    """
    raw = request.content.getvalue()
    encoding = (request.getHeader(b"content-encoding") or b"identity").strip().lower()
    if encoding == b"identity":
        return raw
    if encoding not in _INFLATE_WBITS:
        raise ApiError(415, f"Content-Encoding {encoding[:50].decode('latin-1')!r} is not supported; "
                            "use gzip or deflate")
    for wbits in _INFLATE_WBITS[encoding]:
        inflater = zlib.decompressobj(wbits)
        try:
            body = inflater.decompress(raw, limit + 1)
        except zlib.error:
            continue
        if len(body) > limit:
            raise ApiError(413, f"request body inflates past the limit of {limit} bytes")
        if not inflater.eof or inflater.unused_data:
            raise ApiError(400, f"body is not valid {encoding.decode()} data (cut short or trailing bytes)")
        return body
    raise ApiError(400, f"body is not valid {encoding.decode()} data")


# zlib's window bits per encoding; "deflate" should be zlib-wrapped, but some clients send raw.
_INFLATE_WBITS = {b"gzip": (16 + zlib.MAX_WBITS,), b"deflate": (zlib.MAX_WBITS, -zlib.MAX_WBITS)}


class EventsAPI:
    """The Klein application; `ready()` gives it the tables and the writer once the database is up."""

    app = Klein()

    def __init__(self, config: Config):
        self.config = config
        self.tables = None
        self.writer = None
        self._openapi = None
        self.metrics = Metrics()
        self._browser_client = BrowserClient(config.max_body_bytes)
        self.metrics.writer_queue_rows.set_function(lambda: self.writer.queued_rows if self.writer else 0)
        self.metrics.database_ready.set_function(lambda: 1 if self._ready() else 0)

    def _ready(self) -> bool:
        return self.tables is not None and bool(self.writer.db.connected)

    def ready(self, tables, writer) -> None:
        """Start serving: `tables` maps table name to Table, `writer` stores rows."""
        self.tables = tables
        self.writer = writer
        # Apps with a table filled partly from request headers: only they need them decoded.
        self._header_apps = {
            app.app_id: any(tables[t].uses_headers for t in app.event_types.values())
            for app in self.config.apps.values()
        }
        self._openapi = json.dumps(openapi.document(self.config, tables)).encode()

    def resource(self):
        """The twisted.web resource that serves this API."""
        return _Utf8Urls(self.app.resource())

    def early_headers(self, path: bytes, origin: bytes | None) -> dict[str, str]:
        """CORS headers for an answer given before the request is routed (an early 413)."""
        parts = unquote_to_bytes(path.split(b"?", 1)[0]).split(b"/")
        if len(parts) < 4 or parts[1] != b"apps":
            return {}
        app = self.config.apps.get(parts[2].decode("utf-8", errors="replace"))
        if app is None:
            return {}
        return cors.response_headers(app, origin.decode("latin-1") if origin else None)

    # One rule per path, POST and OPTIONS together: werkzeug's matcher costs grow with rules.
    @app.route("/apps/<app_id>/events/<event_type_id>", methods=["POST", "OPTIONS"])
    def typed_events(self, request, app_id, event_type_id):
        """The seed's route: every event goes to the table of the event type in the URL."""
        if request.method == b"OPTIONS":
            return self._preflight(request, app_id)
        return self._post(request, app_id, event_type_id)

    @app.route("/apps/<app_id>/events", methods=["POST", "OPTIONS"])
    def events(self, request, app_id):
        """The later route: each event names its event type (its table) in `_t`."""
        if request.method == b"OPTIONS":
            return self._preflight(request, app_id)
        return self._post(request, app_id, None)

    @app.route("/healthz", methods=["GET"])
    def healthz(self, request):
        """200 while the process runs."""
        return _write_json(request, 200, {"status": "ok"})

    @app.route("/readyz", methods=["GET"])
    def readyz(self, request):
        """200 when the tables are checked and a database connection is up, else 503."""
        if self.tables is None:
            return _write_json(request, 503, {"ready": False, "error": "the tables are not checked yet"})
        if not self._ready():
            return _write_json(request, 503, {"ready": False, "error": "no connection to the database"})
        return _write_json(request, 200, {"ready": True})

    @app.route("/metrics", methods=["GET"])
    def metrics_page(self, request):
        """The Prometheus metrics."""
        request.setHeader(b"Content-Type", CONTENT_TYPE)
        return self.metrics.render()

    @app.route("/attolytics.js", methods=["GET"])
    def browser_client(self, request):
        """The browser client, which pages load from here with a script tag."""
        request.setHeader(b"Content-Type", b"text/javascript; charset=utf-8")
        request.setHeader(b"Cache-Control", b"public, max-age=3600")
        # Lets a page load it with crossorigin (for subresource integrity).
        request.setHeader(b"Access-Control-Allow-Origin", b"*")
        request.setHeader(b"Vary", b"Accept-Encoding")
        body, encoding = self._browser_client.body_for(request.getHeader(b"accept-encoding"))
        if encoding is not None:
            request.setHeader(b"Content-Encoding", encoding)
        return body

    @app.route("/openapi.json", methods=["GET"])
    def openapi_document(self, request):
        """The OpenAPI description of the routes, apps, event types and columns (never the keys)."""
        if self._openapi is None:
            error = _unavailable("the tables are not checked yet; retry later")
            return _write_json(request, error.status, error.body, error.headers)
        request.setHeader(b"Content-Type", b"application/json")
        return self._openapi

    def _preflight(self, request, app_id):
        """Answer a browser's CORS preflight."""
        app = self.config.apps.get(app_id)
        if app is None:
            return _write_json(request, 404, {"error": f"unknown app {app_id[:100]!r}"})
        request.setResponseCode(204)
        _set_headers(request, cors.preflight_headers(app, _origin(request)))
        request.setHeader(b"Allow", ALLOWED.encode())
        return b""

    def _post(self, request, app_id: str, event_type_id: str | None):
        """Check a POST; answer at once when it is refused, else once the writer has its rows.

        A plain function rather than a coroutine: on the hot path, every Deferred counts.
        """
        events = None
        try:
            app = self.config.apps.get(app_id)
            if app is None:
                raise ApiError(404, f"unknown app {app_id[:100]!r}")
            origin = _origin(request)
            _set_headers(request, cors.response_headers(app, origin))
            if not cors.may_post(app, origin):
                raise ApiError(403, f"pages from {origin[:100]!r} may not post to app {app_id!r}; "
                                    "its access_control_allow_origin does not list them")
            if event_type_id is not None and event_type_id not in app.event_types:
                raise ApiError(404, f"app {app_id!r} has no event type {event_type_id[:100]!r}")
            _check_content_type(request)
            raw = decoded_body(request, self.config.max_body_bytes)
            body = parse_json(raw)
            if isinstance(body, dict) and isinstance(body.get("events"), list):
                events = body["events"]  # counted as rejected if the request is refused
                request.events_received = len(events)  # for the access log
            events = self._authenticated_events(body, app, _bearer(request))
            if self.tables is None:
                raise _unavailable("the database is not ready yet; retry later")
            try:
                headers = _header_values(request) if self._header_apps.get(app.app_id) else None
                batches = self._rows(app, events, event_type_id, headers)
            except EventRejected as e:
                raise ApiError(e.status, e.message, event=e.index, field=e.field) from None
            except RecursionError:
                raise ApiError(400, "an event is nested too deeply") from None
            if not batches:
                return _write_json(request, 200, {"inserted": 0})
            try:
                stored = self.writer.insert(batches, len(raw))
            except WriterBusy:
                raise _unavailable("too many events are waiting to be written; retry later") from None
        except ApiError as e:
            self._count_rejected(app_id, events, e.status)
            return _write_json(request, e.status, e.body, e.headers)
        stored.addCallbacks(
            self._stored, self._insert_failed,
            callbackArgs=(request, app_id, batches), errbackArgs=(request, app_id, events),
        )
        # Klein cancels the answer when the client goes away; that must not reach `stored`,
        # whose rows are already on their way into a transaction.
        answer = Deferred()
        stored.chainDeferred(answer)
        return answer

    def _rows(self, app, events: list, event_type_id: str | None, headers) -> list:
        """Check every event; return [(table, rows)] in first-seen order, or raise EventRejected."""
        batches: dict[str, tuple] = {}
        for index, event in enumerate(events):
            type_id = event_type_id
            if type_id is None:
                type_id = _routing_key(event, index)
                if type_id not in app.event_types:
                    raise EventRejected(index, "_t", f"app {app.app_id!r} has no table {type_id[:100]!r}",
                                        status=404)
            table = self.tables[app.event_types[type_id]]
            row = table.row(event, index, headers, ignore="_t" if event_type_id is None else None)
            batches.setdefault(table.name, (table, []))[1].append(row)
        return list(batches.values())

    @staticmethod
    def _authenticated_events(body, app, bearer: bytes | None) -> list:
        """The request's events, once its key (in the body, or as a Bearer token) is the app's."""
        if not isinstance(body, dict):
            raise ApiError(400, "body must be a JSON object with secret_key and events")
        for key in body:
            if key not in ("secret_key", "events"):
                raise ApiError(400, f"unknown key {key[:100]!r} in body; expected secret_key and events")
        key = body.get("secret_key")
        if key is not None and not isinstance(key, str):
            raise ApiError(400, "secret_key must be a string")
        given = [k for k in (key.encode("utf-8", errors="surrogatepass") if key else None, bearer) if k]
        if not given:
            raise ApiError(401, "secret_key is missing (in the body, or as Authorization: Bearer)")
        if not all(_known_key(k, app.secret_keys) for k in given):
            raise ApiError(403, "wrong secret_key")
        events = body.get("events")
        if not isinstance(events, list):
            raise ApiError(400, "events must be a JSON array of event objects")
        return events

    def _stored(self, inserted: int, request, app_id: str, batches) -> bytes:
        """Count the committed events and answer 200."""
        for table, rows in batches:
            self.metrics.child(self.metrics.events_inserted, app_id, table.name).inc(len(rows))
        return _write_json(request, 200, {"inserted": inserted})

    def _count_rejected(self, app_id: str, events, status: int) -> None:
        if events and app_id in self.config.apps:
            reason = _REJECTION_REASONS.get(status, str(status))
            self.metrics.child(self.metrics.events_rejected, app_id, reason).inc(len(events))

    def _insert_failed(self, failure, request, app_id: str, events) -> bytes:
        """The JSON answer for rows the writer could not store."""
        error = failure.value
        if isinstance(error, RowsRefused):
            answer = ApiError(409 if error.unique_violation else 400, _pg_message(error.error))
        elif isinstance(error, DatabaseUnavailable):
            answer = _unavailable(f"{error}; retry later")
        else:
            log.failure("insert failed", failure=failure)
            answer = _unavailable("the database could not store the events; retry later")
        self._count_rejected(app_id, events, answer.status)
        return _write_json(request, answer.status, answer.body, answer.headers)

    @app.handle_errors(NotFound)
    def not_found(self, request, failure):
        return _write_json(request, 404, {"error": "no such route"})

    @app.handle_errors(MethodNotAllowed)
    def method_not_allowed(self, request, failure):
        allowed = ", ".join(sorted(failure.value.valid_methods or [])) or ALLOWED
        return _write_json(
            request, 405, {"error": f"method not allowed; use {allowed}"}, {"Allow": allowed}
        )

    @app.handle_errors(Exception)
    def unexpected(self, request, failure):
        log.failure("unexpected error answering {uri}", failure=failure, uri=request.uri)
        return _write_json(request, 500, {"error": "internal error"})


# The reason label of attolytics_events_rejected_total, by the status of the refusal.
_REJECTION_REASONS = {
    400: "invalid", 401: "unauthenticated", 403: "wrong_key", 404: "unknown_table",
    409: "conflict", 413: "too_large", 415: "unsupported_type", 503: "unavailable",
}


def _known_key(given: bytes, keys: tuple[bytes, ...]) -> bool:
    """Compare with every key in constant time, so timing tells neither the key nor which."""
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key)
    return found


def _bearer(request) -> bytes | None:
    """The token of an `Authorization: Bearer <token>` header, if any."""
    header = request.getHeader(b"authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(b" ")
    if scheme.lower() != b"bearer" or not token.strip():
        raise ApiError(401, "Authorization must be Bearer <secret key>")
    return token.strip()


def _routing_key(event, index: int) -> str:
    if not isinstance(event, dict):
        raise EventRejected(index, None, "an event must be a JSON object")
    type_id = event.get("_t")
    if type_id is None:
        raise EventRejected(index, "_t", "_t is missing; it names the table of the event")
    if not isinstance(type_id, str):
        raise EventRejected(index, "_t", "_t must be a string naming the table of the event")
    return type_id


def _origin(request) -> str | None:
    origin = request.getHeader(b"origin")
    return origin.decode("latin-1") if origin is not None else None


def _header_values(request) -> dict[str, str]:
    """Request headers by lower-case name; repeated ones joined with ", " as HTTP allows."""
    return {
        name.decode("latin-1").lower(): ", ".join(
            v.decode("utf-8", errors="surrogateescape") for v in values
        )
        for name, values in request.requestHeaders.getAllRawHeaders()
    }


def _set_headers(request, headers: dict[str, str]) -> None:
    for name, value in headers.items():
        request.setHeader(name.encode(), value.encode())


def _write_json(request, status: int, body: dict, headers: dict[str, str] | None = None) -> bytes:
    """Set status and headers for a JSON answer and return its bytes."""
    data = json.dumps(body).encode()
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Content-Length", str(len(data)).encode())
    _set_headers(request, headers or {})
    return data


class _Utf8Urls(Resource):
    """Answers a URL or Host that is not UTF-8 with a JSON 400; Klein would answer in plain text."""

    isLeaf = True

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def render(self, request):
        try:
            unquote_to_bytes(request.path).decode("utf-8")
            (request.getHeader(b"host") or b"").decode("utf-8")
        except UnicodeDecodeError:
            return _write_json(request, 400, {"error": "the URL is not valid UTF-8"})
        return self.inner.render(request)


def _pg_message(error: Exception) -> str:
    diag = getattr(error, "diag", None)
    message = (diag and diag.message_primary) or str(error).strip()
    if diag is not None and diag.message_detail:
        message += f" ({diag.message_detail})"
    return f"the database refused the events: {message}"
