r"""Our body read in C (msgspec): the secret_key and each table's events decoded into the fields
its row builder takes, for the bodies it can decide; for any other, None, and the precise parser
(strict_json.parse_json) reads the body.

What the C decoder accepts is exactly what the precise parser accepts, with the same events:
- a body with the escape \u0000 goes to the precise path (NUL, which text columns refuse);
  msgspec refuses an unpaired surrogate, and decodes every other escape as the precise parser;
- every key ends with a quote and a colon, whitespace between or not, so counting those places
  gives the keys of the body's text or more (an escaped quote, or a string value, followed by
  a colon adds one); the keys counted in the decoded body are never more than those of the
  text, and fewer when a key repeats (msgspec keeps the last of two equal keys, which the
  precise parser refuses); so the two counts are equal only when neither happened;
- each table's events decode as its event_struct() says, and whatever msgspec refuses goes to
  the precise parser for the answer.
"""

import re
from decimal import Decimal
from typing import NamedTuple, Union

import msgspec


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


class FastBody(NamedTuple):
    """What the C decoder made of a body: its key, each table's events, its event count."""

    secret_key: str | None
    decoded: list  # [(Table, its DecodedEvents)] in first-seen order
    events: int


class FastBodies:
    """Decoders of the event routes of each app, made on first use for the tables in force."""

    def __init__(self, tables: dict):
        self.tables = tables
        self._decoders: dict = {}

    def decode(self, raw: bytes, app, event_type_id: str | None) -> FastBody | None:
        """The body's key and events, or None when the precise parser must read it."""
        if _NUL_ESCAPE in raw:
            return None
        decoder, table_of = self._decoder(app, event_type_id)
        if decoder is None:
            return None
        try:
            body = decoder.decode(raw)
            decoded, keys = self._by_table(body.events, table_of, event_type_id)
        except (msgspec.MsgspecError, RecursionError):  # (deep nesting: the precise parser too)
            return None
        keys += 1 + (body.secret_key is not _NO_KEY)
        if event_type_id is None:
            keys += len(body.events)  # each event's _t
        if _keys_at_most(raw) != keys:  # a repeated key, or _t left out
            return None
        key = None if body.secret_key is _NO_KEY else body.secret_key
        return FastBody(key, decoded, len(body.events))

    def _by_table(self, events: list, table_of: dict, event_type_id: str | None):
        """[(Table, DecodedEvents)] in first-seen order, and the keys the events held."""
        if not events:
            return [], 0
        if event_type_id is not None:
            table = table_of[None]
            decoded = table.decoded(events)
            return [(table, decoded)], decoded.keys
        grouped: dict = {}  # tables in first-seen order, as the precise parser has them
        for event in events:
            grouped.setdefault(table_of[type(event)], []).append(event)
        found = [(table, table.decoded(table_events)) for table, table_events in grouped.items()]
        return found, sum(decoded.keys for _, decoded in found)

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
            if not table.decodable:
                return None, None
            event_struct, table_of = table.event_struct(), {None: table}
        else:
            table_of = {}
            for type_id, table_name in app.event_types.items():
                table = self.tables[table_name]
                # A column named like the routing key, or one msgspec cannot name: precise path.
                if "_t" in table.columns or not table.decodable:
                    return None, None
                table_of[table.event_struct(type_id)] = table
            if not table_of:
                return None, None
            event_struct = Union[tuple(table_of)]
        body = msgspec.defstruct("Body", [("secret_key", Union[str, None], _NO_KEY),
                                          ("events", list[event_struct])],
                                 forbid_unknown_fields=True, kw_only=True)
        return msgspec.json.Decoder(body, float_hook=Decimal), table_of

