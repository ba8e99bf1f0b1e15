"""The routes of the service, declared once (ROUTE_TABLE): each path, the methods it answers, and
the method of Routes (http/routes.py) that answers them. Klein's URL map is made from it, and so is
route_of, which tells the route a request's path names once per request: for the access log, the
metrics, the CORS headers of an answer given before the request is routed, and the dispatch that
skips werkzeug (Routes.dispatch)."""

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from operator import itemgetter
from typing import NamedTuple
from urllib.parse import unquote_to_bytes


@dataclass(frozen=True)
class Declared:
    """One route: its path, with `{name}` for each segment that is a value (the path is also the
    route's label in logs and metrics, so that labels stay few); the methods it answers; and the
    name of the Routes method that answers it, which takes the request and then the values."""

    path: str
    methods: tuple[str, ...]
    handler: str
    # Whether a request may carry a key in its path or query (a write key, as SDKs send it): the
    # access log then shows the route's label, not the path.
    secret: bool = False
    # The names of the path's values, in order; the methods as a request names them.
    variables: tuple[str, ...] = field(init=False)
    method_names: frozenset[bytes] = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "variables", tuple(re.findall(r"\{(\w+)\}", self.path)))
        object.__setattr__(self, "method_names", frozenset(m.encode() for m in self.methods))

    @property
    def rule(self) -> str:
        """The path as a werkzeug rule, for Klein: each `{name}` a `<name>`."""
        return re.sub(r"\{(\w+)\}", r"<\1>", self.path)


ROUTE_TABLE = (
    Declared("/apps/{app}/events/{event_type}", ("POST", "OPTIONS"), "typed_events"),
    Declared("/apps/{app}/events", ("POST", "OPTIONS"), "events"),
    Declared("/v1/{call}", ("POST", "OPTIONS"), "segment_call"),
    Declared("/v1/projects/{write_key}/settings", ("GET",), "segment_settings", secret=True),
    # RudderStack's SDKs ask with ?writeKey=...; its JavaScript SDK appends /sourceConfig/ to its configUrl.
    Declared("/sourceConfig", ("GET", "OPTIONS"), "rudder_source_config", secret=True),
    Declared("/sourceConfig/", ("GET", "OPTIONS"), "rudder_source_config_slashed", secret=True),
    Declared("/healthz", ("GET",), "healthz"),
    Declared("/readyz", ("GET",), "readyz"),
    Declared("/metrics", ("GET",), "metrics_page"),
    Declared("/attolytics.js", ("GET",), "browser_client"),
    Declared("/openapi.json", ("GET",), "openapi_document"),
)


class Route(NamedTuple):
    """A request's route: its label, and on a declared route the declaration and the values its
    path gives (each segment unquoted and read as UTF-8)."""

    label: str
    values: tuple[str, ...] = ()
    declared: Declared | None = None

    def value(self, name: str) -> str | None:
        """The value of the path's `{name}` segment; None when the route has none."""
        if self.declared is None or name not in self.declared.variables:
            return None
        return self.values[self.declared.variables.index(name)]

    @property
    def app_id(self) -> str | None:
        """The app an event route names."""
        return self.value("app")

    @property
    def event_type_id(self) -> str | None:
        """The event type the typed event route names."""
        return self.value("event_type")

    @property
    def secret(self) -> bool:
        """Whether the path or query may hold a key, which the access log leaves out (it logs the label)."""
        return self.declared is not None and self.declared.secret


OTHER = Route("other")


def _picker(positions: list[int]) -> Callable[[list], tuple]:
    """A function that gives the items of a list at `positions`, as a tuple."""
    if len(positions) == 1:
        return lambda items, at=positions[0]: (items[at],)
    return itemgetter(*positions)


def _shapes(table) -> dict[int, list[tuple[Declared, Callable, tuple, Callable]]]:
    """The routes of `table` that have values, by their number of segments: each with a picker of
    its fixed segments, what they must be, and a picker of its values."""
    shapes: dict[int, list[tuple[Declared, Callable, tuple, Callable]]] = {}
    for declared in table:
        parts = declared.path.split("/")
        fixed = [i for i, part in enumerate(parts) if not part.startswith("{")]
        if declared.variables:
            shapes.setdefault(len(parts), []).append((
                declared,
                _picker(fixed),
                tuple(parts[i].encode() for i in fixed),
                _picker([i for i, part in enumerate(parts) if part.startswith("{")]),
            ))
    return shapes


# Derived once from ROUTE_TABLE: the routes without values by their whole path; the others by shape.
_WHOLE = {declared.path.encode(): Route(declared.path, (), declared)
          for declared in ROUTE_TABLE if not declared.variables}
_SHAPES = _shapes(ROUTE_TABLE)


def route_of(path: bytes) -> Route:
    """The route of a request path (a query string is ignored)."""
    path = path.split(b"?", 1)[0]
    return _remembered(path) if len(path) <= _REMEMBERED_LENGTH else _match(path)


def _match(path: bytes) -> Route:
    """The route of a path without its query."""
    whole = _WHOLE.get(path)
    if whole is not None:
        return whole
    parts = path.split(b"/")
    for declared, fixed, expected, values in _SHAPES.get(len(parts), ()):
        if fixed(parts) == expected:
            return Route(declared.path, tuple(map(_segment, values(parts))), declared)
    return OTHER


# Remembered: a service sees the same few paths again and again, and a hit costs a dict lookup.
# Only short paths, so that what is kept stays small (a few MiB) whatever clients send.
_REMEMBERED_LENGTH = 256
_remembered = lru_cache(maxsize=4096)(_match)


def _segment(raw: bytes) -> str:
    """A segment of a path as a value: unquoted, read as UTF-8."""
    return unquote_to_bytes(raw).decode("utf-8", errors="replace")
