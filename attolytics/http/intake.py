"""The event routes: a POST read by its protocol's adapter, admitted, turned into rows and handed
to the writer, then answered in JSON; and the browser's CORS preflight.

The service hands it the tables (name -> Table) and the writer once the database is ready; it
uses them only through their methods (attolytics/interfaces.py), and knows nothing of SQL.
"""

from twisted.internet.defer import Deferred

from attolytics.config import App, Config
from attolytics.http import cors
from attolytics.http.admission import Admission
from attolytics.http.answers import (
    ApiError,
    set_headers,
    unavailable,
    write_error,
    write_json,
    write_segment_stored,
    write_stored,
)
from attolytics.http.body import check_content_type, decoded_body
from attolytics.http.native_body import NativeBodies
from attolytics.http.paths import ROUTE_TABLE
from attolytics.http.refused import RefusedEvents
from attolytics.http.rows import rows_of
from attolytics.http.segment_body import CALLS, SegmentBodies
from attolytics.logs import logger
from attolytics.outcomes import DatabaseUnavailable, RowsRefused, Stored, WriterBusy

log = logger(__name__)

# The Allow header of a preflight's answer: the methods the event routes answer, as declared.
ALLOWED_METHODS = ", ".join(next(route.methods for route in ROUTE_TABLE if route.handler == "events"))

# The reason label of attolytics_events_rejected_total, by the status of the refusal.
_REJECTION_REASONS = {
    400: "invalid", 401: "unauthenticated", 403: "wrong_key", 404: "unknown_table",
    409: "conflict", 413: "too_large", 429: "rate_limited", 503: "unavailable",
}


class Intake:
    """Stores the events of POSTs and answers them; `serve()` starts it."""

    def __init__(self, config: Config, metrics, clock):
        self.metrics = metrics
        self.admission = Admission(config, clock)
        self.native = NativeBodies(clock)
        self.segment = SegmentBodies(config)
        self.configure(config)
        self.tables = None
        self.writer = None
        self.refused = None  # RefusedEvents, with rejected_events configured

    def configure(self, config: Config) -> None:
        """Take requests with this configuration from the next one on."""
        self.config = config
        self.admission.configure(config)
        self.segment.configure(config)

    def serve(self, tables, writer, refused_writer=None) -> None:
        """Start storing events: `tables` maps table name to Table, `writer` stores rows, and
        `refused_writer` the events of refused requests (with rejected_events configured)."""
        self.tables, self.writer = tables, writer
        self.native.serve(tables)
        self.segment.serve(tables)
        self.admission.serve(tables)
        if self.config.rejected_events is not None:
            table = tables[self.config.rejected_events]
            self.refused = RefusedEvents(self.config, table, refused_writer, self.metrics)

    @property
    def ready(self) -> bool:
        """Whether events can be stored now: the tables are checked and a connection is up."""
        return self.tables is not None and self.writer.connected

    def segment_preflight(self, request, allow: bytes = b"POST, OPTIONS") -> bytes:
        """Answer a browser's CORS preflight on a route of Segment's API, whose app it does not
        name: allowed when an app with a segment section allows the page. `allow`: the route's methods."""
        request.setResponseCode(204)
        set_headers(request, cors.preflight_headers_any(self.segment.apps(), _origin(request)))
        request.setHeader(b"Allow", allow)
        return b""

    def preflight(self, request, app_id: str) -> bytes:
        """Answer a browser's CORS preflight."""
        app = self.config.apps.get(app_id)
        if app is None:
            return write_json(request, 404, {"error": f"unknown app {app_id[:100]!r}"})
        request.setResponseCode(204)
        set_headers(request, cors.preflight_headers(app, _origin(request)))
        request.setHeader(b"Allow", ALLOWED_METHODS.encode())
        return b""

    def post(self, request, app_id: str, event_type_id: str | None):
        """Check a POST; answer at once when it is refused, else once the writer has its rows.

        `event_type_id` is None on the `_t` route. A plain function rather than a coroutine: on
        the hot path, every Deferred counts.
        """
        app = raw = None
        try:
            app = self._app_for(request, app_id, event_type_id)
            check_content_type(request)
            raw = request.content.getvalue()  # as sent, kept if it cannot be inflated
            raw = decoded_body(request, self.config.max_body_bytes)
            submission = self.native.read(request, app, event_type_id, raw)
            stored = self._store(request, submission, len(raw))
        except ApiError as e:
            self._refused(request, app, raw, event_type_id, e, fault_known=True)
            return write_error(request, e)
        if stored is None:
            # No rows: counted as the rows of the route's tables would be, with `duplicates`
            # when the route's table (on the `_t` route, any of the app's) skips them.
            names = app.event_types.values() if event_type_id is None else [app.event_types[event_type_id]]
            skips = any(self.tables[name].key for name in names)
            return write_stored(request, 0, 0 if skips else None)
        return self._answer(request, *stored, app, raw, event_type_id, _native_answer)

    def post_segment(self, request, call_name: str):
        """Check a POST of Segment's tracking API (`call_name`: batch, track... or a short form);
        answer at once when it is refused, else once the writer has its rows."""
        app = raw = None
        call = CALLS[call_name]
        try:
            set_headers(request, cors.any_app_headers(self.segment.apps(), _origin(request)))
            check_content_type(request)
            raw = request.content.getvalue()
            raw = decoded_body(request, self.config.max_body_bytes)
            body = self.segment.parse(raw)
            app, key = self.segment.app_of(request, body)
            self._check_origin(request, app)
            if not self.admission.ready:  # the typed tables are known once the database is
                raise unavailable("the database is not ready yet; retry later")
            submission = self.segment.read(request, app, key, call, body, len(raw))
            stored = self._store(request, submission, len(raw))
        except ApiError as e:
            self._refused(request, app, raw, None, e, fault_known=True, segment=True)
            return write_error(request, self._for_segment(e))
        if stored is None:
            return write_segment_stored(request, 0, 0)
        messages, call_tables = submission.count, frozenset(app.segment.call_tables.values())

        def answer(request, stored: Stored) -> bytes:
            """Counted in messages: those whose call table row was stored, and those skipped."""
            skipped = sum(n for table, n in (stored.duplicates_by_table or {}).items() if table in call_tables)
            return write_segment_stored(request, messages - skipped, skipped)

        return self._answer(request, *stored, app, raw, None, answer, segment=True)

    @staticmethod
    def _for_segment(error: ApiError) -> ApiError:
        """A refusal as Segment's API answers it: also `code` and `message`, which RudderStack's
        SDKs read to tell a request to drop from one to send again; the message names the
        message and field at fault, as the SDKs log the message alone."""
        body = error.body
        where = [f"{name} {body[key]}" for name, key in (("message", "event"), ("field", "field")) if key in body]
        body.update(success=False, code=_REJECTION_REASONS.get(error.status, str(error.status)),
                    message=f"{body['error']} ({', '.join(where)})" if where else body["error"])
        return error

    def _store(self, request, submission, body_bytes: int):
        """Admit a submission and hand its rows to the writer: a Deferred of Stored and the rows, or
        None when it has no rows; raises the ApiError that refuses it."""
        values = self.admission.admit(request, submission)
        batches = rows_of(submission, self.tables, values, self.native.fast_failed)
        if not batches:
            return None
        try:
            stored = self.writer.insert(batches, body_bytes)
        except WriterBusy:
            raise unavailable("too many events are waiting to be written; retry later") from None
        return stored, batches

    def _answer(self, request, stored: Deferred, batches, app: App, raw: bytes, event_type_id: str | None, write,
                segment: bool = False) -> Deferred:
        """The answer once the writer is done: `write(request, stored)` when stored; `segment`
        for a request of Segment's API."""
        stored.addCallbacks(
            self._stored, self._insert_failed,
            callbackArgs=(request, app.app_id, batches, write), errbackArgs=(request, app, raw, event_type_id, segment),
        )
        # Klein cancels the answer when the client goes away; that must not reach `stored`,
        # whose rows are already on their way into a transaction.
        answer = Deferred()
        stored.chainDeferred(answer)
        return answer

    def _app_for(self, request, app_id: str, event_type_id: str | None) -> App:
        """The app a POST is for, once the page it comes from may post to it; sets the CORS
        headers every answer to it carries."""
        app = self.config.apps.get(app_id)
        if app is None:
            raise ApiError(404, f"unknown app {app_id[:100]!r}")
        self._check_origin(request, app)
        if event_type_id is not None and event_type_id not in app.event_types:
            raise ApiError(404, f"app {app_id!r} has no event type {event_type_id[:100]!r}")
        return app

    def _check_origin(self, request, app: App) -> None:
        """Set the CORS headers of every answer to a POST for `app`; 403 when the page it comes
        from may not post to it."""
        origin = _origin(request)
        set_headers(request, cors.response_headers(app, origin))
        if not cors.may_post(app, origin):
            # Set before the app was known (Segment's API), as another app would allow the page.
            for name in (b"Access-Control-Allow-Origin", b"Access-Control-Expose-Headers"):
                request.responseHeaders.removeHeader(name)
            why = ("it takes events from no web page (access_control_allow_origin: [])" if not app.browsers
                   else "its access_control_allow_origin does not list them")
            raise ApiError(403, f"pages from {origin[:100]!r} may not post to app {app.app_id!r}; {why}")

    def _stored(self, stored: Stored, request, app_id: str, batches, write) -> bytes:
        """Count the committed events and answer 200, with the duplicates skipped when the
        request wrote to a table that skips them."""
        skipped = stored.duplicates_by_table or {}
        for table, rows in batches:
            duplicates = skipped.get(table.name, 0)
            self.metrics.child(self.metrics.events_inserted, app_id, table.name).inc(len(rows) - duplicates)
            if duplicates:
                self.metrics.child(self.metrics.events_duplicate, app_id, table.name).inc(duplicates)
        return write(request, stored)

    def _insert_failed(self, failure, request, app: App, raw: bytes, event_type_id: str | None,
                       segment: bool) -> bytes:
        """The JSON answer for rows the writer could not store."""
        error = failure.value
        if isinstance(error, RowsRefused):
            # PostgreSQL does not say which event of the request was at fault.
            answer = ApiError(409 if error.unique_violation else 400, error.message)
        elif isinstance(error, DatabaseUnavailable):
            answer = unavailable(f"{error}; retry later")
        else:
            log.failure("insert failed", failure=failure)
            answer = unavailable("the database could not store the events; retry later")
        self._refused(request, app, raw, event_type_id, answer, fault_known=False, segment=segment)
        return write_error(request, self._for_segment(answer) if segment else answer)

    def _refused(self, request, app: App | None, raw: bytes | None, event_type_id: str | None,
                 error: ApiError, fault_known: bool, segment: bool = False) -> None:
        """Count a refused request's events, and keep them when the refused events are kept and
        its body was read (`segment`: a body of Segment's API)."""
        events = request.events_received
        if events and app is not None:
            reason = _REJECTION_REASONS.get(error.status, str(error.status))
            self.metrics.child(self.metrics.events_rejected, app.app_id, reason).inc(events)
        if self.refused is not None and app is not None and raw is not None:
            self.refused.keep(request, app, raw, event_type_id, error, fault_known, segment)


def _native_answer(request, stored: Stored) -> bytes:
    """Our routes' answer: the rows inserted, and those skipped when a table skips duplicates."""
    return write_stored(request, stored.inserted, stored.duplicates)


def _origin(request) -> str | None:
    origin = request.getHeader(b"origin")
    return origin.decode("latin-1") if origin is not None else None
