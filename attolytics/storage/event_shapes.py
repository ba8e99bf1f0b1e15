"""The fast form of a table's row builder: a msgspec Struct that decodes an event in C straight
into the values its columns take, and the few steps left to Python. What the fast form cannot
decide raises Undecided, and Table.rows, the precise form, decides with its answer and message.

Each column's field is the type its ColumnType gives for the decoder (decoded_type), where one
takes exactly the JSON values the column's converter accepts; every other column takes the value
as the precise parser would have made it (msgspec's Any, floats as Decimal) and runs the column's
own converter on it. The caller must keep bodies with a NUL escape away (msgspec refuses
unpaired surrogates) and count keys (duplicate keys collapse), see http/fast_body.py.
"""

import re
from operator import itemgetter, methodcaller
from typing import Any, NamedTuple, Union

import msgspec
from msgspec.structs import astuple

from attolytics.outcomes import Undecided
from attolytics.request_values import EVENT_TYPE
from attolytics.storage.column_types import Rejected
from attolytics.storage.row_default import DEFAULT

# msgspec cannot rename a field to a name with a quote, a backslash or a control character.
_RENAMEABLE = re.compile(r'[^"\\\x00-\x1f]*').fullmatch


class DecodedEvents(NamedTuple):
    """A table's events as the C decoder read them: a tuple of fields each, and how many keys
    they held (nested ones too) and left out."""

    values: list
    keys: int
    missing: int
    # Each event's type, as its `_t` named it, when a column takes it from there; else None.
    tags: list | None = None


class _Missing:
    """In a decoded event, a key the event left out."""

    def __repr__(self):
        return "MISSING"


MISSING = _Missing()
# In the values a request fills, the event type of a route that leaves it to each event's `_t`.
EACH_EVENTS_TYPE = object()
_count_missing = methodcaller("count", MISSING)


class EventShape:
    """How one table's events decode on the fast path: of `table`, a storage.table.Table (which
    makes its shape, so this module does not import it)."""

    def __init__(self, table):
        self.table = table
        fields, rename = [], {}
        self.missing_as = []  # (struct position, what a left-out key becomes)
        self.converted = []  # (struct position, the column's converter, whether NOT NULL)
        self.documents = []  # struct positions of values taken as they are (Any): nested keys
        self.request_slots = []  # (row position, request key, Column) of values from the request
        self.checks = []  # (itemgetter of a column's values, the check of a batch of them)
        body_columns = [c for c in table.ordered if c.request_key is None]
        partition_column = table.accepted[0] if table.accepted else None
        for position, column in enumerate(body_columns):
            field_type = column.type.decoded_type()
            if field_type is None or column.name == partition_column:
                field_type = Any
                self.converted.append((position, table.converter(column), column.not_null))
                self.documents.append(position)
            elif not column.not_null:
                field_type = Union[field_type, None]
            check = column.type.decoded_check()
            if check is not None and field_type is not Any:
                self.checks.append((itemgetter(position), check))
            name = f"f{position}"
            rename[name] = column.name
            if column.not_null and not column.has_default:
                fields.append((name, field_type))
            else:
                fields.append((name, field_type, MISSING))
                self.missing_as.append((position, DEFAULT if column.has_default else None))
        for position, column in enumerate(table.ordered):
            if column.request_key is not None:
                self.request_slots.append((position, column.request_key, column))
        self.width = len(body_columns)
        # Whether a column is filled with the event type, which each event may name itself.
        self.takes_event_type = any(key == EVENT_TYPE for _, key, _ in self.request_slots)
        self._fields, self._rename = fields, rename
        # Whether msgspec can decode these events: else the precise path takes all of them.
        self.decodable = all(map(_RENAMEABLE, rename.values()))
        optional = [position for position, _ in self.missing_as]
        # What may be MISSING in a row: one value, or a tuple of them.
        self._optional = itemgetter(*optional) if optional else None
        self._single_optional = len(optional) == 1
        self._structs = {}

    def struct(self, tag: str | None = None) -> type:
        """The Struct of an event of this table; with `tag`, one whose `_t` names that event type."""
        found = self._structs.get(tag)
        if found is None:
            options = {} if tag is None else {"tag_field": "_t", "tag": tag}
            found = self._structs[tag] = msgspec.defstruct(
                "Event", self._fields, rename=self._rename, forbid_unknown_fields=True, kw_only=True,
                **options)
        return found

    def decoded(self, events: list) -> DecodedEvents:
        """Decoded events as tuples of their fields, with the keys they held and left out."""
        values = list(map(astuple, events))
        missing = self._missing(values) if self._optional else 0
        keys = len(values) * self.width - missing
        if self.documents:
            keys += sum(_keys_in(row[p]) for row in values for p in self.documents)
        tags = [type(event).__struct_config__.tag for event in events] if self.takes_event_type else None
        return DecodedEvents(values, keys, missing, tags)

    def rows(self, events: DecodedEvents, request: dict | None) -> list:
        """The rows of decoded events, with the request's values."""
        values = events.values
        for value_of, check in self.checks:
            if not check([value for value in map(value_of, values) if value is not None and value is not MISSING]):
                raise Undecided
        if events.missing or self.converted or self.request_slots:
            filled = self._request_values(request) if self.request_slots else ()
            if any(value is EACH_EVENTS_TYPE for _, value in filled):
                return [self._finish(row, filled, tag) for row, tag in zip(values, events.tags)]
            return [self._finish(row, filled) for row in values]
        return values

    def _missing(self, rows: list) -> int:
        """How many keys the events left out, looking only where that may be."""
        optional = list(map(self._optional, rows))
        return optional.count(MISSING) if self._single_optional else sum(map(_count_missing, optional))

    def _finish(self, row: tuple, filled, tag: str | None = None) -> tuple:
        """Left-out keys as their column takes them, converted values, the request's values (and
        `tag`, the event's own type, where the route leaves it to the event)."""
        cells = list(row)
        for position, replacement in self.missing_as:
            if cells[position] is MISSING:
                cells[position] = replacement
        for position, convert, not_null in self.converted:
            value = cells[position]
            if value is None:
                if not_null:  # Any lets null through
                    raise Undecided
            elif value is not DEFAULT:
                try:
                    cells[position] = convert(value)
                except Rejected:
                    raise Undecided from None
        for position, value in filled:
            cells.insert(position, tag if value is EACH_EVENTS_TYPE else value)
        return tuple(cells)

    def _request_values(self, request: dict | None) -> list:
        """(row position, value) of the columns the request fills, as Table.row fills them."""
        filled = []
        for position, key, column in self.request_slots:
            value = request.get(key, MISSING) if request else MISSING
            if value is MISSING and key == EVENT_TYPE:
                value = EACH_EVENTS_TYPE  # the `_t` route: each event's tag
            elif value is None or value is MISSING:
                if value is MISSING and column.has_default:
                    value = DEFAULT
                elif column.not_null:
                    raise Undecided
                else:
                    value = None
            elif column.source is None:  # a header: checked as any string
                try:
                    value = self.table.converter(column)(value)
                except Rejected:
                    raise Undecided from None
            filled.append((position, value))
        return filled


def _keys_in(value) -> int:
    """The keys of the objects within a JSON value."""
    if type(value) is dict:
        return len(value) + sum(_keys_in(item) for item in value.values())
    if type(value) is list:
        return sum(_keys_in(item) for item in value)
    return 0

