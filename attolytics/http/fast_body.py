r"""The fast path of a POST: a whole body decoded in C (msgspec) straight into its rows, for the
bodies it can decide; for any other, None, and the precise path (body.parse_json, auth,
Table.row) answers as before, with its messages.

What the fast path accepts is exactly what the precise path accepts, with the same rows:
- a body with the escape \u0000 goes to the precise path (NUL, which text columns refuse);
  msgspec refuses an unpaired surrogate, and decodes every other escape as the precise parser;
- every key ends with a quote and a colon, whitespace between or not, so counting those places
  gives the keys of the body's text or more (an escaped quote, or a string value, followed by
  a colon adds one); the keys counted in the decoded body are never more than those of the
  text, and fewer when a key repeats (msgspec keeps the last of two equal keys, which the
  precise parser refuses); so the two counts are equal only when neither happened;
- each table's columns decode as its EventShape says (storage/event_shapes.py), and whatever
  msgspec refuses goes to the precise path for the answer.
"""

import re
from decimal import Decimal
from typing import Union

import msgspec

from attolytics.outcomes import Undecided

# Where a key may end: at a quote, with whitespace before the colon or not. Every key ends so;
# an escaped quote or a string value followed by a colon counts too, which only sends its body to
# the precise path.
_KEY_END = re.compile(rb'"[ \t\r\n]*:')
# NUL, written the one way JSON can write it (after an escaped backslash, text that only looks
# like it, which sends the body to the precise path all the same).
_NUL_ESCAPE = b"\\u0000"


class _Missing:
    """A body without secret_key."""


_NO_KEY = _Missing()


def _keys_at_most(raw: bytes) -> int:
    """The keys of a body, or more, never fewer: the places a key may end."""
    ends = raw.count(b'":')
    if raw.count(b":") != ends:  # a colon in a string, or after whitespace
        ends = len(_KEY_END.findall(raw))
    return ends


class FastBody:
    """What the fast path made of a body: its key, its rows per table, its event count."""

    __slots__ = ("secret_key", "batches", "events")

    def __init__(self, secret_key, batches: list, events: int):
        self.secret_key = None if secret_key is _NO_KEY else secret_key
        self.batches = batches  # [(Table, rows)] in first-seen order
        self.events = events


class FastBodies:
    """Decoders of the event routes of each app, made on first use for the tables in force."""

    def __init__(self, tables: dict):
        self.tables = tables
        self._decoders: dict = {}

    def decode(self, raw: bytes, app, event_type_id: str | None, request_values) -> FastBody | None:
        """The body's rows, or None when the precise path must decide. `request_values` are the
        values the tables take from the request (Table.row's `request`)."""
        if _NUL_ESCAPE in raw:
            return None
        decoder, table_of = self._decoder(app, event_type_id)
        if decoder is None:
            return None
        try:
            body = decoder.decode(raw)
            batches, keys = self._rows(body.events, table_of, event_type_id, request_values)
        except (msgspec.MsgspecError, Undecided, RecursionError):  # (deep nesting: precise path too)
            return None
        keys += 1 + (body.secret_key is not _NO_KEY)
        if event_type_id is None:
            keys += len(body.events)  # each event's _t
        if _keys_at_most(raw) != keys:  # a repeated key, or _t left out
            return None
        return FastBody(body.secret_key, batches, len(body.events))

    def _rows(self, events: list, table_of: dict, event_type_id: str | None, request_values):
        """[(Table, rows)] in first-seen order, and the keys the events held."""
        if not events:
            return [], 0
        if event_type_id is not None:
            table = table_of[None]
            rows, keys = table.shape.rows(events, request_values)
            return [(table, rows)], keys
        grouped: dict = {}  # tables in first-seen order, as the precise path has them
        for event in events:
            grouped.setdefault(table_of[type(event)], []).append(event)
        batches, keys = [], 0
        for table, table_events in grouped.items():
            rows, table_keys = table.shape.rows(table_events, request_values)
            batches.append((table, rows))
            keys += table_keys
        return batches, keys

    def _decoder(self, app, event_type_id: str | None):
        """(msgspec Decoder of a whole body, struct type (None on a typed route) -> Table)."""
        key = (app.app_id, event_type_id)
        found = self._decoders.get(key)
        if found is None:
            found = self._decoders[key] = self._make(app, event_type_id)
        return found

    def _make(self, app, event_type_id: str | None):
        if event_type_id is not None:
            table = self.tables[app.event_types[event_type_id]]
            if not table.shape.decodable:
                return None, None
            event_struct, table_of = table.shape.struct(), {None: table}
        else:
            table_of = {}
            for type_id, table_name in app.event_types.items():
                table = self.tables[table_name]
                # A column named like the routing key, or one msgspec cannot name: precise path.
                if "_t" in table.columns or not table.shape.decodable:
                    return None, None
                table_of[table.shape.struct(type_id)] = table
            if not table_of:
                return None, None
            event_struct = Union[tuple(table_of)]
        body = msgspec.defstruct("Body", [("secret_key", Union[str, None], _NO_KEY),
                                          ("events", list[event_struct])],
                                 forbid_unknown_fields=True, kw_only=True)
        return msgspec.json.Decoder(body, float_hook=Decimal), table_of

