"""One route table (attolytics/http/paths.py ROUTE_TABLE): Klein's rules are made from it, and the
dispatch that skips werkzeug (Routes.dispatch, chosen by is_plain) agrees with werkzeug for every
route and method: same handler, same values, and the same answer."""

import inspect
import json
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.web.http import unquote
from twisted.web.test.requesthelper import DummyChannel
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from attolytics.http.paths import OTHER, ROUTE_TABLE, route_of
from attolytics.http.routes import Routes, is_plain
from attolytics.outcomes import Stored
from support.configs import (COUNTRY, DECLARED_CONFIG, GAME_CONFIG, GAME_EVENTS, GAME_KEY, GAME_ORIGIN,
                             SECRET, SESSION)
from support.examples import examples
from support.memory import InMemoryService

pytestmark = pytest.mark.unit

METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]


def test_every_declared_route_has_its_handler_taking_its_values():
    for declared in ROUTE_TABLE:
        parameters = list(inspect.signature(getattr(Routes, declared.handler)).parameters)
        assert parameters == ["self", "request", *declared.variables], declared


def test_klein_has_exactly_the_declared_rules():
    rules = {(rule.rule, rule.endpoint, frozenset(rule.methods))
             for rule in Routes.app.url_map.iter_rules()}
    # werkzeug answers HEAD wherever GET is answered.
    assert rules == {(declared.rule, declared.handler,
                      frozenset(declared.methods) | ({"HEAD"} if "GET" in declared.methods else set()))
                     for declared in ROUTE_TABLE}


def klein_match(method: str, path: bytes):
    """What Klein does with a request path: (handler, values), or the werkzeug exception raised.
    The path as Klein sees it is the request's postpath (each segment unquoted) joined again."""
    path_info = b"/".join(map(unquote, path[1:].split(b"/")))
    if not path_info.startswith(b"/"):
        path_info = b"/" + path_info
    mapper = Routes.app.url_map.bind("localhost", "", path_info=path_info.decode("utf-8"),
                                     default_method=method)
    try:
        rule, values = mapper.match(return_rule=True)
    except (NotFound, MethodNotAllowed, RequestRedirect) as e:
        return type(e)
    return rule.endpoint, values


def check_agreement(method: str, uri: bytes) -> None:
    """The fast dispatch takes a request only to the handler and values werkzeug would give it,
    and takes every request by a plain path that werkzeug gives a declared handler and method.
    A plain path's label is that of the rule werkzeug matches (to werkzeug, an escaped path, one
    with an empty segment or one not starting with a slash may name another rule than its label:
    such a request is never dispatched fast)."""
    path = uri.split(b"?", 1)[0]
    try:
        path.decode("utf-8")  # the front answers a path that is not UTF-8 with a 400 first
        klein = klein_match(method, path)
    except UnicodeDecodeError:
        return
    route = route_of(uri)
    fast = is_plain(method.encode(), path, route)
    if fast:
        declared = route.declared
        assert klein == (declared.handler, dict(zip(declared.variables, route.values))), (method, uri)
    if not (path.startswith(b"/") and path.isascii() and b"%" not in path and b"//" not in path):
        return
    if isinstance(klein, tuple):
        [declared] = [d for d in ROUTE_TABLE if d.handler == klein[0]]
        assert route.label == declared.path, (method, uri)
        assert fast == (method in declared.methods), (method, uri)
    elif klein is MethodNotAllowed:
        assert route.declared is not None and method not in route.declared.methods, (method, uri)
    else:
        assert not fast, (method, uri)


# Values a path segment may hold as sent: plain, escaped, empty, dots, slashes, non-ASCII.
SEGMENTS = ["mygame", "game_events", "", ".", "..", "a%2Fb", "%41", "a b", "é", "%C3%A9", "%FF",
            "events", "apps", "healthz", "a%00"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("declared", ROUTE_TABLE, ids=lambda declared: declared.path)
def test_the_fast_dispatch_agrees_with_werkzeug_for_every_route_and_method(method, declared):
    for value in SEGMENTS:
        path = declared.path.replace("{app}", value).replace("{event_type}", value)
        for suffix in ["", "/", "?x=1", "//", "/x"]:
            for prefix in ["", "/", "x"]:
                check_agreement(method, (prefix + path + suffix).encode())


segment_text = st.text(st.sampled_from("ab_.-/%é2F41 "), max_size=6)


@settings(max_examples=examples(300))
@given(method=st.sampled_from(METHODS), declared=st.sampled_from(ROUTE_TABLE),
       values=st.lists(segment_text, min_size=2, max_size=2), quoted=st.booleans())
def test_the_fast_dispatch_agrees_with_werkzeug_on_any_segments(method, declared, values, quoted):
    path = declared.path
    for name, value in zip(declared.variables, values):
        path = path.replace("{" + name + "}", quote(value, safe="%") if quoted else value)
    check_agreement(method, path.encode())


def test_a_path_that_names_no_route_is_other():
    assert route_of(b"/nothing/here") == OTHER
    assert route_of(b"*") == OTHER


def test_a_long_path_is_routed_as_a_short_one():
    """Only short paths are remembered; a long one is matched each time, the same way."""
    app = "a" * 5000
    route = route_of(f"/apps/{app}/events/game_events?x=1".encode())
    assert (route.label, route.app_id, route.event_type_id) == (
        "/apps/{app}/events/{event_type}", app, "game_events")


# The same request by a plain path (the fast dispatch) and by an escaped one (Klein) is answered
# the same.

HEADERS = {"Origin": GAME_ORIGIN, "Content-Type": "application/json", **COUNTRY,
           "Access-Control-Request-Method": "POST"}
# A body each event route stores: the typed route's events name no table.
BODIES = {"events": json.dumps({"secret_key": GAME_KEY, "events": [SESSION]}).encode(),
          "typed_events": json.dumps({"secret_key": GAME_KEY, "events": [
              {name: value for name, value in SESSION.items() if name != "_t"}]}).encode()}


# The game app with Segment's API too, and a body and a write key for its batch route.
SEGMENT_DECLARED = DECLARED_CONFIG.replace("    tables: [sessions, purchases]\n",
                                           "    tables: [sessions, purchases]\n    segment: {schema: game}\n")
BODIES["segment_call"] = json.dumps({"writeKey": GAME_KEY, "batch": [
    {"type": "track", "event": "Opened", "userId": "ann", "messageId": "m1"}]}).encode()
VALUES = {"{app}": "game", "{event_type}": "sessions", "{call}": "batch", "{write_key}": GAME_KEY}


def escaped(path: str) -> str:
    """The same path with its first letter after the first slash escaped (Klein unescapes it)."""
    return path[:1] + f"%{ord(path[1]):02X}" + path[2:]


@pytest.mark.parametrize("declared, method", [(d, m) for d in ROUTE_TABLE for m in d.methods],
                         ids=lambda x: getattr(x, "path", x))
def test_the_fast_dispatch_answers_as_klein_does(declared, method):
    service = InMemoryService(SEGMENT_DECLARED)
    path = declared.path
    for variable, value in VALUES.items():
        path = path.replace(variable, value)
    dispatched = []
    dispatch = service.routes.dispatch
    service.routes.dispatch = lambda *args: dispatched.append(args) or dispatch(*args)
    body = BODIES[declared.handler] if method == "POST" else None
    fast = service.request(method, path, body, HEADERS)
    assert len(dispatched) == 1
    by_klein = service.request(method, escaped(path), body, HEADERS)
    assert len(dispatched) == 1
    assert (fast.status, comparable(fast.headers)) == (by_klein.status, comparable(by_klein.headers))
    if declared.path != "/metrics":  # its counters have moved on in between
        assert fast.body == by_klein.body
    if method == "POST":
        assert fast.status == 200
        assert len(service.writer.inserts) == 2


def comparable(headers: dict) -> dict:
    """Headers but for how the body is framed (Klein writes an answer chunked that twisted.web
    renders with a Content-Length) and the date."""
    return {name: value for name, value in headers.items()
            if name not in ("date", "content-length", "transfer-encoding")}


def test_the_openapi_document_describes_the_declared_routes_and_methods():
    paths = InMemoryService(DECLARED_CONFIG).request("GET", "/openapi.json").json()["paths"]
    for path, operations in paths.items():
        declared = route_of(path.encode()).declared
        assert declared is not None, path
        assert set(operations) == {method.lower() for method in declared.methods}, path
    assert {route_of(path.encode()).label for path in paths} == {d.path for d in ROUTE_TABLE}


def test_an_answer_to_a_client_gone_is_not_written():
    """The fast dispatch writes an answer that comes later only while the client is there."""
    service = InMemoryService(GAME_CONFIG)
    pending = Deferred()
    service.writer.insert = lambda batches, size=0: pending
    channel = DummyChannel()
    channel.site = channel.factory = service.site
    channel.callLater = service.clock.callLater
    request = service.site.requestFactory(channel, True)
    body = json.dumps({"secret_key": SECRET, "events": GAME_EVENTS}).encode()
    request.requestHeaders.addRawHeader(b"Content-Type", b"application/json")
    request.gotLength(len(body))
    request.handleContentChunk(body)
    request.requestReceived(b"POST", b"/apps/mygame/events/game_events", b"HTTP/1.1")
    assert not request.finished
    request.connectionLost(Failure(ConnectionDone()))
    pending.callback(Stored(2))
    assert request.client_gone and not request.finished
    assert channel.transport.written.getvalue() == b""
