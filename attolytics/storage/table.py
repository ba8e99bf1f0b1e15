"""A destination table: which keys an event may carry, and the row each event makes."""

from dataclasses import dataclass
from typing import Any, Mapping

from attolytics.outcomes import EventRejected
from attolytics.request_values import APP_ID, CLIENT_IP, CLIENT_NETWORK, EVENT_TYPE, RECEIVED_AT
from attolytics.storage.column_types import ColumnType, Rejected, describe
from attolytics.storage.event_shapes import DecodedEvents, EventShape
from attolytics.storage.partitions import AcceptedRange
from attolytics.storage.row_default import DEFAULT


_MISSING = object()

_SOURCE_NAMES = {RECEIVED_AT: "the time the request arrived", CLIENT_IP: "the client's address",
                 CLIENT_NETWORK: "the client's network", APP_ID: "the app's id", EVENT_TYPE: "the event type"}
# The request value each other source fills a column with.
_SOURCE_KEYS = {"received_at": RECEIVED_AT, "app_id": APP_ID, "event_type": EVENT_TYPE}


@dataclass(frozen=True)
class Column:
    """One column Attolytics fills: from the event body, a request header, or the request itself."""

    name: str
    sql_type: str  # as format_type() spells it, for messages
    type: ColumnType  # what the column accepts from JSON, and the cast from text in INSERTs
    not_null: bool
    has_default: bool
    # Filled from this HTTP request header (compared case-insensitively) instead of the body.
    header: str | None = None
    # Filled by the service: "received_at", "client_ip", "app_id" or "event_type"; anonymize keeps
    # a client's network.
    source: str | None = None
    anonymize: bool = False

    @property
    def request_key(self) -> str | None:
        """The key of the request values that fills this column; None when the event does."""
        if self.header is not None:
            return self.header.lower()
        if self.source == "client_ip":
            return CLIENT_NETWORK if self.anonymize else CLIENT_IP
        return _SOURCE_KEYS.get(self.source)


class Table:
    """Turns events into rows for one table.

    `key` names the columns that identify an event, when the table skips duplicates: an event
    whose key is stored already is not stored again. A table partitioned by time is `accepted`:
    (column, the AcceptedRange of the moments it may hold).
    """

    def __init__(self, name: str, columns: list[Column], fixed: dict[str, str] | None = None,
                 key: tuple[str, ...] = (), accepted: tuple[str, AcceptedRange] | None = None):
        self.name = name
        self.columns = {column.name: column for column in columns}
        # Columns a client may not name, each with the reason: filled by PostgreSQL, or not declared.
        self.fixed = dict(fixed or {})
        self.ordered = list(columns)
        self._body_columns = frozenset(c.name for c in columns if c.request_key is None)
        # The request values (header names, received_at, ...) this table's rows need.
        self.request_keys = frozenset(c.request_key for c in columns if c.request_key is not None)
        self.accepted = accepted
        # Per column, what row() needs, unpacked once: the hot loop reads no attributes.
        self._plan = [(c.name if c.request_key is None else None, c.request_key, self.converter(c),
                       c.has_default, c.not_null, c) for c in columns]
        # Positions of the columns an event may leave to their DEFAULT, and of the key.
        self.defaultable = [i for i, c in enumerate(columns) if c.has_default]
        self.key = key
        self.key_positions = tuple(self.ordered.index(self.columns[name]) for name in key)
        # The INSERT statements made for this table's rows, kept by storage.inserts.
        self.sql_cache: dict = {}
        self._shape = None

    @property
    def _fast(self) -> EventShape:
        """The fast form of this row builder, made on first use."""
        if self._shape is None:
            self._shape = EventShape(self)
        return self._shape

    @property
    def decodable(self) -> bool:
        """Whether the C decoder can read this table's events (it cannot name every column)."""
        return self._fast.decodable

    def event_struct(self, tag: str | None = None) -> type:
        """The msgspec Struct the C decoder reads an event of this table as; with `tag`, one whose
        `_t` names that event type."""
        return self._fast.struct(tag)

    def decoded(self, events: list) -> DecodedEvents:
        """Events the C decoder read as event_struct(): their fields, and the keys they held."""
        return self._fast.decoded(events)

    def decoded_rows(self, events: DecodedEvents, request: Mapping[str, Any] | None) -> list[tuple]:
        """The rows of decoded events, as rows() would make them; raises Undecided where only
        rows() can tell."""
        return self._fast.rows(events, request)

    def rows(self, events: list[tuple[int, Any]], request: Mapping[str, Any] | None = None,
             ignore: str | None = None) -> list[tuple]:
        """The rows of (index, event) pairs, each checked by row(); raises EventRejected for the
        first event at fault."""
        rows = []
        for index, event in events:
            try:
                rows.append(self.row(event, index, request, ignore))
            except RecursionError:
                raise EventRejected(index, None, "an event is nested too deeply") from None
        return rows

    def row(self, event: Any, index: int, request: Mapping[str, Any] | None = None,
            ignore: str | None = None) -> tuple:
        """Check event number `index` and return its row of parameters, or raise EventRejected.

        `request` holds the values this table takes from the request (request_keys): header
        values by lower-case name, and what the service fills; the key `ignore` (the `_t` of the
        multi-table route) is not a column, and there fills a column with the event type.
        """
        if type(event) is not dict:
            raise EventRejected(index, None, f"an event must be a JSON object, got {describe(event)}")
        if not self._body_columns.issuperset(event):
            for key in event:
                if key not in self._body_columns and key != ignore:
                    raise EventRejected(index, key, self._refusal(key))
        values = []
        append = values.append
        for name, request_key, convert, has_default, not_null, column in self._plan:
            if name is not None:
                value = event.get(name, _MISSING)
            else:
                value = request.get(request_key, _MISSING) if request else _MISSING
                if value is _MISSING and request_key == EVENT_TYPE and ignore is not None:
                    value = event.get(ignore, _MISSING)  # the event names its own type (`_t`)
            if value is None or value is _MISSING:
                if value is _MISSING and has_default:
                    append(DEFAULT)
                elif not_null:
                    raise EventRejected(index, column.name, self._missing(column, value is None))
                else:
                    append(None)
                continue
            if convert is None:  # filled by the service, which made it right
                append(value)
                continue
            try:
                append(convert(value))
            except Rejected as e:
                source = f" (from the {column.header} header)" if column.header else ""
                raise EventRejected(index, column.name, f"{e}{source}") from None
        return tuple(values)

    @property
    def partition_position(self) -> int | None:
        """Where a partitioned table's rows hold the moment that picks their partition."""
        if self.accepted is None:
            return None
        return self.ordered.index(self.columns[self.accepted[0]])

    def converter(self, column: Column):
        """What turns the event's value into the column's; None for a column the service fills."""
        if column.source is not None:
            return None
        if self.accepted is None or column.name != self.accepted[0]:
            return column.type.convert
        convert, refusal = column.type.convert, self.accepted[1].refusal

        def in_range(value):
            moment = convert(value)
            problem = refusal(moment)
            if problem is not None:
                raise Rejected(problem)
            return moment

        return in_range

    def _refusal(self, key: str) -> str:
        if key in self.fixed:
            return self.fixed[key]
        column = self.columns.get(key)
        if column is not None and column.header is not None:
            return f"column {key!r} is filled from the {column.header} request header, not the event"
        if column is not None and column.source is not None:
            return f"column {key!r} is filled by the service ({column.source}), not the event"
        return f"table {self.name!r} has no column {key!r}"

    @staticmethod
    def _missing(column: Column, present: bool) -> str:
        if column.header is not None:
            return f"is required and filled from the {column.header} request header, which is missing"
        if column.source is not None:
            return f"is required and filled with {_SOURCE_NAMES[column.request_key]}, which is unknown"
        return f"is required ({column.sql_type} NOT NULL), but {'null' if present else 'missing'}"
