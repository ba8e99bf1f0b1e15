"""The Klein routes of the service: the two event routes, health and readiness, the metrics, the
browser client and the OpenAPI document; and every error answered in JSON.

The routes are declared once, in paths.ROUTE_TABLE: Klein's rules are made from it, and a request
whose plain path names a declared route and method skips werkzeug (Routes.dispatch) for the same
method Klein would call with the same values (tests/test_route_table.py holds them to it)."""

import json
from typing import Callable
from urllib.parse import unquote_to_bytes

from klein import Klein
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from attolytics.config import Config
from attolytics.http import cors, openapi
from attolytics.http.answers import ApiError, unavailable, write_error, write_json
from attolytics.http.client_address import scheme_of
from attolytics.http.browser import BrowserClient
from attolytics.http.intake import ALLOWED_METHODS, Intake
from attolytics.http.paths import OTHER, ROUTE_TABLE, Route
from attolytics.http.sdk_settings import analytics_js_settings, rudder_source_config
from attolytics.http.segment_body import CALLS, write_key
from attolytics.logs import logger
from attolytics.metrics import CONTENT_TYPE

log = logger(__name__)


def _with_declared_routes(cls):
    """Give the class's Klein app a rule for each route of ROUTE_TABLE, answered by the class's
    method that the route names."""
    for declared in ROUTE_TABLE:
        cls.app.route(declared.rule, methods=list(declared.methods))(getattr(cls, declared.handler))
    return cls


@_with_declared_routes
class Routes:
    """The Klein application; `serve()` gives it the tables and the writer once the database is
    up, `configure()` a configuration reloaded."""

    app = Klein()

    def __init__(self, config: Config, metrics, event_ids: dict | None, clock,
                 database_problem: Callable[[], str | None] = lambda: None):
        """`clock`: now, for the rate limits and the C decoder's fault log (the reactor)."""
        self.metrics = metrics
        # Why the database cannot serve now ("cannot reach PostgreSQL: ..."), or None.
        self.database_problem = database_problem
        self.intake = Intake(config, metrics, clock)
        self._openapi = None
        self.configure(config, event_ids)

    def configure(self, config: Config, event_ids: dict | None = None) -> None:
        """Serve with this configuration from the next request on; `event_ids` maps app -> event
        type -> the uuid column the browser client fills (BrowserClient)."""
        self.config = config
        self.intake.configure(config)
        self._browser_client = BrowserClient(config, event_ids)

    def serve(self, tables, writer, refused_writer=None) -> None:
        """Start serving: `tables` maps table name to Table, `writer` stores rows, and
        `refused_writer` the events of refused requests."""
        self.intake.serve(tables, writer, refused_writer)
        self._openapi = json.dumps(openapi.document(self.config, tables)).encode()

    @property
    def ready(self) -> bool:
        """Whether events can be stored now."""
        return self.intake.ready

    def resource(self):
        """The twisted.web resource that serves these routes."""
        return _Front(self.app.resource(), self)

    def early_headers(self, route: Route, origin: bytes | None) -> dict[str, str]:
        """CORS headers for an answer given before the request is routed (an early 413)."""
        origin_text = origin.decode("latin-1") if origin else None
        if route.declared is not None and route.declared.handler == "segment_call":
            return cors.any_app_headers(self.intake.segment.apps(), origin_text)
        app = self.config.apps.get(route.app_id) if route.app_id is not None else None
        if app is None:
            return {}
        return cors.response_headers(app, origin.decode("latin-1") if origin else None)

    # The handlers of ROUTE_TABLE's routes, each given the request and the path's values. One
    # rule per path, POST and OPTIONS together: werkzeug's matcher costs grow with rules.

    def typed_events(self, request, app, event_type):
        """The typed route: every event goes to the table of the event type in the URL."""
        if request.method == b"OPTIONS":
            return self.intake.preflight(request, app)
        return self.intake.post(request, app, event_type)

    def events(self, request, app):
        """The `_t` route: each event names its event type (its table) in `_t`."""
        if request.method == b"OPTIONS":
            return self.intake.preflight(request, app)
        return self.intake.post(request, app, None)

    def segment_call(self, request, call):
        """Segment's tracking API: a batch, or one call (track, identify... and their short forms)."""
        if call not in CALLS:
            return write_json(request, 404, {"error": "no such route"})
        if request.method == b"OPTIONS":
            return self.intake.segment_preflight(request)
        return self.intake.post_segment(request, call)

    def segment_settings(self, request, write_key):
        """analytics.js's settings (its cdnURL points here): send every call to this service."""
        key = write_key.encode("utf-8", errors="surrogateescape")
        app = self.intake.segment.app_for_key(key)
        if app is None:
            return write_json(request, 404, {"error": "unknown write key"})
        origin = request.getHeader(b"origin")
        set_cors = cors.response_headers(app, origin.decode("latin-1") if origin else None)
        host = (request.getHeader(b"host") or b"").decode("latin-1")
        protocol = scheme_of(request, self.config.trusted_proxies)
        return write_json(request, 200, analytics_js_settings(app, write_key, f"{host}/v1", protocol), set_cors)

    def rudder_source_config(self, request):
        """RudderStack's source configuration, for the write key of the request's Basic auth."""
        origin = request.getHeader(b"origin")
        origin = origin.decode("latin-1") if origin else None
        if request.method == b"OPTIONS":
            return self.intake.segment_preflight(request, b"GET, OPTIONS")
        headers = cors.any_app_headers(self.intake.segment.apps(), origin)
        try:
            key = write_key(request, {})
        except ApiError as e:
            return write_json(request, e.status, e.body, headers)
        app = self.intake.segment.app_for_key(key)
        if app is None:
            return write_json(request, 401, {"error": "unknown write key"}, headers)
        return write_json(request, 200, rudder_source_config(app, key.decode("utf-8", errors="replace")),
                          cors.response_headers(app, origin))

    def rudder_source_config_slashed(self, request):
        """/sourceConfig/, as RudderStack's JavaScript SDK names it."""
        return self.rudder_source_config(request)

    def healthz(self, request):
        """200 while the process runs."""
        return write_json(request, 200, {"status": "ok"})

    def readyz(self, request):
        """200 when the tables are checked and a database connection is up, else 503."""
        if self.intake.tables is None:
            error = self.database_problem() or "the tables are not checked yet"
            return write_json(request, 503, {"ready": False, "error": error})
        if not self.ready:
            error = self.database_problem() or "no connection to the database"
            return write_json(request, 503, {"ready": False, "error": error})
        return write_json(request, 200, {"ready": True})

    def metrics_page(self, request):
        """The Prometheus metrics; 404 when an admin port serves them (admin_listen)."""
        if self.config.admin_listen is not None:
            return write_json(request, 404, {"error": "no such route; the metrics are served on the admin port"})
        return self.metrics_text(request)

    def metrics_text(self, request):
        """The Prometheus metrics, wherever they are served."""
        request.setHeader(b"Content-Type", CONTENT_TYPE)
        return self.metrics.render()

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

    def openapi_document(self, request):
        """The OpenAPI description of the routes, apps, event types and columns (never the keys)."""
        if self._openapi is None:
            return write_error(request, unavailable("the tables are not checked yet; retry later"))
        request.setHeader(b"Content-Type", b"application/json")
        return self._openapi

    # werkzeug would redirect a path with an empty segment (//, or %2F in an id) to the path
    # without it; a client of an API follows no redirect, so that path names no route either.
    @app.handle_errors(NotFound, RequestRedirect)
    def not_found(self, request, failure):
        return write_json(request, 404, {"error": "no such route"})

    @app.handle_errors(MethodNotAllowed)
    def method_not_allowed(self, request, failure):
        allowed = ", ".join(sorted(failure.value.valid_methods or [])) or ALLOWED_METHODS
        return write_json(
            request, 405, {"error": f"method not allowed; use {allowed}"}, {"Allow": allowed}
        )

    @app.handle_errors(Exception)
    def unexpected(self, request, failure):
        log.failure("unexpected error answering {uri}", failure=failure, uri=request.uri)
        return write_error(request, unavailable("internal error; retry later"))

    def dispatch(self, request, route: Route):
        """Answer a request whose plain path names a declared route and method, as Klein would:
        the same handler, given the same values, and every error answered the same way; only the
        routing (werkzeug's) and Klein's Deferreds are skipped."""
        try:
            answer = getattr(self, route.declared.handler)(request, *route.values)
        except Exception:
            return self.unexpected(request, Failure())
        if not isinstance(answer, Deferred):
            return answer
        answer.addCallbacks(_finish, self._failed, callbackArgs=(request,), errbackArgs=(request,))
        return NOT_DONE_YET

    def _failed(self, failure, request) -> None:
        if request.finished or request.client_gone:
            if not failure.check(CancelledError):
                log.failure("unexpected error answering {uri}", failure=failure, uri=request.uri)
            return
        _finish(self.unexpected(request, failure), request)


def _finish(body: bytes, request) -> None:
    """Write a whole answer, unless the client is gone."""
    if not (request.finished or request.client_gone):
        request.write(body)
        request.finish()


class _Front(Resource):
    """In front of the Klein resource: a URL or Host that is not UTF-8 gets a JSON 400 (Klein
    would answer in plain text), and a request by a plain path to a declared route and method
    goes straight to its handler (Routes.dispatch)."""

    isLeaf = True

    def __init__(self, inner, routes: Routes):
        super().__init__()
        self.inner = inner
        self.routes = routes

    def render(self, request):
        try:
            unquote_to_bytes(request.path).decode("utf-8")
            (request.getHeader(b"host") or b"").decode("utf-8")
        except UnicodeDecodeError:
            return write_json(request, 400, {"error": "the URL is not valid UTF-8"})
        route = getattr(request, "route", OTHER)
        if is_plain(request.method, request.path, route):
            return self.routes.dispatch(request, route)
        return self.inner.render(request)


def is_plain(method: bytes, path: bytes, route: Route) -> bool:
    """Whether a request goes straight to its handler: its route and method are declared, and the
    path's values are its segments as they are (ASCII, nothing escaped, none empty), so that Klein
    would call the same handler with the same values."""
    declared = route.declared
    return (declared is not None and method in declared.method_names and path.isascii()
            and b"%" not in path and all(route.values))
