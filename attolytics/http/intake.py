"""The event routes: every rule a POST must pass before any write, its rows handed to the writer,
and its JSON answer; and the browser's CORS preflight.

The service hands it the tables (name -> Table) and the writer once the database is ready; it
uses them only through their methods, and knows nothing of SQL.
"""

import math
from datetime import datetime, timezone

from twisted.internet.defer import Deferred

from attolytics.config import App, Config
from attolytics.http import cors
from attolytics.http.answers import (
    ApiError,
    OverLimit,
    set_headers,
    unavailable,
    write_error,
    write_json,
    write_stored,
)
from attolytics.http.auth import authenticated_events, bearer_token, check_key
from attolytics.http.body import check_content_type, decoded_body, parse_json
from attolytics.http.client_address import client_address, network_of
from attolytics.http.fast_body import FastBodies
from attolytics.http.rate_limits import RateLimits
from attolytics.http.refused import KEPT_STATUSES, NOT_JSON, Redactor, carries_the_key, refused_rows
from attolytics.logs import logger
from attolytics.outcomes import DatabaseUnavailable, EventRejected, RowsRefused, Stored, WriterBusy
from attolytics.request_values import CLIENT_IP, CLIENT_NETWORK, RECEIVED_AT

log = logger(__name__)

ALLOWED_METHODS = "POST, OPTIONS"

# The reason label of attolytics_events_rejected_total, by the status of the refusal.
_REJECTION_REASONS = {
    400: "invalid", 401: "unauthenticated", 403: "wrong_key", 404: "unknown_table",
    409: "conflict", 413: "too_large", 429: "rate_limited", 503: "unavailable",
}


# How often a fault of the fast path is logged, at most.
FAST_FAULT_LOG_SECONDS = 60.0


class Intake:
    """Checks POSTs of events and hands their rows to the writer; `serve()` starts it."""

    def __init__(self, config: Config, metrics, clock):
        self.metrics = metrics
        # Now, for the rate limits (the reactor; a test's Clock).
        self.clock = clock
        self.limits = RateLimits()
        self.configure(config)
        self.tables = None
        self.writer = None
        # The table of refused events and the writer that keeps them apart from the events
        # stored, so that a failure to keep them never holds up the others.
        self.refused_table = None
        self.refused_writer = None
        # Per app, the request values its tables take: header names, received_at, ...
        self._request_keys: dict[str, frozenset] = {}
        self._fast = None  # the fast path's decoders, for the tables in force
        self._fast_faults, self._fast_fault_logged_at = 0, None  # faults of it not yet logged

    def configure(self, config: Config) -> None:
        """Take requests with this configuration from the next one on."""
        self.config = config
        self.limits.configure(config.apps.values())

    def serve(self, tables, writer, refused_writer=None) -> None:
        """Start storing events: `tables` maps table name to Table, `writer` stores rows, and
        `refused_writer` the events of refused requests (with rejected_events configured)."""
        self.tables = tables
        self.writer = writer
        self._fast = FastBodies(tables)
        if self.config.rejected_events is not None:
            self.refused_table = tables[self.config.rejected_events]
            self.refused_writer = refused_writer
            self._redactor = Redactor(self.config.apps.values())
        # Only what an app's tables take from the request is worked out for its requests.
        self._request_keys = {
            app.app_id: frozenset().union(*(tables[t].request_keys for t in app.event_types.values()))
            for app in self.config.apps.values()
        }

    @property
    def ready(self) -> bool:
        """Whether events can be stored now: the tables are checked and a connection is up."""
        return self.tables is not None and self.writer.connected

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
        seen = _Seen(event_type_id)
        try:
            seen.app = app = self._app_for(request, app_id, event_type_id)
            check_content_type(request)
            seen.raw = request.content.getvalue()  # as sent, kept if it cannot be inflated
            seen.raw = raw = decoded_body(request, self.config.max_body_bytes)
            batches = self._fast_rows(request, app, raw, event_type_id)
            if batches is not None:
                seen.body = _UNPARSED
            else:
                seen.body = body = parse_json(raw)
                if isinstance(body, dict) and isinstance(body.get("events"), list):
                    request.events_received = len(body["events"])
                batches = self._rows(request, app, body, event_type_id)
            if not batches:
                return write_json(request, 200, {"inserted": 0})
            try:
                stored = self.writer.insert(batches, len(raw))
            except WriterBusy:
                raise unavailable("too many events are waiting to be written; retry later") from None
        except ApiError as e:
            self._count_rejected(app_id, request.events_received, e.status)
            self._keep(request, seen, e, fault_known=True)
            return write_error(request, e)
        stored.addCallbacks(
            self._stored, self._insert_failed,
            callbackArgs=(request, app_id, batches), errbackArgs=(request, app_id, seen),
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
        origin = _origin(request)
        set_headers(request, cors.response_headers(app, origin))
        if not cors.may_post(app, origin):
            raise ApiError(403, f"pages from {origin[:100]!r} may not post to app {app_id!r}; "
                                "its access_control_allow_origin does not list them")
        if event_type_id is not None and event_type_id not in app.event_types:
            raise ApiError(404, f"app {app_id!r} has no event type {event_type_id[:100]!r}")
        return app

    def _fast_rows(self, request, app: App, raw: bytes, event_type_id: str | None) -> list | None:
        """The request's rows by the fast path (http/fast_body.py), once its key is right; None
        when the precise path must decide."""
        if self._fast is None:
            return None
        needed = self._request_keys.get(app.app_id)
        values = self._request_values(request, needed) if needed else None
        try:
            fast = self._fast.decode(raw, app, event_type_id, values)
        except Exception:
            # A fault of the fast path (it only reads) must not cost a client its events.
            self._fast_path_failed(app)
            return None
        if fast is None:
            return None
        request.events_received = fast.events
        check_key(fast.secret_key, app, bearer_token(request))
        self._admit(request, app, fast.events)
        return fast.batches

    def _fast_path_failed(self, app: App) -> None:
        """Log the fault being handled, with its traceback, at most once a minute (saying how many
        bodies failed since), so that a fault on every request does not flood the log."""
        self._fast_faults += 1
        now, last = self.clock.seconds(), self._fast_fault_logged_at
        if last is not None and now - last < FAST_FAULT_LOG_SECONDS:
            return
        log.failure("the fast path failed on a body of app {app_id} ({faults} since the last such "
                    "message); the precise path answers them", app_id=app.app_id, faults=self._fast_faults)
        self._fast_faults, self._fast_fault_logged_at = 0, now

    def _rows(self, request, app: App, body, event_type_id: str | None) -> list:
        """The request's rows, [(table, rows)] in first-seen order, once its key is right and
        every event fits its table."""
        events = authenticated_events(body, app, bearer_token(request))
        if self.tables is None:
            raise unavailable("the database is not ready yet; retry later")
        self._admit(request, app, len(events))
        needed = self._request_keys.get(app.app_id)
        values = self._request_values(request, needed) if needed else None
        batches: dict[str, tuple] = {}
        try:
            for index, event in enumerate(events):
                type_id = event_type_id if event_type_id is not None else _routing_key(app, event, index)
                table = self.tables[app.event_types[type_id]]
                row = table.row(event, index, values, ignore="_t" if event_type_id is None else None)
                batches.setdefault(table.name, (table, []))[1].append(row)
        except EventRejected as e:
            raise ApiError(e.status, e.message, event=e.index, field=e.field) from None
        except RecursionError:
            raise ApiError(400, "an event is nested too deeply", event=index) from None
        return list(batches.values())

    def _admit(self, request, app: App, events: int) -> None:
        """413 past the events a request may carry (before any is checked); 429 when the app's
        rate limit has no room for them now, with Retry-After: the whole seconds until it has."""
        cap = self.config.max_events_per_request
        if events > cap:
            raise OverLimit(413, f"a request may carry at most {cap} events (max_events_per_request); "
                                f"this one carries {events}")
        buckets = self.limits.buckets(app.app_id)
        if buckets is None:
            return
        limit = buckets.limit
        if events > limit.burst:
            raise OverLimit(413, f"a request of {events} events can never fit the rate limit of app "
                                f"{app.app_id!r}, which takes at most {limit.burst} at once; "
                                "send fewer per request")
        by_client = limit.by == "client"
        key = client_address(request, self.config.trusted_proxies) if by_client else None
        wait = buckets.take(key, events, self.clock.seconds())
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            raise OverLimit(429, f"app {app.app_id!r} takes {limit.in_words()}; retry in {seconds} s",
                           headers={"Retry-After": str(seconds)})

    def _stored(self, stored: Stored, request, app_id: str, batches) -> bytes:
        """Count the committed events and answer 200, with the duplicates skipped when the
        request wrote to a table that skips them."""
        skipped = stored.duplicates_by_table or {}
        for table, rows in batches:
            duplicates = skipped.get(table.name, 0)
            self.metrics.child(self.metrics.events_inserted, app_id, table.name).inc(len(rows) - duplicates)
            if duplicates:
                self.metrics.child(self.metrics.events_duplicate, app_id, table.name).inc(duplicates)
        return write_stored(request, stored.inserted, stored.duplicates)

    def _insert_failed(self, failure, request, app_id: str, seen) -> bytes:
        """The JSON answer for rows the writer could not store."""
        error = failure.value
        if isinstance(error, RowsRefused):
            answer = ApiError(409 if error.unique_violation else 400, error.message)
            # PostgreSQL does not say which event of the request was at fault.
            self._keep(request, seen, answer, fault_known=False)
        elif isinstance(error, DatabaseUnavailable):
            answer = unavailable(f"{error}; retry later")
        else:
            log.failure("insert failed", failure=failure)
            answer = unavailable("the database could not store the events; retry later")
        self._count_rejected(app_id, request.events_received, answer.status)
        return write_error(request, answer)

    def _keep(self, request, seen, error: ApiError, fault_known: bool) -> None:
        """Keep the events of a refused request in the table of refused events, when there is one,
        the body was read, the request carried the app's key and no limit refused it; its answer
        does not wait."""
        table, app = self.refused_table, seen.app
        if (table is None or app is None or seen.raw is None or error.status not in KEPT_STATUSES
                or isinstance(error, OverLimit)):
            return
        if seen.body is _UNPARSED:  # the fast path took it; what it took, the precise path parses
            seen.body = parse_json(seen.raw)
        if not carries_the_key(request, app, seen.body):
            return
        try:
            values = self._request_values(request, table.request_keys)
            rows = refused_rows(table, values, app.app_id, seen.event_type_id, seen.body, seen.raw,
                                error, fault_known, self._redactor)
            kept = self.refused_writer.insert([(table, rows)], len(seen.raw))
        except (EventRejected, RecursionError, WriterBusy):
            self.metrics.child(self.metrics.rejected_dropped, app.app_id).inc(request.events_received or 1)
            return
        kept.addCallbacks(
            lambda _: self.metrics.child(self.metrics.events_kept_rejected, app.app_id).inc(len(rows)),
            lambda _: self.metrics.child(self.metrics.rejected_dropped, app.app_id).inc(len(rows)))

    def _count_rejected(self, app_id: str, events: int, status: int) -> None:
        if events and app_id in self.config.apps:
            reason = _REJECTION_REASONS.get(status, str(status))
            self.metrics.child(self.metrics.events_rejected, app_id, reason).inc(events)

    def _request_values(self, request, needed: frozenset) -> dict:
        """What the tables take from the request: its headers by lower-case name, the time it
        arrived, the client's address and network."""
        values = _header_values(request)
        if RECEIVED_AT in needed:
            values[RECEIVED_AT] = datetime.fromtimestamp(request.received_at, timezone.utc)
        if CLIENT_IP in needed or CLIENT_NETWORK in needed:
            address = client_address(request, self.config.trusted_proxies)
            values[CLIENT_IP] = address
            values[CLIENT_NETWORK] = network_of(address)
        return values


# A body the fast path decoded, not parsed into Python objects.
_UNPARSED = object()


class _Seen:
    """What is known of a POST when it is refused: its app, its body as read, and its JSON."""

    __slots__ = ("event_type_id", "app", "raw", "body")

    def __init__(self, event_type_id: str | None):
        self.event_type_id = event_type_id
        self.app = None
        self.raw = None
        self.body = NOT_JSON


def _routing_key(app: App, event, index: int) -> str:
    """The event type an event of the `_t` route names, once the app has it."""
    if not isinstance(event, dict):
        raise EventRejected(index, None, "an event must be a JSON object")
    type_id = event.get("_t")
    if type_id is None:
        raise EventRejected(index, "_t", "_t is missing; it names the table of the event")
    if not isinstance(type_id, str):
        raise EventRejected(index, "_t", "_t must be a string naming the table of the event")
    if type_id not in app.event_types:
        raise EventRejected(index, "_t", f"app {app.app_id!r} has no table {type_id[:100]!r}", status=404)
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
