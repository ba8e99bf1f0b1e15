"""The Klein routes of the service: the two event routes, health and readiness, the metrics, the
browser client and the OpenAPI document; and every error answered in JSON."""

import json
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
from attolytics.http.answers import unavailable, write_error, write_json
from attolytics.http.browser import BrowserClient
from attolytics.http.intake import ALLOWED_METHODS, Intake
from attolytics.http.paths import OTHER, Route
from attolytics.logs import logger
from attolytics.metrics import CONTENT_TYPE

log = logger(__name__)


class Routes:
    """The Klein application; `serve()` gives it the tables and the writer once the database is
    up, `configure()` a configuration reloaded."""

    app = Klein()

    def __init__(self, config: Config, metrics, event_ids: dict | None = None, clock=None):
        self.metrics = metrics
        if clock is None:
            from twisted.internet import reactor as clock
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
        app = self.config.apps.get(route.app_id) if route.app_id is not None else None
        if app is None:
            return {}
        return cors.response_headers(app, origin.decode("latin-1") if origin else None)

    # One rule per path, POST and OPTIONS together: werkzeug's matcher costs grow with rules.
    @app.route("/apps/<app_id>/events/<event_type_id>", methods=["POST", "OPTIONS"])
    def typed_events(self, request, app_id, event_type_id):
        """The typed route: every event goes to the table of the event type in the URL."""
        if request.method == b"OPTIONS":
            return self.intake.preflight(request, app_id)
        return self.intake.post(request, app_id, event_type_id)

    @app.route("/apps/<app_id>/events", methods=["POST", "OPTIONS"])
    def events(self, request, app_id):
        """The `_t` route: each event names its event type (its table) in `_t`."""
        if request.method == b"OPTIONS":
            return self.intake.preflight(request, app_id)
        return self.intake.post(request, app_id, None)

    @app.route("/healthz", methods=["GET"])
    def healthz(self, request):
        """200 while the process runs."""
        return write_json(request, 200, {"status": "ok"})

    @app.route("/readyz", methods=["GET"])
    def readyz(self, request):
        """200 when the tables are checked and a database connection is up, else 503."""
        if self.intake.tables is None:
            return write_json(request, 503, {"ready": False, "error": "the tables are not checked yet"})
        if not self.ready:
            return write_json(request, 503, {"ready": False, "error": "no connection to the database"})
        return write_json(request, 200, {"ready": True})

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

    def post(self, request, route: Route):
        """A POST of events, straight to the intake: the routing Klein would do is already done
        (request.route), and its Deferreds are not needed."""
        try:
            answer = self.intake.post(request, route.app_id, route.event_type_id)
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
    would answer in plain text), and a POST to an event route by a plain path goes straight to
    the intake."""

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
        if request.method == b"POST" and route.app_id and _plain(request.path, route):
            return self.routes.post(request, route)
        return self.inner.render(request)


def _plain(path: bytes, route: Route) -> bool:
    """Whether the route's ids are the path's segments as they are (ASCII, nothing escaped, none
    empty), so that Klein would route the request to the same endpoint with the same ids."""
    return (route.event_type_id is None or bool(route.event_type_id)) and path.isascii() and b"%" not in path
