"""What a protocol adapter makes of a request, for the admission and the rows: the app, the keys
it carries, and its events by table, in the C decoder's form, the precise one, or both."""

from typing import Any, Callable, NamedTuple

from attolytics.config import App
from attolytics.outcomes import EventRejected


class EventsByTable(NamedTuple):
    """A request's events in the precise form: [(table name, [(index, event)])] in first-seen
    order; and the first event whose table is unknown (None when every one is known), after
    which nothing is grouped."""

    groups: list[tuple[str, list[tuple[int, Any]]]]
    misrouted: EventRejected | None


class Submission:
    """A request's events as an adapter read them.

    `keys`: every key the request carries (in its body, as a token), as bytes; `count`: its
    events; `event_type`: the event type the route names, else None; `routing_key`: the member
    naming each event's table (and type), which is no column (None when the route names the
    table); `decoded`: [(Table, DecodedEvents)] when the C decoder read the
    body, else None. The precise form is made by `read()` when first asked for. `sent_field(table,
    index, column)` names the field of the request that filled a column (None: the column's name).
    """

    __slots__ = ("app", "keys", "count", "event_type", "routing_key", "decoded", "sent_field", "_read", "_events")

    def __init__(self, app: App, keys: list[bytes], count: int, event_type: str | None,
                 routing_key: str | None, decoded: list | None = None,
                 read: Callable[[], EventsByTable] | None = None, events: EventsByTable | None = None,
                 sent_field: Callable[[str, int, str | None], str | None] | None = None):
        self.app, self.keys, self.count = app, keys, count
        self.event_type, self.routing_key = event_type, routing_key
        self.decoded = decoded
        self.sent_field = sent_field
        self._read, self._events = read, events

    def events_by_table(self) -> EventsByTable:
        """The events in the precise form, read on first use."""
        if self._events is None:
            self._events = self._read()
        return self._events
